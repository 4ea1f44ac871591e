#pragma once

// What other resources use of collections (provider/resources/collections.cc).

#include <string>

#include "absl/status/status.h"
#include "provider/core.h"
#include "strata/v1/admin/collections.pb.h"

namespace strata::provider {

// The collection, with its rules, if it exists and the caller's scopes
// reach it (NotFound otherwise; PermissionDenied when it is in another
// scope).
absl::Status ReadCollection(Call& call, const std::string& name, v1::Collection* out);

}  // namespace strata::provider
