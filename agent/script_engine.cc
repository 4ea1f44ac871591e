#include "agent/script_engine.h"

#include <sys/stat.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "agent/runner.h"
#include "common/base/files.h"
#include "common/base/log.h"
#include "common/content/hash.h"
#include "common/deploy/script.h"
#include "common/inventory/report_check.h"

namespace strata::agent {
namespace {

namespace fs = std::filesystem;

constexpr absl::Duration kKeepRecords = absl::Hours(8 * 24);
constexpr absl::Duration kIdle = absl::Seconds(30);

bool Final(v1::ScriptRunStateKind s) {
  return s == v1::SCRIPT_RUN_STATE_SUCCEEDED || s == v1::SCRIPT_RUN_STATE_FAILED ||
         s == v1::SCRIPT_RUN_STATE_EXPIRED;
}

int64_t NowMs() { return absl::ToUnixMillis(absl::Now()); }

}  // namespace

ScriptEngine::ScriptEngine(ScriptEngineOptions options) : options_(std::move(options)) {
  std::error_code ec;
  fs::create_directories(options_.state_dir + "/scripts", ec);
  chmod((options_.state_dir + "/scripts").c_str(), 0711);
}

ScriptEngine::~ScriptEngine() { Stop(); }

std::string ScriptEngine::RecordPath(const std::string& run) const {
  return absl::StrCat(options_.state_dir, "/scripts/", run, ".pb");
}

std::string ScriptEngine::RunDir(const std::string& run) const {
  return absl::StrCat(options_.state_dir, "/scripts/", run);
}

v1::ScriptRecord ScriptEngine::Load(const std::string& run) const {
  v1::ScriptRecord rec;
  auto data = ReadFile(RecordPath(run));
  if (!data.ok() || !rec.ParseFromString(*data)) rec.Clear();
  rec.set_run(run);
  return rec;
}

absl::Status ScriptEngine::Save(const v1::ScriptRecord& rec) const {
  return WriteFileDurably(RecordPath(rec.run()), rec.SerializeAsString());
}

void ScriptEngine::SetRuns(std::vector<v1::ScriptRunPolicy> runs) {
  absl::MutexLock lock(&mu_);
  runs_ = std::move(runs);
  changed_ = true;
}

void ScriptEngine::Start() {
  stop_ = false;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = false;
  }
  thread_ = std::thread([this] { Loop(); });
}

void ScriptEngine::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  std::map<std::string, std::thread> workers;
  {
    absl::MutexLock lock(&mu_);
    workers.swap(workers_);
  }
  for (auto& [run, t] : workers) t.join();
}

void ScriptEngine::RunPass() { Dispatch(/*inline_run=*/true); }

void ScriptEngine::Loop() {
  absl::Time next_prune = absl::Now();
  while (true) {
    Dispatch(/*inline_run=*/false);
    if (absl::Now() >= next_prune) {
      Prune();
      next_prune = absl::Now() + absl::Hours(1);
    }
    absl::MutexLock lock(&mu_);
    auto woken = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_ || changed_; };
    mu_.AwaitWithTimeout(absl::Condition(&woken), kIdle);
    if (stopping_) return;
    changed_ = false;
  }
}

void ScriptEngine::Dispatch(bool inline_run) {
  std::vector<v1::ScriptRunPolicy> runs;
  {
    absl::MutexLock lock(&mu_);
    // Workers that ended: joined (each left busy_ as it ended).
    for (auto it = workers_.begin(); it != workers_.end();) {
      if (busy_.count(it->first) == 0) {
        it->second.join();
        it = workers_.erase(it);
      } else {
        ++it;
      }
    }
    runs = runs_;
  }
  for (const auto& run : runs) {
    if (stop_) return;
    {
      absl::MutexLock lock(&mu_);
      if (busy_.count(run.name())) continue;
    }
    const v1::ScriptRecord rec = Load(run.name());
    if (Final(rec.state()) && rec.reported()) continue;
    if (inline_run) {
      Process(run);
      continue;
    }
    absl::MutexLock lock(&mu_);
    if (static_cast<int>(busy_.size()) >= options_.max_concurrent) return;  // woken when one ends
    busy_.insert(run.name());
    workers_[run.name()] = std::thread([this, run] {
      Process(run);
      absl::MutexLock lock(&mu_);
      busy_.erase(run.name());
      changed_ = true;
    });
  }
}

