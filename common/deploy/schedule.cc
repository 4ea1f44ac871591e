#include "common/deploy/schedule.h"

#include <algorithm>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace strata::deploy {
namespace {

absl::Status Bad(const std::string& what, const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat(what, ": ", why));
}

bool ParseAt(const std::string& at, int* hour, int* minute) {
  std::vector<std::string> hm = absl::StrSplit(at, ':');
  return hm.size() == 2 && hm[0].size() <= 2 && hm[1].size() == 2 &&
         absl::SimpleAtoi(hm[0], hour) && absl::SimpleAtoi(hm[1], minute) && *hour >= 0 &&
         *hour <= 23 && *minute >= 0 && *minute <= 59;
}

// The moment of local `cs` in `tz`: skipped -> the jump, repeated -> the first.
absl::Time Local(const absl::TimeZone& tz, absl::CivilSecond cs) {
  const absl::TimeZone::TimeInfo ti = tz.At(cs);
  return ti.kind == absl::TimeZone::TimeInfo::SKIPPED ? ti.trans : ti.pre;
}

int Weekday(absl::CivilDay d) {
  switch (absl::GetWeekday(d)) {
    case absl::Weekday::sunday:
      return 0;
    case absl::Weekday::monday:
      return 1;
    case absl::Weekday::tuesday:
      return 2;
    case absl::Weekday::wednesday:
      return 3;
    case absl::Weekday::thursday:
      return 4;
    case absl::Weekday::friday:
      return 5;
    default:
      return 6;
  }
}

}  // namespace

absl::Status CheckSchedule(v1::RunbookSchedule& s, absl::Time now) {
  if (s.time_zone().empty()) s.set_time_zone("UTC");
  absl::TimeZone tz;
  if (!absl::LoadTimeZone(s.time_zone(), &tz))
    return Bad("time_zone", absl::StrCat("\"", s.time_zone(),
                                         "\" is not an IANA time zone (Europe/Paris, UTC, ...)"));
  if (s.missed().empty()) s.set_missed("run_once");
  if (s.missed() != "run_once" && s.missed() != "skip")
    return Bad("missed", absl::StrCat("\"", s.missed(), "\": run_once or skip"));
  absl::Time start = now;
  if (!s.start().empty()) {
    std::string err;
    if (!absl::ParseTime(absl::RFC3339_full, s.start(), &start, &err))
      return Bad("start",
                 absl::StrCat("\"", s.start(), "\" is not RFC 3339 (2026-12-01T09:00:00Z)"));
  }
  const std::string& k = s.kind();
  const bool local = k == "daily" || k == "weekly" || k == "monthly";
  if (k != "once" && k != "interval" && !local)
    return Bad("kind", absl::StrCat("\"", k, "\": once, interval, daily, weekly or monthly"));
  if (k == "once" && s.start().empty()) return Bad("start", "a one-time schedule needs its time");
  if (k == "interval") {
    if (s.interval_seconds() < kMinScheduleIntervalSeconds ||
        s.interval_seconds() > kMaxScheduleIntervalSeconds)
      return Bad("interval_seconds",
                 absl::StrCat(s.interval_seconds(), ": ", kMinScheduleIntervalSeconds, " to ",
                              kMaxScheduleIntervalSeconds, " (a year)"));
    if (s.start().empty()) start = now + absl::Seconds(s.interval_seconds());
  } else if (s.interval_seconds() != 0) {
    return Bad("interval_seconds", "only for an interval schedule");
  }
  int hour = 0, minute = 0;
  if (local && !ParseAt(s.at(), &hour, &minute))
    return Bad("at", absl::StrCat("\"", s.at(), "\": the local time HH:MM"));
  if (!local && !s.at().empty()) return Bad("at", "only for daily, weekly and monthly schedules");
  if (k == "weekly" ? s.week_days_size() == 0 : s.week_days_size() > 0)
    return Bad("week_days", "a weekly schedule names its days (0 Sunday to 6), others none");
  if (k == "monthly" ? s.month_days_size() == 0 : s.month_days_size() > 0)
    return Bad("month_days", "a monthly schedule names its days (1 to 31), others none");
  for (int d : s.week_days())
    if (d < 0 || d > 6) return Bad("week_days", absl::StrCat(d, ": 0 (Sunday) to 6"));
  for (int d : s.month_days())
    if (d < 1 || d > 31) return Bad("month_days", absl::StrCat(d, ": 1 to 31"));
  s.set_start(absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", start, absl::UTCTimeZone()));
  return absl::OkStatus();
}

absl::StatusOr<absl::Time> NextRun(const v1::RunbookSchedule& s, absl::Time after) {
  absl::Time start;
  std::string err;
  if (!absl::ParseTime(absl::RFC3339_full, s.start(), &start, &err))
    return absl::InvalidArgumentError(absl::StrCat("start: ", err));
  if (s.kind() == "once") return start > after ? start : absl::InfiniteFuture();
  if (s.kind() == "interval") {
    if (after < start) return start;
    const absl::Duration every = absl::Seconds(std::max<int64_t>(1, s.interval_seconds()));
    absl::Duration rem;
    return start + every * (absl::IDivDuration(after - start, every, &rem) + 1);
  }
  absl::TimeZone tz;
  if (!absl::LoadTimeZone(s.time_zone(), &tz))
    return absl::InvalidArgumentError(absl::StrCat("time_zone: ", s.time_zone()));
  int hour = 0, minute = 0;
  if (!ParseAt(s.at(), &hour, &minute)) return absl::InvalidArgumentError("at: not HH:MM");
  const std::set<int> week(s.week_days().begin(), s.week_days().end());
  const std::set<int> month(s.month_days().begin(), s.month_days().end());
  const absl::Time from = std::max(after, start - absl::Nanoseconds(1));
  // A day before, for a time zone behind the moment's UTC day; 400 days
  // reach a 31st in every month pattern.
  for (absl::CivilDay d = absl::CivilDay(tz.At(from).cs) - 1, end = d + 400; d < end; ++d) {
    if (s.kind() == "weekly" && !week.count(Weekday(d))) continue;
    if (s.kind() == "monthly" && !month.count(d.day())) continue;
    const absl::Time t =
        Local(tz, absl::CivilSecond(d.year(), d.month(), d.day(), hour, minute, 0));
    if (t > from) return t;
  }
  return absl::InfiniteFuture();
}

}  // namespace strata::deploy
