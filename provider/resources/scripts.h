#pragma once

// What other resources use of scripts (provider/resources/scripts.cc).

#include <string>

#include "absl/status/status.h"
#include "provider/core.h"
#include "strata/v1/admin/scripts.pb.h"

namespace strata::provider {

// The script if it exists and the caller's scopes reach it (NotFound
// otherwise; PermissionDenied when it is in another scope).
absl::Status ReadScript(Call& call, const std::string& name, v1::Script* out);

}  // namespace strata::provider