void ScriptEngine::Process(const v1::ScriptRunPolicy& run) {
  v1::ScriptRecord rec = Load(run.name());
  const std::string dir = RunDir(run.name());
  RunSpec spec;
  spec.dir = dir;
  spec.output_path = dir + "/output";
  spec.exit_path = dir + "/exit";
  spec.user = run.run_as();
  spec.timeout = absl::Seconds(
      std::clamp<int64_t>(run.timeout_seconds(), 1, deploy::kMaxScriptTimeoutSeconds));
  v1::ScriptResult result;
  result.set_run(run.name());
  RunResult ran;
  if (rec.state() == v1::SCRIPT_RUN_STATE_RUNNING && rec.pid() != 0) {
    // Started by an earlier agent: wait for it (or read how it ended).
    Job job;
    job.pid = static_cast<pid_t>(rec.pid());
    job.start_ticks = rec.start_ticks();
    job.deadline = absl::FromUnixMillis(rec.deadline_unix_ms());
    LogInfo("agent.script_resumed", {{"run", run.name()}, {"pid", rec.pid()}});
    ran = Adopt(spec, job, &stop_);
  } else {
    // Never started (a record without a pid: the runner starts a job only
    // once its pid is journaled).
    if (NowMs() >= run.expires_unix_ms()) {
      result.set_state(v1::SCRIPT_RUN_STATE_EXPIRED);
      result.set_detail(absl::StrCat(
          "the device learnt of the run at ", absl::FormatTime(absl::Now()), ", after its expiry ",
          absl::FormatTime(absl::FromUnixMillis(run.expires_unix_ms()))));
      Finish(run, rec, std::move(result));
      return;
    }
    const std::string sha = content::Sha256::Of(run.body());
    if (sha != run.sha256() || deploy::InterpreterPath(run.interpreter()).empty()) {
      result.set_state(v1::SCRIPT_RUN_STATE_FAILED);
      result.set_exit_code(-1);
      result.set_detail(
          sha != run.sha256()
              ? absl::StrCat("refused: the body's SHA-256 is ", sha, ", not the approved ",
                             run.sha256(), " (changed on the way); nothing ran")
              : absl::StrCat("refused: unknown interpreter \"", run.interpreter(), "\""));
      LogWarning("agent.script_refused", {{"run", run.name()}, {"detail", result.detail()}});
      Finish(run, rec, std::move(result));
      return;
    }
    std::error_code ec;
    fs::remove_all(dir, ec);
    fs::create_directories(dir, ec);
    chmod(dir.c_str(), 0700);
    absl::Status wrote = WriteFileDurably(dir + "/script", run.body(), 0644);
    if (ec || !wrote.ok()) {
      result.set_state(v1::SCRIPT_RUN_STATE_FAILED);
      result.set_exit_code(-1);
      result.set_detail(absl::StrCat(dir, ": ", ec ? ec.message() : std::string(wrote.message())));
      Finish(run, rec, std::move(result));
      return;
    }
    spec.command = absl::StrCat("exec ", deploy::InterpreterPath(run.interpreter()), " ./script");
    spec.env.push_back("STRATA_SCRIPT=" + run.script());
    spec.env.push_back("STRATA_SCRIPT_RUN=" + run.name());
    for (const auto& a : run.arguments()) spec.env.push_back(a.name() + "=" + a.value());
    rec.set_state(v1::SCRIPT_RUN_STATE_RUNNING);
    rec.set_pid(0);
    rec.set_started_unix_ms(NowMs());
    if (absl::Status s = Save(rec); !s.ok()) {
      LogWarning("agent.script_record_failed", {{"run", run.name()}, {"error", s}});
      return;  // tried again on the next pass
    }
    v1::ClientReport running;
    *running.mutable_script() = result;
    running.mutable_script()->set_state(v1::SCRIPT_RUN_STATE_RUNNING);
    running.mutable_script()->set_started_unix_ms(rec.started_unix_ms());
    if (options_.report) (void)options_.report(running);
    LogInfo("agent.script_started", {{"run", run.name()}, {"script", run.script()}});
    auto started = Run(
        spec,
        [&](const Job& job) {
          rec.set_pid(job.pid);
          rec.set_start_ticks(job.start_ticks);
          rec.set_deadline_unix_ms(absl::ToUnixMillis(job.deadline));
          (void)Save(rec);
        },
        &stop_);
    if (!started.ok()) {
      result.set_state(v1::SCRIPT_RUN_STATE_FAILED);
      result.set_exit_code(-1);
      result.set_detail(std::string(started.status().message()));
      Finish(run, rec, std::move(result));
      return;
    }
    ran = *started;
  }
  if (ran.abandoned) return;  // the agent is stopping: the next start adopts it
  result.set_started_unix_ms(rec.started_unix_ms());
  result.set_exit_code(ran.exit_code);
  result.set_output(inventory::CleanText(ran.output_tail));
  result.set_truncated(ran.output_truncated);
  if (ran.exited && ran.exit_code == 0) {
    result.set_state(v1::SCRIPT_RUN_STATE_SUCCEEDED);
  } else {
    result.set_state(v1::SCRIPT_RUN_STATE_FAILED);
    if (ran.timed_out)
      result.set_detail(absl::StrCat("timed out after ", run.timeout_seconds(),
                                     " s: killed with its process group"));
    else if (!ran.exited)
      result.set_detail("ended without an exit code (killed)");
  }
  Finish(run, rec, std::move(result));
}

