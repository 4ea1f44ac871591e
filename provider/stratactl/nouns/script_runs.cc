// stratactl run script NAME --collection C | --device D [--param k=v]
// [--watch], get script-runs, get script-run ID [--watch]

#include <unistd.h>

#include <iostream>
#include <map>
#include <memory>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "provider/stratactl/command.h"
#include "provider/stratactl/output.h"
#include "strata/v1/admin/script_runs.grpc.pb.h"

namespace strata::ctl {
namespace {

int64_t Count(const v1::ScriptRunStatus& s, const std::string& state) {
  for (const auto& c : s.counts())
    if (c.state() == state) return c.devices();
  return 0;
}

int64_t Total(const v1::ScriptRunStatus& s) {
  int64_t n = 0;
  for (const auto& c : s.counts()) n += c.devices();
  return n;
}

// "[####------] 12/40 done: 10 succeeded, 2 failed, 0 expired; 3 running, 25 pending"
std::string Progress(const v1::ScriptRunStatus& s) {
  const int64_t done = Count(s, "succeeded") + Count(s, "failed") + Count(s, "expired");
  return absl::StrCat(ProgressBar(done, std::max<int64_t>(Total(s), 1)), " ", done, "/", Total(s),
                      " done: ", Count(s, "succeeded"), " succeeded, ", Count(s, "failed"),
                      " failed, ", Count(s, "expired"), " expired; ", Count(s, "running"),
                      " running, ", Count(s, "pending"), " pending");
}

bool Finished(const v1::ScriptRunStatus& s) {
  return Count(s, "pending") == 0 && Count(s, "running") == 0;
}

void ShowStatus(const Options& o, const v1::ScriptRunStatus& s) {
  if (o.output == "json") {
    PrintJson(s);
    return;
  }
  const auto& run = s.run();
  if (o.output == "csv") {
    Table t{
        {"DEVICE", "SITE", "STATE", "EXIT", "TRUNCATED", "STARTED", "FINISHED", "DETAIL", "OUTPUT"},
        {}};
    for (const auto& d : s.devices())
      t.rows.push_back({d.device_name(), d.site_code(), d.state(), absl::StrCat(d.exit_code()),
                        Bool(d.truncated()), d.started_at(), d.finished_at(), d.detail(),
                        d.output()});
    PrintTable(t, o.output);
    return;
  }
  std::cout << "script run " << run.id() << ": " << run.script() << " (sha256 "
            << run.sha256().substr(0, 16) << ") on "
            << (run.device_id().empty() ? "collection " + run.collection()
                                        : "device " + run.device_name())
            << ", by " << run.created_by() << ", expires " << run.expires_at() << "\n"
            << Progress(s) << "\n";
  for (const auto& d : s.devices()) {
    std::cout << "\n== " << d.device_name() << " (" << d.site_code() << "): " << d.state();
    if (d.state() == "succeeded" || d.state() == "failed") std::cout << ", exit " << d.exit_code();
    if (!d.detail().empty()) std::cout << " - " << d.detail();
    std::cout << "\n";
    if (d.truncated()) std::cout << "[output truncated: its last 64 KiB]\n";
    std::cout << d.output();
    if (!d.output().empty() && d.output().back() != '\n') std::cout << "\n";
  }
  if (s.devices_truncated()) std::cout << "(more devices: --max-devices, or --state)\n";
}

// Looks at the run until every device is done (or expired), with a
// progress line on stderr, then shows it.
int Watch(Client& c, v1::ScriptRunStatusRequest req, bool watch, int interval) {
  v1::ScriptRunStatus out;
  if (watch) {
    v1::ScriptRunStatusRequest counts = req;
    counts.set_without_output(true);
    counts.set_max_devices(1);
    const bool tty = isatty(STDERR_FILENO);
    std::string last;
    while (true) {
      out.Clear();
      if (int rc = c.Call(&v1::ScriptRunService::Stub::GetScriptRun, counts, &out)) return rc;
      const std::string line = Progress(out);
      if (line != last) std::cerr << (tty ? "\r" : "") << line << (tty ? "\033[K" : "\n");
      last = line;
      if (Finished(out) && Total(out) >= out.run().targeted()) break;
      std::this_thread::sleep_for(std::chrono::seconds(interval));
    }
    if (tty) std::cerr << "\n";
  }
  out.Clear();
  if (int rc = c.Call(&v1::ScriptRunService::Stub::GetScriptRun, req, &out)) return rc;
  ShowStatus(c.options(), out);
  // A finished run whose devices failed says so in the exit code.
  if (watch && (Count(out, "failed") > 0 || Count(out, "expired") > 0)) return kFailed;
  return kOk;
}

struct StatusFlags {
  v1::ScriptRunStatusRequest req;
  bool watch = false;
  int interval = 1;
  int max_devices = 0;

