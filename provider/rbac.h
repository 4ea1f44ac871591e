#pragma once

// Role-based administration beyond the permission check (Configuration
// Manager's model): what a caller may see (security scopes of objects,
// members of their collections) and what they may hand out or change
// (nothing beyond what they hold, nothing outside their collections).

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/store/database.h"
#include "google/protobuf/repeated_field.h"
#include "provider/core.h"

namespace strata::provider {

// SQL condition: the object at alias `a` (with a `scopes` column) is in one
// of the caller's security scopes.
std::string VisibleByScope(const Caller& c, const std::string& a, store::Params& params);

// SQL condition: the device at alias `d` is a member of one of the caller's
// collections.
std::string VisibleDevice(const Caller& c, const std::string& d, store::Params& params);

// PermissionDenied unless one of `object_scopes` is the caller's (or they
// hold All): "<caller> may not see <what> "<name>": it is in security
// scopes ..."
absl::Status RequireScopeVisible(const Caller& c, const std::string& what, const std::string& name,
                                 const google::protobuf::RepeatedPtrField<std::string>& scopes);

// Scopes an object is put in: each a name the caller holds and that exists.
absl::Status CheckScopes(Transaction& tx, const Caller& c, const std::vector<std::string>& scopes);

// NotFound naming the first of `names` missing from `table` (by name).
absl::Status MustExist(Transaction& tx, const std::string& table, const std::string& what,
                       const std::vector<std::string>& names);

// Whether collection `name` lies within the caller's collections: it is one
// of them, or its chain of limiting collections reaches one (holders of
// All Systems reach everything).
absl::StatusOr<bool> Contained(Transaction& tx, const Caller& c, const std::string& name);

// An admin limited to some collections works only inside them: what they
// create is limited by one of them, what they include or exclude is inside
// them.
absl::Status RequireContained(Transaction& tx, const Caller& c, const std::string& name);

// ... and the collections that bound their own view are not theirs to
// change (else they could widen it).
absl::Status RequireEditable(Transaction& tx, const Caller& c, const std::string& name);

// A permission that `roles` grant and `c` lacks ("" if none): nobody hands
// out more than they hold.
absl::StatusOr<std::string> Exceeding(Transaction& tx, const Caller& c,
                                      const std::vector<std::string>& roles);

// A device the caller may see, by id or name: its id. NotFound, or
// PermissionDenied when it exists outside the caller's collections, or
// FailedPrecondition when the name is ambiguous among what they see.
absl::StatusOr<std::string> ResolveDevice(Transaction& tx, const Caller& c,
                                          const std::string& name);

}  // namespace strata::provider
