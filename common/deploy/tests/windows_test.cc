#include "common/deploy/windows.h"

#include <catch2/catch.hpp>

#include "absl/time/civil_time.h"

namespace strata::deploy {
namespace {

v1::MaintenanceWindow Window(const std::string& start, int minutes, const std::string& recurrence,
                             bool utc = true) {
  v1::MaintenanceWindow w;
  w.set_name("w");
  w.set_start(start);
  w.set_duration_minutes(minutes);
  w.set_recurrence(recurrence);
  w.set_utc(utc);
  return w;
}

absl::Time Utc(int y, int mo, int d, int h, int mi) {
  return absl::FromCivil(absl::CivilMinute(y, mo, d, h, mi), absl::UTCTimeZone());
}

absl::TimeZone NewYork() {
  absl::TimeZone tz;
  REQUIRE(absl::LoadTimeZone("America/New_York", &tz));  // tzdata
  return tz;
}

TEST_CASE("windows: bad start, duration or recurrence is refused") {
  CHECK(CheckWindow(Window("2026-12-01T22:00", 60, "daily")).ok());
  CHECK(absl::IsInvalidArgument(CheckWindow(Window("tomorrow", 60, "daily"))));
  CHECK(absl::IsInvalidArgument(CheckWindow(Window("2026-12-01T22:00", 4, "daily"))));
  CHECK(absl::IsInvalidArgument(CheckWindow(Window("2026-12-01T22:00", 1441, "daily"))));
  CHECK(absl::IsInvalidArgument(CheckWindow(Window("2026-12-01T22:00", 60, "hourly"))));
}

TEST_CASE("windows: a local 22:00 window stays at 22:00 across a DST change") {
  const absl::TimeZone ny = NewYork();
  // 2026-11-01 is the end of DST in New York (UTC-4 before, UTC-5 after).
  auto occ = Occurrences(Window("2026-10-30T22:00", 60, "daily", /*utc=*/false),
                         Utc(2026, 10, 30, 0, 0), Utc(2026, 11, 3, 0, 0), ny);
  REQUIRE(occ.size() == 3);
  CHECK(occ[0].start == Utc(2026, 10, 31, 2, 0));  // Oct 30, 22:00 EDT
  CHECK(occ[1].start == Utc(2026, 11, 1, 2, 0));   // Oct 31, 22:00 EDT
  CHECK(occ[2].start == Utc(2026, 11, 2, 3, 0));   // Nov 1, 22:00 EST (after the change)
  CHECK(occ[0].end - occ[0].start == absl::Hours(1));
}

TEST_CASE("windows: weekly, monthly by day and by weekday of the month") {
  // 2026-12-08 is the second Tuesday of December.
  auto tuesdays = Occurrences(Window("2026-12-08T01:00", 30, "monthly_weekday"),
                              Utc(2026, 12, 1, 0, 0), Utc(2027, 3, 1, 0, 0), absl::UTCTimeZone());
  REQUIRE(tuesdays.size() == 3);
  CHECK(tuesdays[1].start == Utc(2027, 1, 12, 1, 0));  // second Tuesday of January
  CHECK(tuesdays[2].start == Utc(2027, 2, 9, 1, 0));
  // The 31st: months without one are skipped.
  auto last = Occurrences(Window("2026-12-31T01:00", 30, "monthly_day"), Utc(2026, 12, 1, 0, 0),
                          Utc(2027, 4, 1, 0, 0), absl::UTCTimeZone());
  REQUIRE(last.size() == 3);  // Dec 31, Jan 31, Mar 31
  CHECK(last[1].start == Utc(2027, 1, 31, 1, 0));
  CHECK(last[2].start == Utc(2027, 3, 31, 1, 0));
  // A start in the month's last week means its last such weekday.
  auto final_friday =
      Occurrences(Window("2026-12-25T01:00", 30, "monthly_weekday"), Utc(2027, 1, 1, 0, 0),
                  Utc(2027, 2, 1, 0, 0), absl::UTCTimeZone());
  REQUIRE(final_friday.size() == 1);
  CHECK(final_friday[0].start == Utc(2027, 1, 29, 1, 0));
  auto weekly = Occurrences(Window("2026-12-01T01:00", 30, "weekly"), Utc(2027, 6, 1, 0, 0),
                            Utc(2027, 6, 15, 0, 0), absl::UTCTimeZone());
  REQUIRE(weekly.size() == 2);
  CHECK(absl::GetWeekday(absl::ToCivilDay(weekly[0].start, absl::UTCTimeZone())) ==
        absl::Weekday::tuesday);
}

TEST_CASE("windows: overlaps merge; an install waits for a window it fits in") {
  const absl::Time now = Utc(2026, 12, 1, 12, 0);
  std::vector<v1::MaintenanceWindow> none;
  CHECK(NextFit(none, now, absl::Hours(2), absl::UTCTimeZone()) == now);  // no windows: now
  // 12:00-12:30 and 12:20-13:00 merge into 12:00-13:00: 45 minutes fit now.
  std::vector<v1::MaintenanceWindow> ws = {Window("2026-12-01T12:00", 30, "none"),
                                           Window("2026-12-01T12:20", 40, "none"),
                                           Window("2026-12-01T20:00", 180, "daily")};
  CHECK(NextFit(ws, now, absl::Minutes(45), absl::UTCTimeZone()) == now);
  // Two hours do not fit before 13:00: the daily 20:00 window.
  CHECK(NextFit(ws, now, absl::Hours(2), absl::UTCTimeZone()) == Utc(2026, 12, 1, 20, 0));
  // Inside a window, with too little of it left: the next day's.
  CHECK(NextFit(ws, Utc(2026, 12, 1, 22, 30), absl::Hours(1), absl::UTCTimeZone()) ==
        Utc(2026, 12, 2, 20, 0));
  // Longer than any window: never.
  CHECK(NextFit(ws, now, absl::Hours(4), absl::UTCTimeZone()) == absl::InfiniteFuture());
  auto merged = Merge({{Utc(2026, 1, 1, 1, 0), Utc(2026, 1, 1, 2, 0)},
                       {Utc(2026, 1, 1, 2, 0), Utc(2026, 1, 1, 3, 0)},
                       {Utc(2026, 1, 1, 5, 0), Utc(2026, 1, 1, 6, 0)}});
  REQUIRE(merged.size() == 2);
  CHECK(merged[0].end == Utc(2026, 1, 1, 3, 0));
}

}  // namespace
}  // namespace strata::deploy
