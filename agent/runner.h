#pragma once

// Running a job (the install engine's programs, the script engine's
// scripts, the live queries' commands; runbooks are to reuse it too):
// /bin/sh -c COMMAND in a working folder, as
// root or a named user, in a session of its own (its process group is the
// whole job), stdout and stderr into a file that stays bounded, killed with
// every process of its group when its time is up.
//
// The job outlives the agent: its exit code goes to a file beside its
// output (written by the small shell wrapper that runs it), so an agent
// restarted mid-install finds the job it started (by pid and the kernel's
// start time of that pid), waits for it and reads how it ended (Adopt).

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace strata::agent {

inline constexpr int64_t kMaxOutputBytes = 64 * 1024;  // kept of a job's output

struct RunSpec {
  std::string command;      // for /bin/sh -c
  std::string dir;          // working folder (exists)
  std::string user;         // "" or "root": root
  std::string output_path;  // stdout and stderr, appended
  std::string stdout_path;  // "" : with the output; else stdout alone here
  std::string exit_path;    // where the wrapper writes the exit code
  // A Linux program exits with 0-255; one that speaks the return codes of
  // Windows installers (3010, 1641, 1618) writes its code to this file
  // (given to it as $STRATA_RETURN_CODE_FILE), which then counts instead.
  std::string return_code_path;
  absl::Duration timeout = absl::Minutes(120);
  std::vector<std::string> env;  // "NAME=value", added to a minimal environment
  // A lease (runbook jobs): a file holding a Unix time in seconds. A
  // watchdog in the job's own process group kills the group (TERM, then
  // KILL 5 s later) once that time has passed, checking every second: a job
  // stops when its lease does, whether or not the agent still runs. The
  // agent moves the time on as the site renews the lease, or to 0 to stop
  // the job now.
  std::string lease_path;
};

// A job started (what the engine journals before it waits).
struct Job {
  pid_t pid = 0;
  uint64_t start_ticks = 0;  // /proc/PID/stat field 22: tells a reused pid apart
  absl::Time deadline;
};

struct RunResult {
  bool exited = false;  // it ended and wrote its exit code
  int exit_code = -1;
  bool timed_out = false;         // killed, with its group, at its deadline
  bool abandoned = false;         // the agent is stopping: the job runs on (Adopt later)
  std::string output_tail;        // at most kMaxOutputBytes, the end of its output
  bool output_truncated = false;  // it wrote more: output_tail is its end only
};

// Starts `spec`; `started` is called with the job (to journal it) before
// the command runs: a process that dies before then leaves no job behind.
// Waits until it ends, its time is up, or `stop` is set.
absl::StatusOr<RunResult> Run(const RunSpec& spec, const std::function<void(const Job&)>& started,
                              const std::atomic<bool>* stop = nullptr);

// Waits for a job started by an earlier agent (it may still run, or have
// ended): as Run from the wait on. A job whose pid is gone reads its exit
// file (exited false when there is none: it was killed, or never started).
RunResult Adopt(const RunSpec& spec, const Job& job, const std::atomic<bool>* stop = nullptr);

// The kernel's start time of `pid` (0 if it does not exist).
uint64_t ProcessStartTicks(pid_t pid);

// The last `max` bytes of a file ("" if none).
std::string FileTail(const std::string& path, int64_t max);

}  // namespace strata::agent
