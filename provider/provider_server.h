#pragma once

// strata-provider: the admin API (proto/strata/v1/admin.proto) of one CAS or
// primary site, working against that site's database. Authorizes every call
// by the caller's security roles, scopes and collections (RBAC data is
// global: the same at every site) and audits every change in the change's own
// transaction, and every denial. gRPC health checking and server reflection
// are on.
//
// Start() once; Wait() until Shutdown(); Shutdown() is thread-safe and may be
// called twice (the second call waits for the first).

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "strata/v1/config.pb.h"

namespace strata::provider {

absl::Status ValidateProviderConfig(const v1::ProviderConfig& config);

class ProviderServer {
 public:
  explicit ProviderServer(v1::ProviderConfig config);
  ~ProviderServer();

  // Checks the database belongs to a CAS or primary, bootstraps the first
  // administrator if configured, and serves.
  absl::Status Start();
  absl::Status Wait();
  void Shutdown();
  const std::string& bound_address() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// Every permission a security role can grant, "object.operation".
const std::vector<std::string>& KnownPermissions();

}  // namespace strata::provider
