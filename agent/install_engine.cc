#include "agent/install_engine.h"

#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "agent/content_cache.h"
#include "agent/runner.h"
#include "common/base/files.h"
#include "common/base/log.h"
#include "common/base/status.h"
#include "common/content/hash.h"
#include "common/deploy/application.h"
#include "common/deploy/windows.h"
#include "common/inventory/report_check.h"

namespace strata::agent {

namespace fs = std::filesystem;

struct InstallEngine::Outcome {
  enum Kind {
    kDone,           // installed (or uninstalled)
    kAlready,        // detection found it so: nothing ran
    kReboot,         // done; a reboot completes it
    kNotApplicable,  // no deployment type's requirements hold
    kRetry,          // try again later (return code, or content unavailable)
    kFailed,         // failed; retried while attempts remain
    kFinal,          // failed, and must not run again (an interrupted install)
    kAbandoned,      // the agent is stopping; the job runs on
  } kind = kFailed;
  std::string detail;
  int exit_code = 0;
};

namespace {

constexpr int64_t kMaxRetryDelaySeconds = 86400;

std::string Tail(const std::string& text, size_t max) {
  if (text.size() <= max) return text;
  size_t from = text.size() - max;
  // Start at a character boundary (UTF-8).
  while (from < text.size() && (static_cast<unsigned char>(text[from]) & 0xC0) == 0x80) ++from;
  return text.substr(from);
}

int64_t NowMs() { return absl::ToUnixMillis(absl::Now()); }

const v1::DeploymentType* TypeNamed(const v1::Application& app, const std::string& name) {
  for (const auto& dt : app.deployment_types())
    if (dt.name() == name) return &dt;
  return nullptr;
}

// The applications of a deployment by name: it, its dependencies, those it
// supersedes.
std::map<std::string, const v1::Application*> AppsOf(const v1::DeploymentPolicy& d) {
  std::map<std::string, const v1::Application*> apps;
  for (const auto& a : d.dependencies()) apps[a.name()] = &a;
  for (const auto& a : d.superseded()) apps[a.name()] = &a;
  apps[d.application().name()] = &d.application();
  return apps;
}

// Dependencies in install order: the deepest first, each once.
void DependencyOrder(const std::string& name,
                     const std::map<std::string, const v1::Application*>& apps,
                     std::set<std::string>& seen, std::vector<const v1::Application*>& out) {
  auto it = apps.find(name);
  if (it == apps.end()) return;
  for (const auto& dep : it->second->depends_on()) {
    if (!seen.insert(dep).second) continue;
    DependencyOrder(dep, apps, seen, out);
    auto d = apps.find(dep);
    if (d != apps.end()) out.push_back(d->second);
  }
}

// The job's files belong to the user it runs as.
void GiveTo(const std::string& dir, const std::string& user) {
  if (user.empty() || user == "root") return;
  passwd* pw = getpwnam(user.c_str());
  if (pw == nullptr) return;  // the runner refuses it with the reason
  std::error_code ec;
  (void)!chown(dir.c_str(), pw->pw_uid, pw->pw_gid);
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    (void)!lchown(it->path().c_str(), pw->pw_uid, pw->pw_gid);
  }
}

}  // namespace

InstallEngine::InstallEngine(EngineOptions options) : options_(std::move(options)) {
  std::error_code ec;
  fs::create_directories(options_.state_dir + "/deployments", ec);
  fs::permissions(options_.state_dir + "/deployments", fs::perms::owner_all, ec);
  fs::create_directories(options_.state_dir + "/runs", ec);
  // Traversable, not listable: a job running as a named user reaches its
  // own folder (which it is given) and nothing else.
  fs::permissions(options_.state_dir + "/runs",
                  fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec, ec);
}

InstallEngine::~InstallEngine() { Stop(); }

void InstallEngine::SetDeployments(std::vector<v1::DeploymentPolicy> deployments,
                                   std::vector<v1::MaintenanceWindow> windows) {
  absl::MutexLock lock(&mu_);
  deployments_ = std::move(deployments);
  windows_ = std::move(windows);
  changed_ = true;
}

