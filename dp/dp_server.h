#pragma once

// strata-dp: a distribution point. Its content library (common/content),
// served to clients by nginx (dp/nginx.h); an assignment stream from its
// site server saying which content versions to hold; a sync loop bringing
// them in from the site server (or, for a pull-DP, from a source DP),
// releasing the rest, validating the library, and reporting its state to
// the site (site data, up to the CAS).
//
// Start() once; Wait() until Shutdown() or a refusal by the site (a DP at a
// CAS, a certificate that is not this DP's); Shutdown() from any thread.

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "common/base/daemon.h"
#include "strata/v1/config.pb.h"

namespace strata::dp {

// Field-naming errors (InvalidArgument) before anything starts.
absl::Status ValidateDpConfig(const v1::DpConfig& config);

class DpServer final : public Daemon {
 public:
  explicit DpServer(v1::DpConfig config);
  ~DpServer() override;
  absl::Status Start() override;
  absl::Status Wait() override;
  void Shutdown() override;
  const std::string& bound_address() const override;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace strata::dp
