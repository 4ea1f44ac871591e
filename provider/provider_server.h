#pragma once

// strata-provider: the admin API (proto/strata/v1/admin/, one service per
// resource) of one CAS or primary site, working against that site's
// database. It serves every resource of the registry
// (provider/resources/registry.cc) through one call core
// (provider/core.h): every call is authorized by the caller's security
// roles, scopes and collections (RBAC data is global: the same at every
// site), every change audited in the change's own transaction, and every
// refusal audited. gRPC health checking and server reflection are on;
// clients must present a certificate at the TLS handshake.
//
// Start() once; Wait() until Shutdown(); Shutdown() is thread-safe and may be
// called twice (the second call waits for the first).

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/base/daemon.h"
#include "strata/v1/config.pb.h"

namespace strata::provider {

absl::Status ValidateProviderConfig(const v1::ProviderConfig& config);

class ProviderServer final : public Daemon {
 public:
  explicit ProviderServer(v1::ProviderConfig config);
  ~ProviderServer() override;

  // Checks the database belongs to a CAS or primary, bootstraps the first
  // administrator if configured, and serves.
  absl::Status Start() override;
  absl::Status Wait() override;
  void Shutdown() override;
  const std::string& bound_address() const override;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// Every permission a security role can grant, "object.operation".
const std::vector<std::string>& KnownPermissions();

}  // namespace strata::provider