void InstallEngine::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void InstallEngine::Stop() {
  stop_ = true;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void InstallEngine::Loop() {
  while (!stop_) {
    // At least once a minute: a waiting deployment's deadline, a retry.
    const absl::Time next = std::min(RunPass(), absl::Now() + absl::Minutes(1));
    // Looking every second for install requests (strata-agent install).
    while (!stop_ && absl::Now() < next && !HasRequests()) {
      absl::MutexLock lock(&mu_);
      auto woken = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_ || changed_; };
      if (mu_.AwaitWithTimeout(
              absl::Condition(&woken),
              std::clamp(next - absl::Now(), absl::Milliseconds(50), absl::Seconds(1))))
        break;
    }
  }
}

absl::Time InstallEngine::RunPass() {
  std::vector<v1::DeploymentPolicy> deployments;
  std::vector<v1::MaintenanceWindow> windows;
  {
    absl::MutexLock lock(&mu_);
    deployments = deployments_;
    windows = windows_;
    changed_ = false;
  }
  ForgetOthers(deployments);
  TakeRequests();
  absl::Time next = absl::InfiniteFuture();
  for (const auto& d : deployments) {
    if (stop_) break;
    v1::InstallRecord rec = Load(d.name());
    if (rec.running()) {
      Resume(d, rec);  // judged under the revision it ran with
      next = absl::Now();
      continue;
    }
    if (rec.revision() != d.revision()) {
      const bool requested =
          rec.requested() && rec.revision().empty();  // asked before its first pass
      rec.Clear();                                    // a new definition: evaluated afresh
      rec.set_deployment(d.name());
      rec.set_revision(d.revision());
      rec.set_requested(requested);
    }
    if (rec.settled()) continue;
    const absl::Time now = absl::Now();
    if (d.purpose() == "available" && !rec.requested()) {
      if (rec.state() != v1::DEPLOYMENT_STATE_AVAILABLE)
        Report(d, rec, v1::DEPLOYMENT_STATE_AVAILABLE, "installs on request");
      continue;
    }
    if (rec.first_seen_unix_ms() == 0) {
      rec.set_first_seen_unix_ms(NowMs());
      Save(rec);
    }
    absl::Time due = absl::FromUnixSeconds(std::max(d.available_at_unix(), d.deadline_unix()));
    // Learned of only after its deadline (the device was off): the grace.
    const absl::Time first_seen = absl::FromUnixMillis(rec.first_seen_unix_ms());
    const bool grace = d.purpose() == "required" && d.grace_minutes() > 0 && first_seen > due;
    if (grace) due = first_seen + d.grace_minutes() * options_.minute;
    if (now < due) {
      Wait(d, rec,
           absl::StrCat(
               grace ? "in its grace period after the deadline, until " : "until its deadline ",
               absl::FormatTime(absl::RFC3339_sec, due, absl::UTCTimeZone())));
      next = std::min(next, due);
      continue;
    }
    if (d.purpose() == "required" && !d.ignore_maintenance_windows() && !windows.empty()) {
      // The longest of its deployment types' run times must fit.
      int minutes = 0;
      for (const auto& dt : d.application().deployment_types())
        minutes = std::max(minutes, deploy::MaxRunMinutes(dt));
      const absl::Time fit =
          deploy::NextFit(windows, now, minutes * options_.minute, options_.zone);
      if (fit > now) {
        // A window gates running something, not finding it done: already
        // there (a new revision of an installed application), nothing waits.
        if (AlreadyThere(d)) {
          Conclude(d, rec, {Outcome::kAlready, "detected as it should be: nothing to run"});
          continue;
        }
        Wait(d, rec,
             fit == absl::InfiniteFuture()
                 ? absl::StrCat("no maintenance window of ", minutes,
                                " minutes (its maximum run time) within a year")
                 : absl::StrCat("for a maintenance window at ",
                                absl::FormatTime(absl::RFC3339_sec, fit, absl::UTCTimeZone()), " (",
                                minutes, " minutes needed)"));
        next = std::min(next, fit);
        continue;
      }
    }
    if (rec.next_try_unix_ms() > NowMs()) {
      next = std::min(next, absl::FromUnixMillis(rec.next_try_unix_ms()));
      continue;
    }
    Process(d, rec);
    if (!rec.settled() && rec.next_try_unix_ms() > 0)
      next = std::min(next, absl::FromUnixMillis(rec.next_try_unix_ms()));
  }
  return next;
}

bool InstallEngine::AlreadyThere(const v1::DeploymentPolicy& d) {
  std::string why;
  const v1::DeploymentType* dt = ChooseType(d.application(), &why);
  if (dt == nullptr || !deploy::HasDetection(*dt)) return false;
  auto found = Detected(*dt);
  return found.ok() && *found == (d.action() == "install");
}

