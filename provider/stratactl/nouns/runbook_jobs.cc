// stratactl start runbook NAME --group G [--param k=v] [--watch], get jobs,
// get job ID [--follow], stop job ID, suspend job ID, resume job ID

#include <iostream>
#include <memory>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "provider/stratactl/command.h"
#include "provider/stratactl/output.h"
#include "strata/v1/admin/runbook_jobs.grpc.pb.h"

namespace strata::ctl {
namespace {

using Stub = v1::RunbookJobService::Stub;

bool Ended(const v1::RunbookJob& j) {
  return j.state() == "completed" || j.state() == "failed" || j.state() == "stopped";
}

// The exit code a watched job ends with: 0 completed, 1 otherwise.
int ExitOf(const v1::RunbookJob& j) { return j.state() == "completed" ? kOk : kFailed; }

std::string StateLine(const v1::RunbookJob& j) {
  std::string s = absl::StrCat("job ", j.id(), " (", j.runbook(), " v", j.version(), " on ",
                               j.group(), " at ", j.site(), "): ", j.state());
  if (!j.worker().empty()) absl::StrAppend(&s, " on ", j.worker(), ", attempt ", j.attempt());
  if (Ended(j) && j.state() != "stopped") absl::StrAppend(&s, ", exit ", j.exit_code());
  if (!j.detail().empty()) absl::StrAppend(&s, " - ", j.detail());
  return s;
}

void DescribeJob(const Options& o, const v1::RunbookJob& j) {
  std::vector<std::vector<std::string>> fields{
      {"id", j.id()},
      {"runbook", absl::StrCat(j.runbook(), " v", j.version(), " (sha256 ", j.sha256(), ")")},
      {"group", absl::StrCat(j.group(), " at ", j.site())},
      {"state", j.state()},
      {"worker", j.worker()},
      {"attempt", absl::StrCat(j.attempt())},
      {"created", absl::StrCat(j.created_at(), " by ", j.created_by())},
      {"started", j.started_at()},
      {"ended", j.ended_at()},
      {"exit code", absl::StrCat(j.exit_code())},
      {"detail", j.detail()},
      {"stop asked by", j.stop_requested_by()},
      {"resumable", j.resumable() ? "yes" : "no"}};
  if (!j.suspend_changed_by().empty())
    fields.push_back(
        {j.suspend_requested() ? "suspended by" : "resumed by", j.suspend_changed_by()});
  if (j.checkpoint_bytes() > 0)
    fields.push_back(
        {"checkpoint", absl::StrCat(j.checkpoint_bytes(), " bytes, at ", j.checkpoint_at())});
  for (const auto& p : j.parameters()) fields.push_back({"parameter " + p.name(), p.value()});
  for (const auto& a : j.attempts())
    fields.push_back({absl::StrCat("attempt ", a.attempt()),
                      absl::StrCat(a.worker(), ": ", a.outcome().empty() ? "held" : a.outcome(),
                                   a.detail().empty() ? "" : " - ", a.detail())});
  for (const auto& s : j.streams())
    if (!s.text().empty()) fields.push_back({s.stream(), s.text()});
  Describe(o, j, fields);
}

// Prints the job's streams as they reach the provider's site until it ended
// and they are drained; output to stdout, error and verbose to stderr.
int Follow(Client& c, const std::string& id) {
  v1::GetRunbookJobRequest req;
  req.set_id(id);
  std::string last_state;
  int attempt = 0;
  while (true) {
    v1::RunbookJob j;
    if (int rc = c.Call(&Stub::GetRunbookJob, req, &j)) return rc;
    if (j.attempt() != attempt && attempt != 0) {
      std::cerr << "[attempt " << j.attempt() << "]\n";
      req.set_output_from(0);
      req.set_error_from(0);
      req.set_verbose_from(0);
      attempt = j.attempt();
      continue;
    }
    attempt = j.attempt();
    req.set_attempt(attempt);
    bool grew = false;
    for (const auto& s : j.streams()) {
      if (s.text().empty()) continue;
      grew = true;
      if (s.stream() == "output") {
        std::cout << s.text() << std::flush;
        req.set_output_from(s.next());
      } else if (s.stream() == "error") {
        std::cerr << s.text() << std::flush;
        req.set_error_from(s.next());
      } else {
        std::cerr << "[verbose] " << s.text() << std::flush;
        req.set_verbose_from(s.next());
      }
    }
    const std::string state = StateLine(j);
    if (state != last_state) {
      std::cerr << state << "\n";
      last_state = state;
    }
    if (Ended(j) && !grew) return ExitOf(j);
    if (j.state() == "suspended" && !grew) {
      std::cerr << "job " << id << " is suspended: stratactl resume job " << id << "\n";
      return kFailed;
    }
    if (!grew) std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
}

Action Start(CLI::App* cmd) {
  auto req = std::make_shared<v1::StartRunbookRequest>();
  auto params = std::make_shared<std::vector<std::string>>();
  auto watch = std::make_shared<bool>(false);
  cmd->add_option("name", *req->mutable_runbook(), "The runbook (its published version runs)")
      ->required();
  cmd->add_option("--group", *req->mutable_group(), "The worker group to run it on")->required();
  cmd->add_option("--param", *params, "NAME=VALUE for a parameter of the runbook; repeatable");
  cmd->add_flag("--watch", *watch,
                "Follow the job: its streams as they arrive, then its end (exit 0 if it "
                "completed, 1 otherwise, suspended included)");
  return [req, params, watch](Client& c) {
    for (const auto& p : *params) {
      const size_t eq = p.find('=');
      if (eq == std::string::npos || eq == 0) {
        std::cerr << "stratactl: --param " << p << ": NAME=VALUE\n";
        return kUsage;
      }
      auto* a = req->add_parameters();
      a->set_name(p.substr(0, eq));
      a->set_value(p.substr(eq + 1));
    }
    v1::RunbookJob j;
    if (int rc = c.Call(&Stub::StartRunbook, *req, &j)) return rc;
    if (!*watch) {
      PrintDone(c.options(),
                absl::StrCat("job ", j.id(), " queued: stratactl get job ", j.id(), " --follow"),
                j);
      return kOk;
    }
    std::cerr << "job " << j.id() << " queued\n";
    return Follow(c, j.id());
  };
}

Action GetJob(CLI::App* cmd) {
  auto id = std::make_shared<std::string>();
  auto follow = std::make_shared<bool>(false);
  cmd->add_option("id", *id, "The job's id")->required();
  cmd->add_flag("--follow", *follow,
                "Print its streams as they arrive until it ends or is suspended (exit 0 if it "
                "completed, 1 otherwise)");
  return [id, follow](Client& c) {
    if (*follow) return Follow(c, *id);
    v1::GetRunbookJobRequest req;
    req.set_id(*id);
    v1::RunbookJob j;
    if (int rc = c.Call(&Stub::GetRunbookJob, req, &j)) return rc;
    DescribeJob(c.options(), j);
    return kOk;
  };
}

}  // namespace

std::vector<Command> RunbookJobCommands() {
  return {
      {"start",
       "runbook",
       {},
       "A job of a runbook's published version on a worker group",
       Start,
       "get runbooks --all"},
      {"get",
       "jobs",
       {},
       "Runbook jobs, newest first (filter: a runbook name pattern)",
       [](CLI::App*) -> Action {
         return [](Client& c) {
           v1::RunbookJobList l;
           if (int rc = c.ListAll(&Stub::ListRunbookJobs, &l)) return rc;
           Table t{
               {"ID", "RUNBOOK", "GROUP", "SITE", "STATE", "WORKER", "ATTEMPT", "CREATED", "EXIT"},
               {}};
           for (const auto& j : l.jobs())
             t.rows.push_back({j.id(), absl::StrCat(j.runbook(), " v", j.version()), j.group(),
                               j.site(), j.state(), j.worker(), absl::StrCat(j.attempt()),
                               j.created_at(), Ended(j) ? absl::StrCat(j.exit_code()) : ""});
           Show(c.options(), l, l.next_page_token(), t);
           return kOk;
         };
       }},
      {"get",
       "job",
       {},
       "A runbook job: its state, attempts and streams (--follow)",
       GetJob,
       "get jobs --all"},
      {"stop",
       "job",
       {},
       "A runbook job: queued, it never starts; running, its worker kills it",
       OnName<Stub, v1::RunbookJob>(
           &Stub::StopRunbookJob,
           [](const Options& o, const v1::RunbookJob& j) {
             PrintDone(o, absl::StrCat("job ", j.id(), ": stop asked (", j.state(), ")"), j);
           },
           "The job's id"),
       "get jobs --all"},
      {"suspend",
       "job",
       {},
       "A resumable runbook's job: queued, it waits; running, its worker kills it; it keeps "
       "its last checkpoint until resume job",
       OnName<Stub, v1::RunbookJob>(
           &Stub::SuspendRunbookJob,
           [](const Options& o, const v1::RunbookJob& j) {
             PrintDone(o, absl::StrCat("job ", j.id(), ": suspend asked (", j.state(), ")"), j);
           },
           "The job's id"),
       "get jobs --all"},
      {"resume",
       "job",
       {},
       "A suspended runbook job: queued again; its next attempt finds its checkpoint in "
       "$STRATA_CHECKPOINT_FILE",
       OnName<Stub, v1::RunbookJob>(
           &Stub::ResumeRunbookJob,
           [](const Options& o, const v1::RunbookJob& j) {
             PrintDone(o, absl::StrCat("job ", j.id(), ": resume asked (", j.state(), ")"), j);
           },
           "The job's id"),
       "get jobs --all"},
  };
}

}  // namespace strata::ctl
