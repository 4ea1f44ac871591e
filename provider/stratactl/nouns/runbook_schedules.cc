// stratactl create|update schedule NAME --runbook R --group G (--once TIME |
// --every DURATION [--start TIME] | --daily HH:MM | --weekly DAYS --at HH:MM
// | --monthly DAYS --at HH:MM) [--time-zone TZ] [--missed run-once|skip]
// [--param k=v] [--disabled], get schedules, describe schedule, delete schedule

#include <iostream>
#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "provider/stratactl/command.h"
#include "provider/stratactl/output.h"
#include "strata/v1/admin/runbook_schedules.grpc.pb.h"

namespace strata::ctl {
namespace {

using Stub = v1::RunbookScheduleService::Stub;

constexpr const char* kDays[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

struct Flags {
  v1::RunbookSchedule s;
  std::string once, every, daily, weekly, monthly, at, missed;
  std::vector<std::string> params, scopes;
  bool disabled = false;

  std::string Build() {
    int kinds =
        !once.empty() + !every.empty() + !daily.empty() + !weekly.empty() + !monthly.empty();
    if (kinds != 1) return "give one of --once, --every, --daily, --weekly or --monthly";
    if (!once.empty()) {
      s.set_kind("once");
      s.set_start(once);
    } else if (!every.empty()) {
      s.set_kind("interval");
      const int64_t t = ParseDuration(every);
      if (t <= 0) return absl::StrCat("--every ", every, ": seconds, or 30s, 15m, 1h, 1d");
      s.set_interval_seconds(t);
    } else if (!daily.empty()) {
      s.set_kind("daily");
      s.set_at(daily);
    } else if (!weekly.empty()) {
      s.set_kind("weekly");
      s.set_at(at);
      for (const auto& d : absl::StrSplit(weekly, ',', absl::SkipWhitespace())) {
        const std::string day = absl::AsciiStrToLower(absl::StripAsciiWhitespace(d)).substr(0, 3);
        int found = -1;
        for (int i = 0; i < 7; ++i)
          if (day == kDays[i]) found = i;
        if (found < 0) return absl::StrCat("--weekly ", weekly, ": days as mon,wed,fri");
        s.add_week_days(found);
      }
    } else {
      s.set_kind("monthly");
      s.set_at(at);
      for (const auto& d : absl::StrSplit(monthly, ',', absl::SkipWhitespace())) {
        int n = 0;
        if (!absl::SimpleAtoi(d, &n)) return absl::StrCat("--monthly ", monthly, ": days as 1,15");
        s.add_month_days(n);
      }
    }
    if (!missed.empty()) s.set_missed(missed == "run-once" ? "run_once" : missed);
    s.set_disabled(disabled);
    for (const auto& p : params) {
      const size_t eq = p.find('=');
      if (eq == std::string::npos || eq == 0) return absl::StrCat("--param ", p, ": NAME=VALUE");
      auto* a = s.add_parameters();
      a->set_name(p.substr(0, eq));
      a->set_value(p.substr(eq + 1));
    }
    for (const auto& x : scopes) s.add_scopes(x);
    return "";
  }
};

std::string When(const v1::RunbookSchedule& s) {
  if (s.kind() == "once") return "once at " + s.start();
  if (s.kind() == "interval") return "every " + Duration(s.interval_seconds());
  std::string days;
  for (int d : s.week_days()) absl::StrAppend(&days, days.empty() ? "" : ",", kDays[d % 7]);
  if (s.kind() == "monthly") days = absl::StrCat("day ", absl::StrJoin(s.month_days(), ","));
  return absl::StrCat(s.kind(), days.empty() ? "" : " " + days, " at ", s.at(), " ", s.time_zone());
}

Action Save(CLI::App* cmd, bool create) {
  auto f = std::make_shared<Flags>();
  cmd->add_option("name", *f->s.mutable_name(), "The schedule's name")->required();
  cmd->add_option("--runbook", *f->s.mutable_runbook(), "The runbook (its published version runs)")
      ->required();
  cmd->add_option("--group", *f->s.mutable_group(), "The worker group")->required();
  cmd->add_option("--once", f->once, "Once, at this time (RFC 3339: 2026-12-01T09:00:00+01:00)");
  cmd->add_option("--every", f->every, "Every interval: 30s, 15m, 1h, 1d (at least 5s)");
  cmd->add_option("--start", *f->s.mutable_start(),
                  "With --every: the first run (default one interval from now); else: not "
                  "before (RFC 3339)");
  cmd->add_option("--daily", f->daily, "Every day at this local time: HH:MM");
  cmd->add_option("--weekly", f->weekly, "On these days (mon,wed,fri) at --at");
  cmd->add_option("--monthly", f->monthly, "On these days of the month (1,15) at --at");
  cmd->add_option("--at", f->at, "The local time of --weekly or --monthly: HH:MM");
  cmd->add_option("--time-zone", *f->s.mutable_time_zone(),
                  "IANA time zone of the local times (default UTC): Europe/Paris; daylight "
                  "saving time is followed");
  cmd->add_option("--missed", f->missed,
                  "Runs missed while the site was down: run-once (default) or skip")
      ->check(CLI::IsMember({"run-once", "skip"}));
  cmd->add_option("--param", f->params, "NAME=VALUE for a parameter of the runbook; repeatable");
  cmd->add_option("--description", *f->s.mutable_description(), "What it is for");
  cmd->add_option("--scope", f->scopes, "Security scopes (default: the runbook's); repeatable");
  cmd->add_flag("--disabled", f->disabled, "Made, but not run until enabled (update without it)");
  return [f, create](Client& c) {
    if (std::string err = f->Build(); !err.empty()) {
      std::cerr << "stratactl: " << err << "\n";
      return kUsage;
    }
    v1::RunbookSchedule out;
    if (int rc = c.Call(create ? &Stub::CreateRunbookSchedule : &Stub::UpdateRunbookSchedule, f->s,
                        &out))
      return rc;
    PrintDone(c.options(),
              absl::StrCat("schedule \"", out.name(), "\" ", create ? "created" : "updated", ": ",
                           When(out), out.next_run().empty() ? "" : ", next run ", out.next_run(),
                           " (fired by site ", out.site(), ")"),
              out);
    return kOk;
  };
}

void DescribeSchedule(const Options& o, const v1::RunbookSchedule& s) {
  std::vector<std::vector<std::string>> fields{{"name", s.name()},
                                               {"description", s.description()},
                                               {"runbook", s.runbook()},
                                               {"group", s.group()},
                                               {"when", When(s)},
                                               {"start", s.start()},
                                               {"next run", s.next_run()},
                                               {"missed runs", s.missed()},
                                               {"enabled", Bool(!s.disabled())},
                                               {"fired by site", s.site()},
                                               {"scopes", absl::StrJoin(s.scopes(), ", ")},
                                               {"by", s.created_by()},
                                               {"updated", s.updated_at()}};
  for (const auto& p : s.parameters()) fields.push_back({"parameter " + p.name(), p.value()});
  Describe(o, s, fields);
}

}  // namespace

std::vector<Command> RunbookScheduleCommands() {
  const std::string names = "get schedules --all";
  return {
      {"get",
       "schedules",
       {"schedule"},
       "Runbook schedules and their next run",
       [](CLI::App*) -> Action {
         return [](Client& c) {
           v1::RunbookScheduleList l;
           if (int rc = c.ListAll(&Stub::ListRunbookSchedules, &l)) return rc;
           Table t{{"NAME", "RUNBOOK", "GROUP", "WHEN", "NEXT RUN", "ENABLED", "SITE"}, {}};
           for (const auto& s : l.schedules())
             t.rows.push_back({s.name(), s.runbook(), s.group(), When(s), s.next_run(),
                               Bool(!s.disabled()), s.site()});
           Show(c.options(), l, l.next_page_token(), t);
           return kOk;
         };
       }},
      {"describe",
       "schedule",
       {},
       "A runbook schedule",
       OnName<Stub, v1::RunbookSchedule>(&Stub::GetRunbookSchedule, DescribeSchedule),
       names},
      {"create",
       "schedule",
       {},
       "A runbook schedule (--once, --every, --daily, --weekly, --monthly)",
       [](CLI::App* cmd) { return Save(cmd, true); }},
      {"update",
       "schedule",
       {},
       "A runbook schedule (every flag, as create)",
       [](CLI::App* cmd) { return Save(cmd, false); },
       names},
      {"delete",
       "schedule",
       {},
       "A runbook schedule",
       DeleteByName(&Stub::DeleteRunbookSchedule, "schedule"),
       names},
  };
}

}  // namespace strata::ctl
