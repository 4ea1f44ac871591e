#include "common/deploy/windows.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/time/civil_time.h"

namespace strata::deploy {
namespace {

constexpr int kMaxOccurrences = 5000;  // a year of daily windows, and then some

// "2026-12-01T22:00" or, to the second, "2026-12-01T22:00:30".
bool ParseStart(const std::string& text, absl::CivilSecond* out) {
  absl::CivilMinute minute;
  if (absl::ParseCivilTime(text, &minute)) {
    *out = absl::CivilSecond(minute);
    return true;
  }
  return absl::ParseCivilTime(text, out);
}

int DaysInMonth(absl::CivilMonth m) { return (absl::CivilDay(m + 1) - 1).day(); }

// The civil start of occurrence `k` of `w` (false: none in that period).
bool Nth(const v1::MaintenanceWindow& w, absl::CivilSecond start, int64_t k,
         absl::CivilSecond* out) {
  const std::string& r = w.recurrence();
  if (r == "daily") {
    *out = start + k * 86400;
    return true;
  }
  if (r == "weekly") {
    *out = start + k * 7 * 86400;
    return true;
  }
  const absl::CivilMonth month = absl::CivilMonth(start) + k;
  const int hour = start.hour(), minute = start.minute(), second = start.second();
  int day = 0;
  if (r == "monthly_day") {
    day = start.day();
    if (day > DaysInMonth(month)) return false;  // no 31st this month
  } else {                                       // monthly_weekday
    const absl::CivilDay first_day(start.year(), start.month(), start.day());
    const absl::Weekday wd = absl::GetWeekday(first_day);
    const int n = (start.day() - 1) / 7 + 1;
    const bool last = start.day() + 7 > DaysInMonth(absl::CivilMonth(start));
    const absl::CivilDay first(month.year(), month.month(), 1);
    const int offset = (static_cast<int>(wd) - static_cast<int>(absl::GetWeekday(first)) + 7) % 7;
    day = 1 + offset + (n - 1) * 7;
    if (last)
      while (day + 7 <= DaysInMonth(month)) day += 7;
    if (day > DaysInMonth(month)) return false;
  }
  *out = absl::CivilSecond(month.year(), month.month(), day, hour, minute, second);
  return true;
}

}  // namespace

absl::Status CheckWindow(const v1::MaintenanceWindow& w) {
  absl::CivilSecond start;
  if (!ParseStart(w.start(), &start))
    return absl::InvalidArgumentError(absl::StrCat(
        "start \"", w.start(), "\": a civil time like 2026-12-01T22:00 (or 22:00:30)"));
  if (w.duration_minutes() < kMinWindowMinutes || w.duration_minutes() > kMaxWindowMinutes)
    return absl::InvalidArgumentError(absl::StrCat("duration: ", kMinWindowMinutes, " minutes to ",
                                                   kMaxWindowMinutes / 60, " hours, not ",
                                                   w.duration_minutes(), " minutes"));
  const std::string& r = w.recurrence();
  if (r != "none" && r != "daily" && r != "weekly" && r != "monthly_day" && r != "monthly_weekday")
    return absl::InvalidArgumentError(absl::StrCat(
        "recurrence \"", r, "\": none, daily, weekly, monthly_day or monthly_weekday"));
  return absl::OkStatus();
}

std::vector<Interval> Occurrences(const v1::MaintenanceWindow& w, absl::Time from, absl::Time to,
                                  absl::TimeZone local) {
  std::vector<Interval> out;
  absl::CivilSecond start;
  if (!CheckWindow(w).ok() || !ParseStart(w.start(), &start)) return out;
  const absl::TimeZone tz = w.utc() ? absl::UTCTimeZone() : local;
  const absl::Duration length = absl::Minutes(w.duration_minutes());
  // A civil time skipped by a DST change falls after the change (.pre).
  auto at = [&](absl::CivilSecond c) { return tz.At(c).pre; };
  if (w.recurrence() == "none") {
    const absl::Time s = at(start);
    if (s < to && s + length > from) out.push_back({s, s + length});
    return out;
  }
  // Skip ahead to just before `from` (in periods of the recurrence).
  int64_t k = 0;
  const absl::CivilDay from_day = absl::ToCivilDay(from, tz);
  const int64_t days = from_day - absl::CivilDay(start);
  if (w.recurrence() == "daily") k = days - 1;
  if (w.recurrence() == "weekly") k = days / 7 - 1;
  if (w.recurrence() == "monthly_day" || w.recurrence() == "monthly_weekday")
    k = (absl::CivilMonth(from_day) - absl::CivilMonth(start)) - 1;
  k = std::max<int64_t>(k, 0);
  for (int n = 0; n < kMaxOccurrences; ++n, ++k) {
    absl::CivilSecond c;
    if (!Nth(w, start, k, &c)) continue;
    const absl::Time s = at(c);
    if (s >= to) break;
    if (s + length > from) out.push_back({s, s + length});
  }
  return out;
}

std::vector<Interval> Merge(std::vector<Interval> intervals) {
  std::sort(intervals.begin(), intervals.end(),
            [](const Interval& a, const Interval& b) { return a.start < b.start; });
  std::vector<Interval> out;
  for (const auto& i : intervals) {
    if (!out.empty() && i.start <= out.back().end) {
      out.back().end = std::max(out.back().end, i.end);
    } else {
      out.push_back(i);
    }
  }
  return out;
}

absl::Time NextFit(const std::vector<v1::MaintenanceWindow>& windows, absl::Time now,
                   absl::Duration length, absl::TimeZone local) {
  if (windows.empty()) return now;
  std::vector<Interval> all;
  for (const auto& w : windows) {
    auto occ = Occurrences(w, now - absl::Hours(24), now + absl::Hours(24 * 366), local);
    all.insert(all.end(), occ.begin(), occ.end());
  }
  for (const auto& i : Merge(std::move(all))) {
    const absl::Time begin = std::max(i.start, now);
    if (i.end - begin >= length) return begin;
  }
  return absl::InfiniteFuture();
}

}  // namespace strata::deploy
