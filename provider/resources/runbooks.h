#pragma once

// What other resources use of runbooks and worker groups
// (provider/resources/runbooks.cc, runbook_worker_groups.cc).

#include <string>

#include "absl/status/status.h"
#include "provider/core.h"
#include "strata/v1/admin/runbook_worker_groups.pb.h"
#include "strata/v1/admin/runbooks.pb.h"

namespace strata::provider {

// The runbook (its published definition, and the draft's) if it exists and
// the caller's scopes reach it (NotFound otherwise; PermissionDenied when
// it is in another scope).
absl::Status ReadRunbook(Call& call, const std::string& name, v1::Runbook* out);

// The worker group, likewise.
absl::Status ReadWorkerGroup(Call& call, const std::string& name, v1::RunbookWorkerGroup* out);

}  // namespace strata::provider