  void Declare(CLI::App* cmd) {
    cmd->add_option("--state", *req.mutable_state(),
                    "Only devices in this state (pending, running, succeeded, failed, expired)")
        ->check(CLI::IsMember({"pending", "running", "succeeded", "failed", "expired"}));
    cmd->add_option("--max-devices", max_devices,
                    "Per-device results (default 1000, at most 20000)")
        ->check(CLI::Range(1, 20000));
    cmd->add_flag("--watch", watch,
                  "Follow with a progress bar until every targeted device is done or expired, "
                  "then show the results (exit 1 if any failed or expired)");
    cmd->add_option("--interval", interval, "Seconds between looks with --watch (default 1)")
        ->check(CLI::Range(1, 3600));
  }
};

Action RunScript(CLI::App* cmd) {
  auto req = std::make_shared<v1::RunScriptRequest>();
  auto params = std::make_shared<std::vector<std::string>>();
  auto expires = std::make_shared<std::string>();
  auto status = std::make_shared<StatusFlags>();
  cmd->add_option("script", *req->mutable_script(), "The (approved) script")->required();
  auto* coll = cmd->add_option("--collection", *req->mutable_collection(),
                               "Run it on this collection's members");
  auto* dev =
      cmd->add_option("--device", *req->mutable_device(), "Run it on one device (name or id)");
  coll->excludes(dev);
  cmd->add_option("--param", *params, "NAME=VALUE for a parameter of the script; repeatable");
  cmd->add_option("--expires", *expires,
                  "A device that has not started it by then reports it expired: 3600, 30m, 2h, "
                  "7d (default 1h)");
  status->Declare(cmd);
  return [req, params, expires, status](Client& c) {
    if (req->collection().empty() && req->device().empty()) {
      std::cerr << "stratactl: --collection or --device is required\n";
      return kUsage;
    }
    for (const auto& p : *params) {
      std::pair<std::string, std::string> kv = absl::StrSplit(p, absl::MaxSplits('=', 1));
      if (p.find('=') == std::string::npos) {
        std::cerr << "stratactl: --param " << p << ": NAME=VALUE\n";
        return kUsage;
      }
      auto* a = req->add_arguments();
      a->set_name(kv.first);
      a->set_value(kv.second);
    }
    if (!expires->empty()) {
      const int64_t s = ParseDuration(*expires);
      if (s <= 0) {
        std::cerr << "stratactl: --expires " << *expires << ": seconds, or 30m, 2h, 7d\n";
        return kUsage;
      }
      req->set_expires_in_seconds(s);
    }
    v1::ScriptRun out;
    if (int rc = c.Call(&v1::ScriptRunService::Stub::RunScript, *req, &out)) return rc;
    if (!status->watch) {
      PrintDone(c.options(),
                absl::StrCat("script run ", out.id(), ": ", out.script(), " on ", out.targeted(),
                             " devices (stratactl get script-run ", out.id(), " --watch)"),
                out);
      return kOk;
    }
    std::cerr << "script run " << out.id() << " on " << out.targeted() << " devices\n";
    status->req.set_id(out.id());
    status->req.set_max_devices(status->max_devices);
    return Watch(c, status->req, true, status->interval);
  };
}

Action GetRun(CLI::App* cmd) {
  auto status = std::make_shared<StatusFlags>();
  cmd->add_option("id", *status->req.mutable_id(), "The run's id (run script, get script-runs)")
      ->required();
  status->Declare(cmd);
  return [status](Client& c) {
    status->req.set_max_devices(status->max_devices);
    return Watch(c, status->req, status->watch, status->interval);
  };
}

}  // namespace

std::vector<Command> ScriptRunCommands() {
  return {
      {"run",
       "script",
       {},
       "An approved script on a collection or a device, now",
       RunScript,
       "get scripts --all"},
      {"get",
       "script-runs",
       {},
       "Runs of scripts, newest first (--filter: a script name pattern)",
       [](CLI::App*) -> Action {
         return [](Client& c) {
           v1::ScriptRunList l;
           if (int rc = c.ListAll(&v1::ScriptRunService::Stub::ListScriptRuns, &l)) return rc;
           Table t{{"ID", "SCRIPT", "TARGET", "DEVICES", "BY", "CREATED", "EXPIRES"}, {}};
           for (const auto& r : l.runs())
             t.rows.push_back(
                 {r.id(), r.script(), r.device_id().empty() ? r.collection() : r.device_name(),
                  absl::StrCat(r.targeted()), r.created_by(), r.created_at(), r.expires_at()});
           Show(c.options(), l, l.next_page_token(), t);
           return kOk;
         };
       }},
      {"get",
       "script-run",
       {},
       "A run: counts by state and every device's exit code and output",
       GetRun,
       "get script-runs --all"},
  };
}

}  // namespace strata::ctl
