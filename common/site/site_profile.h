#pragma once

// What a site type adds to the shared site-server core, given by its main
// (cas/, primary/, secondary/): whether it serves management points and for
// whom it registers clients, whether it evaluates collections, and the
// background jobs it runs besides replication (a primary's collection
// evaluation and client maintenance). The core has no branch on site type
// for any of these.

#include <functional>
#include <string>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "strata/v1/config.pb.h"
#include "strata/v1/site_link.pb.h"

namespace strata::site {

// What a job runs with. `Sleep()` returns false once the site stops: a job
// loops while it returns true.
class SiteJobContext {
 public:
  SiteJobContext(const v1::SiteServerConfig& config, const absl::Notification& stopping)
      : config_(config), stopping_(stopping) {}
  const v1::SiteServerConfig& config() const { return config_; }
  bool stopping() const { return stopping_.HasBeenNotified(); }
  bool Sleep(absl::Duration d) const { return !stopping_.WaitForNotificationWithTimeout(d); }

 private:
  const v1::SiteServerConfig& config_;
  const absl::Notification& stopping_;
};

struct SiteJob {
  std::string name;  // for logs
  // Runs until ctx.stopping(); on its own thread, started after the server
  // serves, joined before it stops.
  std::function<void(const SiteJobContext& ctx)> run;
};

// Management points and client registration.
enum class ClientRole {
  kNone,     // no management points (the CAS)
  kOwn,      // clients belong to this site (a primary)
  kParents,  // clients belong to this site's parent (a secondary registers for its primary)
};

struct SiteProfile {
  v1::SiteType type = v1::SITE_TYPE_UNSPECIFIED;
  ClientRole clients = ClientRole::kNone;
  // Inventory changes queue devices for evaluation (collection_evaluation):
  // only where collections are evaluated.
  bool evaluates_collections = false;
  std::vector<SiteJob> jobs;
};

}  // namespace strata::site
