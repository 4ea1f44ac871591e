#pragma once

// What other resources use of applications (provider/resources/applications.cc).

#include <string>

#include "absl/status/status.h"
#include "provider/core.h"
#include "strata/v1/deployment.pb.h"

namespace strata::provider {

// The application if it exists and the caller's scopes reach it (NotFound
// otherwise; PermissionDenied when it is in another scope).
absl::Status ReadApplication(Call& call, const std::string& name, v1::Application* out);

}  // namespace strata::provider
