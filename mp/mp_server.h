#pragma once

// strata-mp: the management point. Agents call it (service ManagementPoint,
// callback API so that tens of thousands of notification streams cost no
// threads); it answers from what its site server sends down (the site
// bundle), spools client data durably before acknowledging it, and forwards
// the spool to the site server over one stream (service SiteClients). It
// holds no database connection.

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "common/base/daemon.h"
#include "common/base/version.h"
#include "strata/v1/config.pb.h"

namespace strata::mp {

// Field-naming errors (InvalidArgument) for a configuration; checks that the
// certificate is an MP certificate naming `name`.
absl::Status ValidateMpConfig(const v1::MpConfig& config);

// What agents are told the nudge channel's address is: nudge_public_address
// if set; else, with a public_address, its host and the nudge port bound;
// else the bound address.
std::string NudgePublicAddress(const v1::MpConfig& config, const std::string& nudge_bound);

class MpServer final : public Daemon {
 public:
  explicit MpServer(v1::MpConfig config);
  ~MpServer() override;

  absl::Status Start() override;
  // Until Shutdown(), or a fatal error (returned; then call Shutdown()).
  absl::Status Wait() override;
  void Shutdown() override;
  const std::string& bound_address() const override;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// The whole of main() for strata-mp. Exit codes: 0 ok, 1 failure, 2 usage.
int MpMain(int argc, char** argv);

}  // namespace strata::mp
