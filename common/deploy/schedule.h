#pragma once

// Runbook schedules (admin/runbook_schedules.proto): the checks a schedule
// passes and when it runs next. Local times follow the schedule's IANA time
// zone through daylight saving time: a time the clocks skip (02:30 on a
// spring-forward night) runs at the jump, a time they repeat (01:30 on a
// fall-back night) runs once, at the first. No database, no I/O but the
// system's time zone files.

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "strata/v1/admin/runbook_schedules.pb.h"

namespace strata::deploy {

inline constexpr int64_t kMinScheduleIntervalSeconds = 5;
inline constexpr int64_t kMaxScheduleIntervalSeconds = 365 * 86400;

// Fills the defaults (time zone UTC, missed run_once) and checks the rule:
// InvalidArgument naming the field. `now` is for defaults of `start`.
absl::Status CheckSchedule(v1::RunbookSchedule& s, absl::Time now);

// The first run strictly after `after` (absl::InfiniteFuture(): none, a
// one-time schedule that ran). `s` passed CheckSchedule.
absl::StatusOr<absl::Time> NextRun(const v1::RunbookSchedule& s, absl::Time after);

}  // namespace strata::deploy
