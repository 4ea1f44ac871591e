// strata-cas: the central administration site, top of a multi-primary
// hierarchy. It has no parent, no clients and no management points; it
// keeps every primary's data and authors global data (site_profile.h).

#include "common/site/rollouts.h"
#include "common/site/runbook_schedules.h"
#include "common/site/site_main.h"

int main(int argc, char** argv) {
  strata::site::SiteProfile profile;
  profile.type = strata::v1::SITE_TYPE_CAS;
  profile.jobs = {strata::site::RolloutJob(),           // phased rollouts made here
                  strata::site::RunbookScheduleJob()};  // and runbook schedules
  return strata::site::SiteMain(std::move(profile), argc, argv);
}
