#pragma once

// Application deployments in the site database (migration 0013), as the
// policy management points serve: each deployment with its application,
// every application that one depends on (transitively) and those it
// supersedes, versioned by its content.

#include "absl/status/status.h"
#include "common/store/database.h"
#include "strata/v1/client.pb.h"

namespace strata::collections {

// Every deployment whose application exists, into bundle->deployments();
// every maintenance window into bundle->windows(); both in byte order of
// their names (policy::ClientPolicy looks them up by binary search).
absl::Status LoadDeploymentPolicies(store::Transaction& tx, v1::SiteBundle* bundle);

// The application stored in the applications table's definition column.
absl::Status ParseApplication(const std::string& json, v1::Application* out);
std::string ApplicationJson(const v1::Application& app);

}  // namespace strata::collections
