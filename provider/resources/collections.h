#pragma once

// What other resources use of collections (provider/resources/collections.cc).

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "provider/core.h"
#include "strata/v1/admin/collections.pb.h"

namespace strata::provider {

// The collection, with its rules, if it exists and the caller's scopes
// reach it (NotFound otherwise; PermissionDenied when it is in another
// scope).
absl::Status ReadCollection(Call& call, const std::string& name, v1::Collection* out);

// Where a script run or a live query goes: the members of `collection`
// (which must lie within the caller's collections), or one `device` (name
// or id) the caller sees, reached through All Systems. Exactly one of them.
struct Target {
  std::string collection;
  std::string device_id;  // "": the whole collection
};
absl::StatusOr<Target> ResolveTarget(Call& call, const std::string& collection,
                                     const std::string& device);

}  // namespace strata::provider
