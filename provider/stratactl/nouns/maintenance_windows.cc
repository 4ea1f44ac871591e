// stratactl get maintenance-windows, create maintenance-window, delete
// maintenance-window

#include <iostream>
#include <memory>

#include "absl/strings/str_cat.h"
#include "provider/stratactl/command.h"
#include "provider/stratactl/output.h"
#include "strata/v1/admin/maintenance_windows.grpc.pb.h"

namespace strata::ctl {
namespace {

Action CreateWindow(CLI::App* cmd) {
  auto req = std::make_shared<v1::MaintenanceWindow>();
  auto duration = std::make_shared<std::string>();
  auto utc = std::make_shared<bool>(false);
  cmd->add_option("name", *req->mutable_name(), "The window's name")->required();
  cmd->add_option("--collection", *req->mutable_collection(), "Whose members it applies to")
      ->required();
  cmd->add_option("--start", *req->mutable_start(),
                  "The first occurrence, a civil time: 2026-12-01T22:00 (the device's local "
                  "time, or UTC with --utc)")
      ->required();
  cmd->add_option("--duration", *duration, "How long: 5m to 24h (300, 90m, 2h)")->required();
  cmd->add_option("--recurrence", *req->mutable_recurrence(),
                  "none (default), daily, weekly, monthly_day (the start's day of the month) or "
                  "monthly_weekday (the start's n-th weekday of the month)")
      ->check(CLI::IsMember({"none", "daily", "weekly", "monthly_day", "monthly_weekday"}));
  cmd->add_flag("--utc", *utc, "The start is UTC, not the device's local time");
  return [req, duration, utc](Client& c) {
    req->set_utc(*utc);
    const int64_t s = ParseDuration(*duration);
    if (s < 0 || s % 60 != 0) {
      std::cerr << "stratactl: --duration " << *duration << ": whole minutes, e.g. 300, 90m, 2h\n";
      return kUsage;
    }
    req->set_duration_minutes(static_cast<int32_t>(s / 60));
    v1::MaintenanceWindow out;
    if (int rc = c.Call(&v1::MaintenanceWindowService::Stub::CreateMaintenanceWindow, *req, &out))
      return rc;
    PrintDone(c.options(),
              absl::StrCat("maintenance window \"", out.name(), "\" for ", out.collection(), ": ",
                           out.start(), out.utc() ? " UTC" : " local", ", ",
                           Duration(int64_t{out.duration_minutes()} * 60), ", ", out.recurrence()),
              out);
    return kOk;
  };
}

}  // namespace

std::vector<Command> MaintenanceWindowCommands() {
  return {
      {"get",
       "maintenance-windows",
       {"maintenance-window"},
       "When required installs may run on collections' members",
       [](CLI::App*) -> Action {
         return [](Client& c) {
           v1::MaintenanceWindowList l;
           if (int rc = c.ListAll(&v1::MaintenanceWindowService::Stub::ListMaintenanceWindows, &l))
             return rc;
           Table t{{"NAME", "COLLECTION", "START", "ZONE", "DURATION", "RECURRENCE"}, {}};
           for (const auto& w : l.windows())
             t.rows.push_back({w.name(), w.collection(), w.start(), w.utc() ? "UTC" : "local",
                               Duration(int64_t{w.duration_minutes()} * 60), w.recurrence()});
           Show(c.options(), l, l.next_page_token(), t);
           return kOk;
         };
       }},
      {"create",
       "maintenance-window",
       {},
       "A maintenance window of a collection",
       CreateWindow,
       "get collections --all"},
      {"delete",
       "maintenance-window",
       {},
       "A maintenance window",
       DeleteByName(&v1::MaintenanceWindowService::Stub::DeleteMaintenanceWindow,
                    "maintenance window"),
       "get maintenance-windows --all"},
  };
}

}  // namespace strata::ctl
