// strata-primary: a primary site. Its clients belong to it: it serves their
// management points, evaluates collections for them and maintains their
// records (site_profile.h says what the shared core takes from here).

#include "common/site/rollouts.h"
#include "common/site/runbook_schedules.h"
#include "common/site/site_main.h"
#include "primary/client_maintenance.h"
#include "primary/collection_loop.h"

int main(int argc, char** argv) {
  strata::site::SiteProfile profile;
  profile.type = strata::v1::SITE_TYPE_PRIMARY;
  profile.clients = strata::site::ClientRole::kOwn;
  profile.evaluates_collections = true;
  // Rollouts are advanced where they were made: at a primary, only one at
  // the top of its hierarchy makes them.
  profile.jobs = {strata::primary::CollectionLoop(), strata::primary::ClientMaintenance(),
                  strata::site::RolloutJob(), strata::site::RunbookScheduleJob()};
  return strata::site::SiteMain(std::move(profile), argc, argv);
}
