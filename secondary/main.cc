// strata-secondary: a secondary site, for a remote office under a primary.
// Its management point registers clients for its primary and forwards their
// data up; it keeps the global data its clients need (site_profile.h).

#include "common/site/rollouts.h"
#include "common/site/site_main.h"

int main(int argc, char** argv) {
  strata::site::SiteProfile profile;
  profile.type = strata::v1::SITE_TYPE_SECONDARY;
  profile.clients = strata::site::ClientRole::kParents;
  // Housekeeping of deployment states, script results and live query
  // answers of its clients (it makes no rollouts: none is advanced here).
  profile.jobs = {strata::site::RolloutJob()};
  return strata::site::SiteMain(std::move(profile), argc, argv);
}