bool InstallEngine::Done(const v1::InstallRecord& rec, const std::string& application) {
  return std::find(rec.done().begin(), rec.done().end(), application) != rec.done().end();
}

// Waiting, said once per reason.
void InstallEngine::Wait(const v1::DeploymentPolicy& d, v1::InstallRecord& rec,
                         const std::string& why) {
  if (rec.state() == v1::DEPLOYMENT_STATE_WAITING && rec.detail() == why) return;
  Report(d, rec, v1::DEPLOYMENT_STATE_WAITING, why);
}

void InstallEngine::Process(const v1::DeploymentPolicy& d, v1::InstallRecord& rec) {
  rec.set_attempt(rec.attempt() + 1);
  const bool install = d.action() == "install";
  if (install) {
    const auto apps = AppsOf(d);
    std::set<std::string> seen{d.application().name()};
    std::vector<const v1::Application*> order;
    DependencyOrder(d.application().name(), apps, seen, order);
    for (const v1::Application* dep : order) {
      if (Done(rec, dep->name())) continue;
      Outcome o = Apply(d, *dep, /*install=*/true, rec);
      if (o.kind == Outcome::kAbandoned) return;
      if (o.kind != Outcome::kDone && o.kind != Outcome::kAlready && o.kind != Outcome::kReboot) {
        o.detail = absl::StrCat("dependency \"", dep->name(), "\": ", o.detail);
        if (o.kind == Outcome::kNotApplicable) o.kind = Outcome::kFailed;
        Conclude(d, rec, o);
        return;
      }
      rec.add_done(dep->name());
    }
    for (const auto& s : d.application().supersedes()) {
      if (!s.uninstall()) continue;
      auto it = apps.find(s.application());
      if (it == apps.end() || Done(rec, s.application())) continue;
      Outcome o = Apply(d, *it->second, /*install=*/false, rec);
      if (o.kind == Outcome::kAbandoned) return;
      if (o.kind != Outcome::kDone && o.kind != Outcome::kAlready &&
          o.kind != Outcome::kNotApplicable) {
        o.detail = absl::StrCat("superseded \"", s.application(), "\" not uninstalled: ", o.detail);
        Conclude(d, rec, o);
        return;
      }
      rec.add_done(s.application());
    }
  }
  Outcome o = Apply(d, d.application(), install, rec);
  if (o.kind == Outcome::kAbandoned) return;
  Conclude(d, rec, o);
}

InstallEngine::Outcome InstallEngine::Apply(const v1::DeploymentPolicy& d,
                                            const v1::Application& app, bool install,
                                            v1::InstallRecord& rec) {
  std::string why;
  const v1::DeploymentType* dt = ChooseType(app, &why);
  if (dt == nullptr) return {Outcome::kNotApplicable, why};
  if (deploy::HasDetection(*dt)) {
    auto found = Detected(*dt);
    if (!found.ok())
      return {Outcome::kFailed, absl::StrCat("detection: ", found.status().message())};
    if (*found == install)
      return {Outcome::kAlready, install ? "detected as installed: nothing ran"
                                         : "detected as not installed: nothing ran"};
  }
  return RunJob(d, app, *dt, install, rec);
}

