#pragma once

// Runbook schedules (migration 0017, admin/runbook_schedules.proto) fired
// by the site that made them (a CAS or primary: one writer per schedule):
// when a schedule's next run comes, it starts a job of the runbook's
// published version on its worker group, as StartRunbook does, and audits
// it. A run more than a minute late (the site was down) runs once or is
// skipped, as the schedule says; either way the next is the first after
// now. Each schedule's next run is local state (runbook_schedule_runs),
// computed again whenever the schedule changes.

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/site/site_profile.h"
#include "common/store/database.h"

namespace strata::site {

// Later than this, a run counts as missed.
inline constexpr absl::Duration kScheduleLate = absl::Minutes(1);

// One pass at `now` for the schedules `site` made: the jobs started.
absl::StatusOr<int> FireSchedules(store::Connection& conn, const std::string& site, absl::Time now);

// FireSchedules every second.
SiteJob RunbookScheduleJob();

}  // namespace strata::site
