#pragma once

// Maintenance windows (strata.v1.MaintenanceWindow) as times: occurrences in
// a time zone (civil-time recurrence, so a 22:00 window stays at 22:00
// across a DST change), overlapping windows merged, and the first moment an
// install of a given length fits. No I/O.

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "strata/v1/deployment.pb.h"

namespace strata::deploy {

inline constexpr int kMinWindowMinutes = 5;
inline constexpr int kMaxWindowMinutes = 1440;

struct Interval {
  absl::Time start, end;
};

// Start, duration and recurrence well formed (InvalidArgument naming them).
absl::Status CheckWindow(const v1::MaintenanceWindow& w);

// The occurrences of `w` that overlap [from, to), in order; `local` is the
// device's zone (unless the window is in UTC).
std::vector<Interval> Occurrences(const v1::MaintenanceWindow& w, absl::Time from, absl::Time to,
                                  absl::TimeZone local);

// Overlapping or touching intervals joined; sorted.
std::vector<Interval> Merge(std::vector<Interval> intervals);

// The first moment at or after `now` inside one of `windows` (merged) with
// at least `length` of it left: `now` itself when it fits; InfiniteFuture
// when nothing fits within a year. No windows: `now`.
absl::Time NextFit(const std::vector<v1::MaintenanceWindow>& windows, absl::Time now,
                   absl::Duration length, absl::TimeZone local);

}  // namespace strata::deploy