InstallEngine::Outcome InstallEngine::RunJob(const v1::DeploymentPolicy& d,
                                             const v1::Application& app,
                                             const v1::DeploymentType& dt, bool install,
                                             v1::InstallRecord& rec) {
  const std::string run_dir = RunDir(d.name());
  const std::string content_dir = run_dir + "/content";
  std::error_code ec;
  fs::remove_all(content_dir, ec);
  fs::create_directories(content_dir, ec);
  if (ec) return {Outcome::kFailed, absl::StrCat(content_dir, ": ", ec.message())};
  rec.set_deployment_type(dt.name());
  if (dt.has_content() && install) {
    absl::Status fetched = Fetch(d, dt, rec, content_dir);
    if (!fetched.ok())
      return {absl::IsUnavailable(fetched) ? Outcome::kRetry : Outcome::kFailed,
              absl::StrCat("content ", dt.content().package(), ": ", fetched.message())};
  }
  GiveTo(content_dir, dt.run_as());
  const bool main = app.name() == d.application().name();
  Report(d, rec, v1::DEPLOYMENT_STATE_INSTALLING,
         absl::StrCat(install ? "installing " : "uninstalling ", app.name(),
                      main ? "" : (install ? " (a dependency)" : " (superseded)")));
  RunSpec spec;
  spec.command = install ? dt.install_command() : dt.uninstall_command();
  spec.dir = content_dir;
  spec.user = dt.run_as();
  spec.output_path = run_dir + "/output.log";
  spec.exit_path = run_dir + "/exit";
  spec.return_code_path = run_dir + "/return_code";
  spec.timeout = deploy::MaxRunMinutes(dt) * options_.minute;
  spec.env = JobEnv();
  spec.env.push_back("STRATA_DEPLOYMENT=" + d.name());
  spec.env.push_back("STRATA_APPLICATION=" + app.name());
  unlink(spec.output_path.c_str());
  // An earlier job's exit code must not be taken for this one's if the
  // agent dies before the job starts.
  unlink(spec.exit_path.c_str());
  unlink(spec.return_code_path.c_str());
  rec.set_running(true);
  rec.set_application(app.name());
  rec.set_action(install ? "install" : "uninstall");
  rec.set_pid(0);
  rec.set_deadline_unix_ms(absl::ToUnixMillis(absl::Now() + spec.timeout));
  Save(rec);
  auto r = Run(
      spec,
      [&](const Job& job) {
        rec.set_pid(job.pid);
        rec.set_pid_start_ticks(job.start_ticks);
        rec.set_deadline_unix_ms(absl::ToUnixMillis(job.deadline));
        Save(rec);
      },
      &stop_);
  if (r.ok() && r->abandoned) return {Outcome::kAbandoned, ""};
  rec.set_running(false);  // saved with the state that follows
  fs::remove_all(content_dir, ec);
  if (!r.ok()) return {Outcome::kFailed, std::string(r.status().message())};
  return Judge(app, dt, install, r->exited, r->exit_code, r->timed_out, r->output_tail);
}

InstallEngine::Outcome InstallEngine::Judge(const v1::Application& app,
                                            const v1::DeploymentType& dt, bool install, bool exited,
                                            int exit_code, bool timed_out,
                                            const std::string& tail) {
  const std::string output = Tail(tail, deploy::kMaxDetailBytes - 200);
  if (timed_out)
    return {Outcome::kFailed,
            absl::StrCat("killed with its children after its maximum run time of ",
                         deploy::MaxRunMinutes(dt), " minutes\n", output),
            -1};
  if (!exited)
    return {Outcome::kFailed, absl::StrCat("ended without an exit code (killed?)\n", output),
            exit_code};
  const v1::ReturnKind kind = deploy::ReturnKindOf(dt, exit_code);
  if (kind == v1::RETURN_KIND_RETRY)
    return {Outcome::kRetry, absl::StrCat("exit code ", exit_code, ": try again later\n", output),
            exit_code};
  if (kind == v1::RETURN_KIND_FAILURE)
    return {Outcome::kFailed, absl::StrCat("exit code ", exit_code, "\n", output), exit_code};
  if (deploy::HasDetection(dt)) {
    auto found = Detected(dt);
    if (!found.ok())
      return {Outcome::kFailed, absl::StrCat("detection: ", found.status().message()), exit_code};
    if (*found != install)
      return {Outcome::kFailed,
              absl::StrCat("exit code ", exit_code, " but detection finds ", app.name(),
                           install ? " not installed" : " still installed", "\n", output),
              exit_code};
  }
  if (kind == v1::RETURN_KIND_SOFT_REBOOT || kind == v1::RETURN_KIND_HARD_REBOOT)
    return {Outcome::kReboot, absl::StrCat("exit code ", exit_code, ": a reboot completes it"),
            exit_code};
  return {Outcome::kDone, output, exit_code};
}

