#pragma once

// The agent's script runs (Configuration Manager's Run Scripts): each run
// its policy names is run once, before its expiry, with the install
// engine's runner (runner.h: its own folder, user, process group, time
// limit, bounded output). Before anything runs, the body's SHA-256 must be
// the approved one the run carries; parameters reach the script as
// environment variables of their names, never spliced into the body. A
// run the agent learns of after its expiry is reported expired, never run.
// The result (exit code, the last 64 KiB of output, truncation marked)
// goes up through the agent's durable queue.
//
// A record per run (ScriptRecord, state_dir/scripts/<run>.pb) is written
// durably before the script starts and after each step: a run is started
// at most once, and an agent restarted mid-run finds its job, waits for it
// and reports how it ended. Records are kept 8 days (longer than the
// longest expiry), so a run served again later is never run twice.

#include <atomic>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "strata/v1/client.pb.h"

namespace strata::agent {

struct ScriptEngineOptions {
  std::string state_dir;
  // Queues a report durably (the agent's outbound queue) and wakes its sender.
  std::function<absl::Status(v1::ClientReport)> report;
  int max_concurrent = 4;  // runs at once
};

class ScriptEngine {
 public:
  explicit ScriptEngine(ScriptEngineOptions options);
  ~ScriptEngine();

  // The runs of the policy now (a change wakes the engine).
  void SetRuns(std::vector<v1::ScriptRunPolicy> runs);
  // Runs on threads of its own until Stop(); a script under way is left
  // running (the next start waits for it and reports it).
  void Start();
  void Stop();
  // Every run due, on the caller's thread, one after another (--once).
  void RunPass();

 private:
  void Loop();
  // Starts what is due (at most max_concurrent at once), or runs it here.
  void Dispatch(bool inline_run);
  void Process(const v1::ScriptRunPolicy& run);
  void Finish(const v1::ScriptRunPolicy& run, v1::ScriptRecord& rec, v1::ScriptResult result);
  v1::ScriptRecord Load(const std::string& run) const;
  absl::Status Save(const v1::ScriptRecord& rec) const;
  std::string RecordPath(const std::string& run) const;
  std::string RunDir(const std::string& run) const;
  void Prune();

  const ScriptEngineOptions options_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  absl::Mutex mu_;
  std::vector<v1::ScriptRunPolicy> runs_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> busy_ ABSL_GUARDED_BY(mu_);  // runs being processed
  std::map<std::string, std::thread> workers_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> finished_ ABSL_GUARDED_BY(mu_);  // to join
  bool changed_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace strata::agent
