#pragma once

// The agent as a runbook worker (its policy names the worker groups it is
// in): it asks its management point for jobs (RunbookWork, forwarded to the
// site that dispatches the group's jobs), runs each with the install
// engine's runner (runner.h: own folder, user, process group, time limit),
// sends its streams as they grow (stdout = output, stderr = error, what it
// appends to $STRATA_VERBOSE_FILE = verbose; 1 MiB each is kept), and how
// it ended.
//
// Each exchange renews the leases of the jobs it holds. A job's lease file
// (runner.h, RunSpec::lease_path) holds the time its lease ends as this
// worker can be sure of it (from when it sent the exchange that renewed it,
// less a sixth); the job's watchdog ends the job then, so a worker cut off
// from its site (or dead) stops its jobs before the site gives them to
// another worker (lease + 10 s). A job the site says to stop gets lease 0.
//
// The assets a job's runbook names come with its order: a variable as
// $STRATA_ASSET_<name>, a credential or certificate as files (user and
// secret, cert.pem and key.pem) in a folder of its own that
// $STRATA_ASSET_<name> names, owned by the job's user and removed when the
// job ends. Secrets are masked in the streams sent (each byte replaced by
// '*', the length kept), across the edges of the pieces sent too; a
// stream's tail that could begin a secret waits until the job writes on
// (or ends).
//
// A record per job attempt (RunbookJobRecord, state_dir/runbooks/<job>.pb)
// is written durably before the job starts: an attempt starts at most once;
// a restarted agent adopts a job still running (and sends its streams
// again from the start: the site keeps each byte once) and reports one that
// ended. A record goes once the site accepted its final state; it holds the
// order with its assets (0600, in the agent's state folder) until then, so
// that an adopted job's output is still masked.
//
// A resumable runbook's job (suspend job / resume job) may keep its state
// in the file $STRATA_CHECKPOINT_FILE names (in a folder of the job's user:
// write a new file beside it and rename it over, so that a kill never
// leaves half of one). The worker sends the file with its next exchange
// whenever it changed (at most 64 KiB: a larger one is not sent and the
// job's detail says so; only a plain file of the job's user's own is read);
// an attempt that resumes the job, or takes it over from a lost worker,
// finds the latest one there when it starts (no file: none was written).

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "strata/v1/runbook.pb.h"

namespace strata::agent {

struct RunbookWorkerOptions {
  std::string state_dir;
  // One exchange with a management point.
  std::function<absl::StatusOr<v1::RunbookWorkResponse>(const v1::RunbookWorkRequest&)> exchange;
  int max_jobs = 30;  // at once (the site's group limit may be lower)
  // A worker holding no job asks for work this often (and whenever nudged).
  absl::Duration idle_poll = absl::Seconds(60);
  // Holding jobs: exchanges this often (streams, renewals), and at once
  // when one ends.
  absl::Duration busy_poll = absl::Seconds(1);
};

class RunbookWorker {
 public:
  explicit RunbookWorker(RunbookWorkerOptions options);
  ~RunbookWorker();

  // The groups the policy names (empty: not a worker; jobs held still end
  // and are reported).
  void SetGroups(std::vector<std::string> groups);
  // Work waits (a WORK_WAITING nudge): exchange now.
  void Wake();
  void Start();
  // Jobs under way run on (their leases end them if no agent renews them;
  // the next start adopts them).
  void Stop();

 private:
  struct Held;
  void Loop();
  void LoadRecords();
  bool Exchange();
  void Launch(const v1::RunbookJobOrder& order, absl::Time lease_until);
  void RunJob(std::shared_ptr<Held> h, bool adopt);
  std::string JobDir(const std::string& job) const;
  std::string RecordPath(const std::string& job) const;
  absl::Status Save(const v1::RunbookJobRecord& rec) const;
  void SetLease(const std::string& job, absl::Time until) const;
  // A resumable job's checkpoint file into `data` when it changed since it
  // was last sent and fits in `budget` (what it takes is taken off); false
  // when it did not change, is too large to send, or (`*later`) waits for
  // an exchange with room.
  bool ReadCheckpoint(Held& h, size_t* budget, std::string* data, bool* later) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Forget(const std::string& job);

  const RunbookWorkerOptions options_;
  std::atomic<bool> abandon_{false};  // Stop(): job threads leave their jobs running
  std::thread thread_;

  absl::Mutex mu_;
  std::vector<std::string> groups_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::shared_ptr<Held>> held_ ABSL_GUARDED_BY(mu_);
  bool wake_ ABSL_GUARDED_BY(mu_) = true;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace strata::agent