void InstallEngine::Resume(const v1::DeploymentPolicy& d, v1::InstallRecord& rec) {
  const auto apps = AppsOf(d);
  auto app = apps.find(rec.application());
  const v1::DeploymentType* dt =
      app == apps.end() ? nullptr : TypeNamed(*app->second, rec.deployment_type());
  const std::string run_dir = RunDir(d.name());
  RunSpec spec;
  spec.output_path = run_dir + "/output.log";
  spec.exit_path = run_dir + "/exit";
  spec.return_code_path = run_dir + "/return_code";
  Job job;
  job.pid = static_cast<pid_t>(rec.pid());
  job.start_ticks = rec.pid_start_ticks();
  job.deadline = absl::FromUnixMillis(rec.deadline_unix_ms());
  if (rec.pid() == 0) {
    // Journaled before it was started, never started (the runner runs a
    // command only once its pid is journaled): simply run it now.
    rec.set_running(false);
    Save(rec);
    return;
  }
  LogInfo("agent.deployment_resumed",
          {{"deployment", d.name()}, {"application", rec.application()}, {"pid", rec.pid()}});
  RunResult r = Adopt(spec, job, &stop_);
  if (r.abandoned) return;
  rec.set_running(false);
  std::error_code ec;
  fs::remove_all(run_dir + "/content", ec);
  const bool install = rec.action() != "uninstall";
  if (dt == nullptr) {  // the definition changed meanwhile: the next pass detects
    Save(rec);
    return;
  }
  if (app->second != &d.application()) {
    // A dependency's or a superseded application's job: done, or the
    // deployment fails here (as for the main job, not run again unless the
    // deployment allows it).
    if (r.exited || r.timed_out) {
      Outcome dep =
          Judge(*app->second, *dt, install, r.exited, r.exit_code, r.timed_out, r.output_tail);
      if (dep.kind == Outcome::kDone || dep.kind == Outcome::kReboot) {
        rec.add_done(app->second->name());
        Save(rec);
        return;
      }
      dep.detail = absl::StrCat(install ? "dependency \"" : "superseded \"", app->second->name(),
                                "\": ", dep.detail);
      Conclude(d, rec, dep);
      return;
    }
    if (!d.rerun_interrupted()) {
      Conclude(d, rec,
               {Outcome::kFinal, absl::StrCat("\"", app->second->name(),
                                              "\" was interrupted by the agent's restart with no "
                                              "exit code; not run again (--rerun-interrupted)")});
      return;
    }
    Save(rec);
    return;
  }
  Outcome o;
  if (r.exited || r.timed_out) {
    o = Judge(*app->second, *dt, install, r.exited, r.exit_code, r.timed_out, r.output_tail);
  } else if (d.rerun_interrupted()) {
    Save(rec);  // the next pass runs it again
    return;
  } else if (deploy::HasDetection(*dt) && Detected(*dt).value_or(!install) == install) {
    o = {Outcome::kDone, "interrupted by the agent's restart; detection finds it done"};
  } else {
    o = {Outcome::kFinal,
         "interrupted by the agent's restart with no exit code; not run again (the deployment "
         "does not allow it: --rerun-interrupted)"};
  }
  Conclude(d, rec, o);
}

void InstallEngine::Conclude(const v1::DeploymentPolicy& d, v1::InstallRecord& rec,
                             const Outcome& o) {
  const bool install = d.action() == "install";
  switch (o.kind) {
    case Outcome::kDone:
    case Outcome::kAlready:
      rec.set_settled(true);
      Report(d, rec, install ? v1::DEPLOYMENT_STATE_INSTALLED : v1::DEPLOYMENT_STATE_UNINSTALLED,
             o.detail, o.exit_code);
      return;
    case Outcome::kReboot:
      rec.set_settled(true);
      {
        std::string pending = ReadFile(options_.state_dir + "/reboot_pending").value_or("");
        if (pending.find(d.name() + "\n") == std::string::npos) pending += d.name() + "\n";
        (void)WriteFileDurably(options_.state_dir + "/reboot_pending", pending);
      }
      Report(d, rec, v1::DEPLOYMENT_STATE_REBOOT_PENDING, o.detail, o.exit_code);
      return;
    case Outcome::kNotApplicable:
      rec.set_settled(true);
      Report(d, rec, v1::DEPLOYMENT_STATE_REQUIREMENTS_NOT_MET, o.detail);
      return;
    case Outcome::kAbandoned:
      return;
    case Outcome::kRetry:
    case Outcome::kFailed:
    case Outcome::kFinal:
      break;
  }
  if (o.kind != Outcome::kFinal && rec.attempt() <= d.max_retries()) {
    const int64_t delay =
        std::min<int64_t>(kMaxRetryDelaySeconds, int64_t{std::max(d.retry_seconds(), 1)}
                                                     << std::min(rec.attempt() - 1, 20));
    rec.set_next_try_unix_ms(NowMs() + delay * 1000);
    Report(d, rec, v1::DEPLOYMENT_STATE_RETRYING,
           absl::StrCat("attempt ", rec.attempt(), " of ", d.max_retries() + 1, "; again in ",
                        delay, " s: ", o.detail),
           o.exit_code);
    return;
  }
  rec.set_settled(true);
  Report(d, rec, v1::DEPLOYMENT_STATE_FAILED, o.detail, o.exit_code);
}

