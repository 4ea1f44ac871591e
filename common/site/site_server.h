#pragma once

// The site-server core that strata-cas, strata-primary and strata-secondary
// share: one database, the site link service for children, the link to the
// parent, change notification, log pruning and link health; management
// points' service and the jobs a site type adds come from its profile
// (site_profile.h).
//
// Start() may be called once; Wait() blocks until Shutdown() or a fatal error
// (e.g. the parent refused this site) and returns that error. Shutdown() is
// thread-safe and stops everything in reverse order of start.

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "common/base/daemon.h"
#include "common/base/version.h"
#include "common/site/site_profile.h"
#include "common/store/database.h"
#include "strata/v1/config.pb.h"
#include "strata/v1/site_link.pb.h"

namespace strata::site {

// Checks a site server configuration before anything starts: clear,
// field-naming errors (InvalidArgument).
absl::Status ValidateSiteConfig(v1::SiteType type, const v1::SiteServerConfig& config);

// Applies all migrations and gives the database its site identity (a
// database belongs to one site for life: FailedPrecondition otherwise).
absl::Status PrepareDatabase(store::Connection& conn, const std::string& site_code);

class SiteServer final : public Daemon {
 public:
  SiteServer(SiteProfile profile, v1::SiteServerConfig config);
  ~SiteServer() override;

  absl::Status Start() override;
  absl::Status Wait() override;
  void Shutdown() override;
  const std::string& bound_address() const override;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace strata::site