void ScriptEngine::Finish(const v1::ScriptRunPolicy& run, v1::ScriptRecord& rec,
                          v1::ScriptResult result) {
  result.set_finished_unix_ms(NowMs());
  v1::ClientReport r;
  *r.mutable_script() = result;
  // Queued first: a crash before the record is saved reports it again (the
  // site keeps the newest), never loses it.
  absl::Status queued = options_.report ? options_.report(std::move(r)) : absl::OkStatus();
  if (!queued.ok()) {
    LogWarning("agent.script_report_failed", {{"run", run.name()}, {"error", queued}});
    return;  // the record stays as it was: tried again on the next pass
  }
  rec.set_state(result.state());
  rec.set_reported(true);
  if (absl::Status s = Save(rec); !s.ok())
    LogWarning("agent.script_record_failed", {{"run", run.name()}, {"error", s}});
  std::error_code ec;
  fs::remove_all(RunDir(run.name()), ec);
  LogInfo("agent.script_finished", {{"run", run.name()},
                                    {"script", run.script()},
                                    {"state", deploy::ScriptStateName(result.state())},
                                    {"exit_code", result.exit_code()},
                                    {"truncated", result.truncated()}});
}

void ScriptEngine::Prune() {
  std::set<std::string> current;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& r : runs_) current.insert(r.name() + ".pb");
  }
  std::error_code ec;
  const auto cutoff =
      fs::file_time_type::clock::now() - std::chrono::hours(absl::ToInt64Hours(kKeepRecords));
  for (const auto& e : fs::directory_iterator(options_.state_dir + "/scripts", ec)) {
    const std::string name = e.path().filename().string();
    if (e.path().extension() != ".pb" || current.count(name)) continue;
    std::error_code tec;
    if (fs::last_write_time(e.path(), tec) < cutoff && !tec) fs::remove(e.path(), tec);
  }
}

}  // namespace strata::agent
