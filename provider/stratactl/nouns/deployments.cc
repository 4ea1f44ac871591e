// stratactl deploy application, get deployments, describe deployment,
// delete deployment, get deployment-status [--watch]

#include <unistd.h>

#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "provider/stratactl/command.h"
#include "provider/stratactl/output.h"
#include "strata/v1/admin/deployments.grpc.pb.h"

namespace strata::ctl {
namespace {

// States a device stays in until something changes (the others move on).
const std::set<std::string>& FinalStates() {
  static const auto* s = new std::set<std::string>{
      "installed", "failed", "requirements_not_met", "reboot_pending", "uninstalled", "available"};
  return *s;
}

struct DeployFlags {
  v1::Deployment req;
  int retries = 0, retry_seconds = 0;
  bool rerun = false;
  bool ignore_windows = false;
  int grace_minutes = 0;
};

Action Deploy(CLI::App* cmd) {
  auto flags = std::make_shared<DeployFlags>();
  v1::Deployment* req = &flags->req;
  cmd->add_option("application", *req->mutable_application(), "The application to deploy")
      ->required();
  cmd->add_option("--collection", *req->mutable_collection(), "The devices it goes to")->required();
  cmd->add_option("--name", *req->mutable_name(),
                  "The deployment's name (default: \"APPLICATION to COLLECTION\")");
  cmd->add_option("--purpose", *req->mutable_purpose(),
                  "required (default: installed at the deadline) or available (on request: "
                  "strata-agent install)")
      ->check(CLI::IsMember({"required", "available"}));
  cmd->add_option("--action", *req->mutable_action(), "install (default) or uninstall")
      ->check(CLI::IsMember({"install", "uninstall"}));
  cmd->add_option("--available-at", *req->mutable_available_at(),
                  "From when (RFC 3339 or unix seconds; default: now)");
  cmd->add_option("--deadline", *req->mutable_deadline(),
                  "Required: installed from then on (default: the available time)");
  auto* retries =
      cmd->add_option("--max-retries", flags->retries, "Tries after a failure (default 3; 0: none)")
          ->check(CLI::Range(0, 100));
  cmd->add_option("--retry-seconds", flags->retry_seconds,
                  "Wait before the first retry, doubled each time (default 600)")
      ->check(CLI::Range(10, 86400));
  cmd->add_flag("--rerun-interrupted", flags->rerun,
                "An install cut short by the agent's restart may run again (default: it is "
                "judged by detection)");
  cmd->add_option("--grace-minutes", flags->grace_minutes,
                  "Required: a device that learns of it only after the deadline (it was off) "
                  "waits this long first (default 0, at most 10080)")
      ->check(CLI::Range(0, 10080));
  cmd->add_flag("--ignore-maintenance-windows", flags->ignore_windows,
                "Required installs run at the deadline even outside the devices' maintenance "
                "windows");
  return [flags, retries](Client& c) {
    if (retries->count() > 0) flags->req.set_max_retries(flags->retries);
    flags->req.set_retry_seconds(flags->retry_seconds);
    flags->req.set_rerun_interrupted(flags->rerun);
    flags->req.set_ignore_maintenance_windows(flags->ignore_windows);
    flags->req.set_grace_minutes(flags->grace_minutes);
    v1::Deployment out;
    if (int rc = c.Call(&v1::DeploymentService::Stub::CreateDeployment, flags->req, &out))
      return rc;
    PrintDone(c.options(),
              absl::StrCat("deployment \"", out.name(), "\": ", out.action(), " ",
                           out.application(), " to ", out.collection(), " (", out.purpose(), ", ",
                           out.targeted(), " devices now)"),
              out);
    return kOk;
  };
}

// "12/40 installed, 1 failed, 3 downloading, 24 unknown"
std::string Progress(const v1::DeploymentStatus& s) {
  std::map<std::string, int64_t> n;
  for (const auto& c : s.counts()) n[c.state()] = c.devices();
  std::vector<std::string> parts;
  for (const auto& [state, count] : n) {
    if (state != "installed") parts.push_back(absl::StrCat(count, " ", state));
  }
  const int64_t total = std::max<int64_t>(s.targeted(), 1);
  return absl::StrCat(ProgressBar(n["installed"], total), " ", n["installed"], "/", s.targeted(),
                      " installed", parts.empty() ? "" : ", ", absl::StrJoin(parts, ", "));
}

bool Settled(const v1::DeploymentStatus& s) {
  int64_t settled = 0;
  for (const auto& c : s.counts())
    if (FinalStates().count(c.state())) settled += c.devices();
  return settled >= s.targeted();
}

void ShowStatus(const Options& o, const v1::DeploymentStatus& s) {
  if (o.output == "json") {
    PrintJson(s);
    return;
  }
  if (o.output != "csv") {
    std::cout << "deployment \"" << s.name() << "\": " << s.application() << " to "
              << s.collection() << "\n"
              << Progress(s) << "\n";
    Table sites{{"SITE", "STATE", "DEVICES"}, {}};
    for (const auto& site : s.sites())
      for (const auto& c : site.counts())
        sites.rows.push_back({site.site_code(), c.state(), absl::StrCat(c.devices())});
    PrintTable(sites, o.output);
    std::cout << "\n";
  }
  Table t{{"DEVICE", "SITE", "STATE", "EXIT", "BYTES", "ATTEMPT", "UPDATED", "DETAIL"}, {}};
  for (const auto& d : s.devices()) {
    std::string detail = d.detail();
    if (o.output != "csv") {
      if (auto nl = detail.rfind('\n', detail.size() > 1 ? detail.size() - 2 : 0);
          nl != std::string::npos && nl + 1 < detail.size())
        detail = detail.substr(nl + 1);  // the last line, in a table
      if (detail.size() > 60) detail = detail.substr(0, 57) + "...";
      while (!detail.empty() && detail.back() == '\n') detail.pop_back();
    }
    t.rows.push_back({d.device_name(), d.site_code(), d.state(), absl::StrCat(d.exit_code()),
                      d.bytes_total() ? absl::StrCat(d.bytes_done(), "/", d.bytes_total()) : "",
                      absl::StrCat(d.attempt()), d.updated_at(), detail});
  }
  PrintTable(t, o.output);
  if (s.devices_truncated()) std::cout << "(more devices: --max-devices, or --state)\n";
}

Action Status(CLI::App* cmd) {
  auto req = std::make_shared<v1::DeploymentStatusRequest>();
  auto watch = std::make_shared<bool>(false);
  auto interval = std::make_shared<int>(1);
  auto max_devices = std::make_shared<int>(0);
  cmd->add_option("name", *req->mutable_name(), "The deployment")->required();
  cmd->add_option("--state", *req->mutable_state(),
                  "Only devices in this state (installed, failed, downloading, ...)");
  cmd->add_option("--max-devices", *max_devices, "Per-device rows (default 1000, at most 20000)")
      ->check(CLI::Range(1, 20000));
  cmd->add_flag("--watch", *watch,
                "Follow the counts with a progress bar until every targeted device has "
                "settled (installed, failed, requirements not met...), then show the status");
  cmd->add_option("--interval", *interval, "Seconds between looks with --watch (default 1)")
      ->check(CLI::Range(1, 3600));
  return [req, watch, interval, max_devices](Client& c) {
    req->set_max_devices(*max_devices);
    v1::DeploymentStatus out;
    if (int rc = c.Call(&v1::DeploymentService::Stub::GetDeploymentStatus, *req, &out)) return rc;
    if (*watch) {
      const bool tty = isatty(STDERR_FILENO);
      std::string last;
      while (true) {
        const std::string line = Progress(out);
        if (line != last) std::cerr << (tty ? "\r" : "") << line << (tty ? "\033[K" : "\n");
        last = line;
        if (Settled(out)) break;
        std::this_thread::sleep_for(std::chrono::seconds(*interval));
        out.Clear();
        if (int rc = c.Call(&v1::DeploymentService::Stub::GetDeploymentStatus, *req, &out))
          return rc;
      }
      if (tty) std::cerr << "\n";
    }
    ShowStatus(c.options(), out);
    return kOk;
  };
}

void DescribeDeployment(const Options& o, const v1::Deployment& d) {
  Describe(o, d,
           {{"name", d.name()},
            {"application", d.application()},
            {"collection", d.collection()},
            {"action", d.action()},
            {"purpose", d.purpose()},
            {"available at", d.available_at()},
            {"deadline", d.deadline()},
            {"max retries", absl::StrCat(d.max_retries())},
            {"retry after", Duration(d.retry_seconds())},
            {"rerun interrupted", Bool(d.rerun_interrupted())},
            {"ignore maintenance windows", Bool(d.ignore_maintenance_windows())},
            {"grace after the deadline", Duration(int64_t{d.grace_minutes()} * 60)},
            {"targeted devices", absl::StrCat(d.targeted())},
            {"scopes", absl::StrJoin(d.scopes(), ", ")},
            {"created by", d.created_by()},
            {"created", d.created_at()}});
}

}  // namespace

std::vector<Command> DeploymentCommands() {
  return {
      {"deploy",
       "application",
       {"app"},
       "An application to a collection (required or available)",
       Deploy,
       "get applications --all"},
      {"get",
       "deployments",
       {"deployment"},
       "Deployments of applications to collections",
       [](CLI::App*) -> Action {
         return [](Client& c) {
           v1::DeploymentList l;
           if (int rc = c.ListAll(&v1::DeploymentService::Stub::ListDeployments, &l)) return rc;
           Table t{
               {"NAME", "APPLICATION", "COLLECTION", "ACTION", "PURPOSE", "DEADLINE", "TARGETED"},
               {}};
           for (const auto& d : l.deployments())
             t.rows.push_back({d.name(), d.application(), d.collection(), d.action(), d.purpose(),
                               d.deadline(), absl::StrCat(d.targeted())});
           Show(c.options(), l, l.next_page_token(), t);
           return kOk;
         };
       }},
      {"describe",
       "deployment",
       {},
       "A deployment",
       OnName<v1::DeploymentService::Stub, v1::Deployment>(
           &v1::DeploymentService::Stub::GetDeployment, DescribeDeployment),
       "get deployments --all"},
      {"get",
       "deployment-status",
       {},
       "Where a deployment stands: counts by state, per site, per device",
       Status,
       "get deployments --all"},
      {"delete",
       "deployment",
       {},
       "A deployment: agents stop acting on it",
       DeleteByName(&v1::DeploymentService::Stub::DeleteDeployment, "deployment"),
       "get deployments --all"},
  };
}

}  // namespace strata::ctl
