#pragma once

// Runbook jobs at the site that dispatches them (the site of their worker
// group, a primary or a secondary): the workers' exchange and the
// dispatcher.
//
// A job reaches its site as global data (runbook_jobs); a trigger queues it
// in runbook_intake and the dispatcher takes it in as a run
// (runbook_job_runs, site data: queued, dispatched, running, suspended,
// completed, failed, stopped) and nudges the group's workers (WORK_WAITING, through
// the management points). A worker's exchange (RunbookWork) reports what it
// holds, renews its leases, and takes queued jobs of its groups — fairly
// across runbooks, within the per-worker and per-group limits; a job goes
// to one worker (rows claimed FOR UPDATE SKIP LOCKED, so workers claiming
// at once pass over each other's picks; a group with a limit of its own is
// claimed under a lock per group, so that its count holds). An attempt is named by its
// number: the worker starts a (job, attempt) once, the site takes a state
// only from the worker holding the attempt, and a job dispatched whose
// answer was lost is sent again on the worker's next exchange (a retry
// never runs a job twice). A lease not renewed within the group's lease
// time (plus kLeaseGrace, by which the worker has killed what it could not
// renew) fails the job over to another worker or fails it, as the runbook
// says (on_worker_lost).
//
// Suspend and resume (a resumable runbook's jobs) are a desired state on
// the job (runbook_jobs.suspend_requested) that the dispatcher and the
// exchange make the run follow: a queued job is suspended where it waits;
// one under way is told to stop and its end is recorded `suspended` (a
// lapsed lease too); a suspended job resumed is queued again. The worker
// sends a resumable job's checkpoint whenever it changes; the latest is
// kept here (runbook_job_checkpoints) and goes with the job's next order.

#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/store/database.h"
#include "strata/v1/client.pb.h"
#include "strata/v1/runbook.pb.h"

namespace strata {
class AssetKey;
}

namespace strata::site {

// Past a lease's end before the site acts on it.
inline constexpr absl::Duration kLeaseGrace = absl::Seconds(10);

// One exchange of worker `device` (a client of `site`), in one transaction.
// `key` (may be null) opens the encrypted assets a job's order carries; a
// job whose assets cannot be handed out fails, saying why.
absl::Status RunbookWork(store::Connection& conn, const std::string& site,
                         const std::string& device, const v1::RunbookWorkRequest& req,
                         v1::RunbookWorkResponse* resp, const AssetKey* key = nullptr);

struct DispatchStats {
  int64_t taken_in = 0;     // jobs that arrived
  int64_t stopped = 0;      // queued or suspended jobs stopped
  int64_t suspended = 0;    // queued jobs suspended, and suspended ones whose lease lapsed
  int64_t resumed = 0;      // suspended jobs queued again
  int64_t failed_over = 0;  // lapsed leases, queued again
  int64_t failed = 0;       // lapsed leases, failed
  int64_t workers_woken = 0;
};

// The dispatcher's pass: takes in arrived jobs and stop, suspend and
// resume requests, acts on lapsed leases, queues the workers to nudge in runbook_wake.
absl::StatusOr<DispatchStats> DispatchRunbooks(store::Connection& conn, const std::string& site);

// The nudges (WORK_WAITING) for the workers in `ids`, drained from
// runbook_wake by the client service to its MPs.
absl::StatusOr<std::vector<v1::MpDown>> RunbookWakeMessages(store::Transaction& tx,
                                                            const std::vector<std::string>& ids);

// Runbook jobs this site made past the hierarchy's retention (hierarchy
// setting runbook.job_retention_seconds, default 30 days, as Azure
// Automation), and
// the runs, attempts and output of jobs gone; how many rows.
absl::StatusOr<int64_t> PruneRunbookJobs(store::Transaction& tx);

}  // namespace strata::site

namespace strata::replication {
class ChangeNotifier;
}

namespace strata::site {

// The dispatcher's thread: a pass (DispatchRunbooks) whenever the site's
// data changes (a job arrived by replication or from the provider) and
// every second (leases). The workers it queues
// in runbook_wake are nudged by the client service (its commit wakes it).
class RunbookDispatcher {
 public:
  RunbookDispatcher(std::string conninfo, std::string site, replication::ChangeNotifier* notifier);
  ~RunbookDispatcher();
  void Start();
  void Stop();

 private:
  void Loop();

  const std::string conninfo_, site_;
  replication::ChangeNotifier* const notifier_;
  int subscription_ = -1;
  absl::Mutex mu_;
  bool dirty_ ABSL_GUARDED_BY(mu_) = true;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace strata::site
