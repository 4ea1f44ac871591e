// Runbook schedules: the checks and the next run, through daylight saving
// time (the system's time zone files).

#include "common/deploy/schedule.h"

#include <catch2/catch.hpp>

#include "absl/strings/match.h"

using namespace strata;

namespace {

absl::Time At(const std::string& rfc3339) {
  absl::Time t;
  std::string err;
  REQUIRE(absl::ParseTime(absl::RFC3339_full, rfc3339, &t, &err));
  return t;
}

std::string Utc(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone());
}

v1::RunbookSchedule Daily(const std::string& at, const std::string& tz) {
  v1::RunbookSchedule s;
  s.set_kind("daily");
  s.set_at(at);
  s.set_time_zone(tz);
  s.set_start("2026-01-01T00:00:00Z");
  REQUIRE(deploy::CheckSchedule(s, At("2026-01-01T00:00:00Z")).ok());
  return s;
}

std::string Next(const v1::RunbookSchedule& s, const std::string& after) {
  auto t = deploy::NextRun(s, At(after));
  REQUIRE(t.ok());
  return *t == absl::InfiniteFuture() ? "never" : Utc(*t);
}

}  // namespace

TEST_CASE(
    "a daily schedule keeps its local time across daylight saving time: a skipped time runs "
    "at the jump, a repeated one once, at the first",
    "[schedules]") {
  // New York: clocks go 02:00 -> 03:00 on 2026-03-08 and 02:00 -> 01:00 on 2026-11-01.
  v1::RunbookSchedule nine = Daily("09:00", "America/New_York");
  CHECK(Next(nine, "2026-03-06T15:00:00Z") == "2026-03-07T14:00:00Z");  // 09:00 EST
  CHECK(Next(nine, "2026-03-07T14:00:00Z") == "2026-03-08T13:00:00Z");  // 09:00 EDT
  CHECK(Next(nine, "2026-10-31T14:00:00Z") == "2026-11-01T14:00:00Z");  // 09:00 EST again
  v1::RunbookSchedule skipped = Daily("02:30", "America/New_York");
  CHECK(Next(skipped, "2026-03-07T08:00:00Z") == "2026-03-08T07:00:00Z");  // 03:00 EDT, the jump
  CHECK(Next(skipped, "2026-03-08T07:00:00Z") == "2026-03-09T06:30:00Z");  // 02:30 EDT
  v1::RunbookSchedule repeated = Daily("01:30", "America/New_York");
  CHECK(Next(repeated, "2026-10-31T06:00:00Z") == "2026-11-01T05:30:00Z");  // 01:30 EDT, first
  CHECK(Next(repeated, "2026-11-01T05:30:00Z") == "2026-11-02T06:30:00Z");  // not 01:30 EST too
  // Paris changes on other dates (2026-03-29): 09:00 is 08:00Z, then 07:00Z.
  v1::RunbookSchedule paris = Daily("09:00", "Europe/Paris");
  CHECK(Next(paris, "2026-03-28T09:00:00Z") == "2026-03-29T07:00:00Z");
}

TEST_CASE("weekly, monthly, interval and one-time schedules", "[schedules]") {
  const absl::Time now = At("2026-11-30T12:00:00Z");  // a Monday
  v1::RunbookSchedule w;
  w.set_kind("weekly");
  w.set_at("06:15");
  w.add_week_days(3);  // Wednesday
  w.add_week_days(0);  // Sunday
  REQUIRE(deploy::CheckSchedule(w, now).ok());
  CHECK(w.time_zone() == "UTC");
  CHECK(w.missed() == "run_once");
  CHECK(Next(w, "2026-11-30T12:00:00Z") == "2026-12-02T06:15:00Z");
  CHECK(Next(w, "2026-12-02T06:15:00Z") == "2026-12-06T06:15:00Z");
  v1::RunbookSchedule m;
  m.set_kind("monthly");
  m.set_at("00:00");
  m.add_month_days(31);
  REQUIRE(deploy::CheckSchedule(m, now).ok());
  CHECK(Next(m, "2026-11-30T12:00:00Z") == "2026-12-31T00:00:00Z");
  CHECK(Next(m, "2026-12-31T00:00:00Z") == "2027-01-31T00:00:00Z");  // February has none
  CHECK(Next(m, "2027-01-31T00:00:00Z") == "2027-03-31T00:00:00Z");
  v1::RunbookSchedule i;
  i.set_kind("interval");
  i.set_interval_seconds(600);
  REQUIRE(deploy::CheckSchedule(i, now).ok());
  CHECK(i.start() == "2026-11-30T12:10:00Z");  // one interval from now
  CHECK(Next(i, "2026-11-30T12:00:00Z") == "2026-11-30T12:10:00Z");
  CHECK(Next(i, "2026-11-30T12:25:00Z") == "2026-11-30T12:30:00Z");  // missed ones skipped
  v1::RunbookSchedule o;
  o.set_kind("once");
  o.set_start("2026-12-01T09:00:00+01:00");
  REQUIRE(deploy::CheckSchedule(o, now).ok());
  CHECK(Next(o, "2026-11-30T12:00:00Z") == "2026-12-01T08:00:00Z");
  CHECK(Next(o, "2026-12-01T08:00:00Z") == "never");
}

TEST_CASE("a schedule that makes no sense is refused naming its field", "[schedules]") {
  const absl::Time now = At("2026-11-30T12:00:00Z");
  auto refusal = [&](v1::RunbookSchedule s) {
    absl::Status st = deploy::CheckSchedule(s, now);
    CHECK(st.code() == absl::StatusCode::kInvalidArgument);
    return std::string(st.message());
  };
  v1::RunbookSchedule s;
  s.set_kind("hourly");
  CHECK(absl::StartsWith(refusal(s), "kind:"));
  s.set_kind("daily");
  s.set_at("25:00");
  CHECK(absl::StartsWith(refusal(s), "at:"));
  s.set_at("09:00");
  s.set_time_zone("Mars/Olympus");
  CHECK(absl::StartsWith(refusal(s), "time_zone:"));
  s.set_time_zone("UTC");
  s.add_week_days(1);
  CHECK(absl::StartsWith(refusal(s), "week_days:"));
  v1::RunbookSchedule i;
  i.set_kind("interval");
  i.set_interval_seconds(1);
  CHECK(absl::StartsWith(refusal(i), "interval_seconds:"));
  v1::RunbookSchedule o;
  o.set_kind("once");
  CHECK(absl::StartsWith(refusal(o), "start:"));
  o.set_start("tomorrow");
  CHECK(absl::StartsWith(refusal(o), "start:"));
}
