#pragma once

// Registering a client at a primary or secondary site: the enrollment token
// (valid, not revoked, within its uses) or the approval mode, the
// hierarchy's decisions about the machine (approved, blocked), and its
// device record. Signing the certificate is the caller's (the issuing CA).

#include <string>

#include "absl/status/statusor.h"
#include "common/store/database.h"
#include "strata/v1/client.pb.h"

namespace strata::site {

// The request's own fields (InvalidArgument naming the field).
absl::Status CheckRegisterRequest(const v1::RegisterRequest& req);

struct Registered {
  std::string id;         // the device id (kept for a machine known by its hardware id)
  bool approved = false;  // else it waits for an administrator
};

// In the caller's transaction: `site` registers the machine for `owner`
// (itself at a primary, its primary at a secondary). PermissionDenied for a
// bad, revoked, expired or used-up token or a blocked machine;
// Unauthenticated when a token is required and none given.
absl::StatusOr<Registered> RegisterDevice(store::Transaction& tx, const std::string& site,
                                          const std::string& owner, const v1::RegisterRequest& req);

}  // namespace strata::site