const v1::DeploymentType* InstallEngine::ChooseType(const v1::Application& app, std::string* why) {
  std::vector<std::string> unmet;
  std::optional<collections::DeviceFacts> facts;
  for (const auto& dt : app.deployment_types()) {
    if (dt.requirements().empty()) return &dt;
    if (!facts)
      facts =
          FactsOf(options_.inventory ? options_.inventory() : v1::InventoryReport(), options_.site);
    auto holds = collections::EvaluateQuery(dt.requirements(), *facts);
    if (holds.ok() && *holds) return &dt;
    unmet.push_back(
        absl::StrCat(dt.name(), ": ", dt.requirements(),
                     holds.ok() ? "" : absl::StrCat(" (", holds.status().message(), ")")));
  }
  *why = absl::StrCat("requirements not met (", absl::StrJoin(unmet, "; "), ")");
  return nullptr;
}

absl::StatusOr<bool> InstallEngine::Detected(const v1::DeploymentType& dt) {
  DetectContext ctx = options_.detect;
  ctx.work_dir = options_.state_dir + "/runs/detect";
  ctx.env = JobEnv();
  std::error_code ec;
  fs::create_directories(ctx.work_dir, ec);
  return Detect(dt.detection(), ctx);
}

absl::Status InstallEngine::Fetch(const v1::DeploymentPolicy& d, const v1::DeploymentType& dt,
                                  v1::InstallRecord& rec, const std::string& dest) {
  if (!options_.locate) return absl::FailedPreconditionError("no management point to ask");
  ASSIGN_OR_RETURN(v1::ContentLocation where,
                   options_.locate(dt.content().package(), dt.content().version()));
  int64_t total = 0;
  for (const auto& f : where.manifest().files()) total += f.size();
  Report(d, rec, v1::DEPLOYMENT_STATE_DOWNLOADING,
         absl::StrCat(dt.content().package(), " version ", where.manifest().version()), 0, 0,
         total);
  ASSIGN_OR_RETURN(std::unique_ptr<ContentCache> cache,
                   ContentCache::Open(options_.state_dir + "/cache", options_.cache_max_bytes));
  DownloadOptions o = options_.download;
  o.dest = dest;
  ASSIGN_OR_RETURN(DownloadResult r, Download(*cache, where, o));
  LogInfo("agent.deployment_downloaded", {{"deployment", d.name()},
                                          {"bytes", r.bytes_downloaded},
                                          {"dps", absl::StrJoin(r.dps_used, ",")}});
  return absl::OkStatus();
}

void InstallEngine::Report(const v1::DeploymentPolicy& d, v1::InstallRecord& rec,
                           v1::DeploymentStateKind state, const std::string& detail, int exit_code,
                           int64_t bytes_done, int64_t bytes_total) {
  v1::ClientReport report;
  auto* s = report.mutable_deployment();
  s->set_deployment(d.name());
  s->set_revision(d.revision());
  s->set_state(state);
  // What a program printed may be Latin-1, binary or hold NULs: made valid
  // UTF-8, or the MP would refuse the report (and the state be lost).
  s->set_detail(Tail(inventory::CleanText(detail), deploy::kMaxDetailBytes));
  s->set_exit_code(exit_code);
  s->set_bytes_done(bytes_done);
  s->set_bytes_total(bytes_total);
  s->set_attempt(rec.attempt());
  s->set_deployment_type(rec.deployment_type());
  s->set_at_unix_ms(NowMs());
  const std::string said = s->detail();
  LogInfo("agent.deployment_state", {{"deployment", d.name()},
                                     {"state", deploy::StateName(state)},
                                     {"exit_code", exit_code},
                                     {"attempt", rec.attempt()}});
  // Queued before the journal moves on: a crash in between repeats the
  // state (harmless) rather than losing it.
  if (options_.report) {
    absl::Status queued = options_.report(std::move(report));
    if (!queued.ok()) LogWarning("agent.deployment_report_failed", {{"error", queued}});
  }
  rec.set_state(state);
  rec.set_detail(said);
  Save(rec);
}

}  // namespace strata::agent
