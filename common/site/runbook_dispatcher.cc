// The runbook dispatcher (runbook_dispatch.h): its pass (intake, stop,
// suspend and resume requests, lapsed leases), the nudges it queues, the
// pruning of old jobs and the thread that runs the pass. The workers'
// exchange is runbook_dispatch.cc.

#include <set>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/base/log.h"
#include "common/base/status.h"
#include "common/replication/link_session.h"
#include "common/site/runbook_dispatch.h"

namespace strata::site {
namespace {

using store::Result;
using store::Transaction;

constexpr int kIntakeBatch = 5000;
constexpr int64_t kDefaultRetentionSeconds = 30 * 86400;

}  // namespace

absl::StatusOr<DispatchStats> DispatchRunbooks(store::Connection& conn, const std::string& site) {
  DispatchStats stats;
  RETURN_IF_ERROR(conn.Transact([&](Transaction& tx) -> absl::Status {
    stats = DispatchStats();
    // Arrived jobs, and stop, suspend and resume requests.
    ASSIGN_OR_RETURN(
        Result taken,
        tx.Exec("DELETE FROM runbook_intake WHERE job_id IN (SELECT job_id FROM runbook_intake "
                "LIMIT $1 FOR UPDATE SKIP LOCKED) RETURNING job_id::text",
                {absl::StrCat(kIntakeBatch)}));
    if (!taken.empty()) {
      std::vector<std::string> ids;
      for (size_t i = 0; i < taken.size(); ++i) ids.push_back(taken.GetString(i, 0));
      const std::string arr = store::TextArrayLiteral(ids);
      ASSIGN_OR_RETURN(
          Result added,
          tx.Exec("INSERT INTO runbook_job_runs (job_id, site_code, worker_group, runbook, state, "
                  "queued_at, ended_at, detail) SELECT j.id, $2, j.worker_group, j.runbook, CASE "
                  "WHEN j.stop_requested_at IS NOT NULL THEN 'stopped' WHEN j.suspend_requested "
                  "THEN 'suspended' ELSE 'queued' END, now(), CASE WHEN j.stop_requested_at IS "
                  "NOT NULL THEN now() END, CASE WHEN j.stop_requested_at IS NOT NULL THEN "
                  "'stopped by ' || j.stop_requested_by || ' before it started' WHEN "
                  "j.suspend_requested THEN 'suspended by ' || j.suspend_changed_by || ' before "
                  "it started' ELSE '' END FROM runbook_jobs j WHERE j.id = ANY($1::uuid[]) AND "
                  "j.site_code = $2 ON CONFLICT (job_id) DO NOTHING RETURNING worker_group",
                  {arr, site}));
      stats.taken_in = static_cast<int64_t>(added.size());
      ASSIGN_OR_RETURN(
          Result stopped,
          tx.Exec("UPDATE runbook_job_runs r SET state = 'stopped', ended_at = now(), detail = "
                  "'stopped by ' || j.stop_requested_by || CASE WHEN r.state = 'queued' AND "
                  "r.attempt = 0 THEN ' before it started' WHEN r.state = 'queued' THEN ' while "
                  "queued' ELSE ' while suspended' END FROM runbook_jobs j WHERE j.id = r.job_id "
                  "AND r.job_id = ANY($1::uuid[]) AND r.state IN ('queued', 'suspended') AND "
                  "j.stop_requested_at IS NOT NULL",
                  {arr}));
      stats.stopped = static_cast<int64_t>(stopped.affected_rows());
      // Suspended where it waits; a job under way is suspended once its
      // worker killed it (the exchange tells it to).
      ASSIGN_OR_RETURN(
          Result suspended,
          tx.Exec("UPDATE runbook_job_runs r SET state = 'suspended', detail = 'suspended by ' "
                  "|| j.suspend_changed_by || ' while queued' FROM runbook_jobs j WHERE j.id = "
                  "r.job_id AND r.job_id = ANY($1::uuid[]) AND r.state = 'queued' AND "
                  "j.suspend_requested AND j.stop_requested_at IS NULL",
                  {arr}));
      stats.suspended = static_cast<int64_t>(suspended.affected_rows());
      // Resumed: queued again; max_attempts counts from here, and the next
      // attempt's order carries the checkpoint.
      ASSIGN_OR_RETURN(
          Result resumed,
          tx.Exec("UPDATE runbook_job_runs r SET state = 'queued', queued_at = now(), device_id = "
                  "NULL, worker_name = '', lease_expires_at = NULL, started_at = NULL, ended_at = "
                  "NULL, exit_code = NULL, resumed_after = r.attempt, detail = 'resumed by ' || "
                  "j.suspend_changed_by || CASE WHEN r.checkpoint_bytes > 0 THEN ' from its "
                  "checkpoint (' || r.checkpoint_bytes || ' bytes)' ELSE '' END FROM runbook_jobs "
                  "j WHERE j.id = r.job_id AND r.job_id = ANY($1::uuid[]) AND r.state = "
                  "'suspended' AND NOT j.suspend_requested AND j.stop_requested_at IS NULL",
                  {arr}));
      stats.resumed = static_cast<int64_t>(resumed.affected_rows());
      // Workers of groups with new work, and those holding a job to stop.
      ASSIGN_OR_RETURN(
          Result woken,
          tx.Exec("INSERT INTO runbook_wake (device_id) SELECT a.device_id FROM "
                  "runbook_worker_assignments a WHERE a.worker_group IN (SELECT worker_group FROM "
                  "runbook_job_runs WHERE job_id = ANY($1::uuid[]) AND state = 'queued') UNION "
                  "SELECT device_id FROM runbook_job_runs WHERE job_id = ANY($1::uuid[]) AND "
                  "state IN ('dispatched', 'running') ON CONFLICT DO NOTHING",
                  {arr}));
      stats.workers_woken += static_cast<int64_t>(woken.affected_rows());
    }

    // Lapsed leases.
    ASSIGN_OR_RETURN(
        Result lapsed,
        tx.Exec("SELECT r.job_id::text, r.attempt, r.worker_name, j.on_worker_lost, "
                "j.max_attempts, r.lease_expires_at::text, j.stop_requested_at IS NOT NULL, "
                "r.worker_group, j.suspend_requested, r.resumed_after FROM runbook_job_runs r JOIN "
                "runbook_jobs j ON j.id = r.job_id WHERE r.site_code = $1 AND r.state IN "
                "('dispatched', 'running') AND "
                "r.lease_expires_at < now() - $2 * interval '1 second' FOR UPDATE OF r SKIP "
                "LOCKED",
                {site, absl::StrCat(absl::ToInt64Seconds(kLeaseGrace))}));
    std::set<std::string> requeued_groups;
    for (size_t i = 0; i < lapsed.size(); ++i) {
      const std::string job = lapsed.GetString(i, 0);
      const int64_t attempt = lapsed.GetInt(i, 1);
      const std::string lost = absl::StrCat(
          "attempt ", attempt, " on ", lapsed.GetString(i, 2),
          ": the worker stopped renewing its lease (it died, or was cut off from site ", site,
          "); the lease ended at ", lapsed.GetString(i, 5));
      RETURN_IF_ERROR(tx.Exec("UPDATE runbook_job_attempts SET outcome = 'lost', ended_at = "
                              "now(), detail = $3 WHERE job_id = $1::uuid AND attempt = $2",
                              {job, absl::StrCat(attempt), lost})
                          .status());
      const bool stop = lapsed.GetBool(i, 6);
      const bool suspend = !stop && lapsed.GetBool(i, 8);
      // Attempts since it was last resumed.
      const int64_t tried = attempt - lapsed.GetInt(i, 9);
      const bool retry =
          !stop && !suspend && lapsed.GetString(i, 3) == "retry" && tried < lapsed.GetInt(i, 4);
      if (suspend) {
        RETURN_IF_ERROR(tx.Exec("UPDATE runbook_job_runs SET state = 'suspended', "
                                "lease_expires_at = NULL, ended_at = now(), detail = $2 WHERE "
                                "job_id = $1::uuid",
                                {job, absl::StrCat(lost, "; suspended, as it was asked")})
                            .status());
        ++stats.suspended;
      } else if (retry) {
        RETURN_IF_ERROR(tx.Exec("UPDATE runbook_job_runs SET state = 'queued', device_id = "
                                "NULL, worker_name = '', lease_expires_at = NULL, started_at = "
                                "NULL, detail = $2 WHERE job_id = $1::uuid",
                                {job, absl::StrCat(lost, "; failed over")})
                            .status());
        requeued_groups.insert(lapsed.GetString(i, 7));
        ++stats.failed_over;
      } else {
        const std::string why =
            stop ? absl::StrCat(lost, "; it was asked to stop")
            : lapsed.GetString(i, 3) == "retry"
                ? absl::StrCat(lost, "; no attempt left (max_attempts ", lapsed.GetInt(i, 4), ")")
                : absl::StrCat(lost, "; the runbook says on_worker_lost = fail");
        RETURN_IF_ERROR(tx.Exec("UPDATE runbook_job_runs SET state = $3, lease_expires_at = "
                                "NULL, ended_at = now(), detail = $2 WHERE job_id = $1::uuid",
                                {job, why, stop ? "stopped" : "failed"})
                            .status());
        ++stats.failed;
      }
    }
    if (!requeued_groups.empty()) {
      std::vector<std::string> g(requeued_groups.begin(), requeued_groups.end());
      ASSIGN_OR_RETURN(Result woken,
                       tx.Exec("INSERT INTO runbook_wake (device_id) SELECT device_id FROM "
                               "runbook_worker_assignments WHERE worker_group = ANY($1::text[]) "
                               "ON CONFLICT DO NOTHING",
                               {store::TextArrayLiteral(g)}));
      stats.workers_woken += static_cast<int64_t>(woken.affected_rows());
    }
    return absl::OkStatus();
  }));
  return stats;
}

absl::StatusOr<std::vector<v1::MpDown>> RunbookWakeMessages(store::Transaction&,
                                                            const std::vector<std::string>& ids) {
  std::vector<v1::MpDown> messages(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    messages[i].mutable_request()->set_client_id(ids[i]);
    messages[i].mutable_request()->set_kind(v1::NOTIFICATION_KIND_WORK_WAITING);
  }
  return messages;
}

absl::StatusOr<int64_t> PruneRunbookJobs(store::Transaction& tx) {
  ASSIGN_OR_RETURN(Result setting, tx.Exec("SELECT value FROM global_settings WHERE name = "
                                           "'runbook.job_retention_seconds'"));
  int64_t keep = kDefaultRetentionSeconds;
  if (!setting.empty()) {
    int64_t v = 0;
    if (absl::SimpleAtoi(setting.GetString(0, 0), &v) && v >= 60) keep = v;
  }
  // Jobs this site made (one writer), old enough, unless still under way
  // at this site's view; then what any site holds of jobs gone (site data:
  // the deletions go up).
  ASSIGN_OR_RETURN(
      Result jobs,
      tx.Exec("DELETE FROM runbook_jobs j WHERE j._origin = repl_site_code() AND j.created_at < "
              "now() - $1::interval AND NOT EXISTS (SELECT 1 FROM runbook_job_runs r WHERE "
              "r.job_id = j.id AND r.state IN ('queued', 'dispatched', 'running', 'suspended'))",
              {absl::StrCat(keep, " seconds")}));
  int64_t n = static_cast<int64_t>(jobs.affected_rows());
  for (const char* table : {"runbook_job_runs", "runbook_job_attempts", "runbook_job_output",
                            "runbook_job_checkpoints"}) {
    ASSIGN_OR_RETURN(Result r, tx.Exec(absl::StrCat("DELETE FROM ", table,
                                                    " x WHERE NOT EXISTS (SELECT 1 FROM "
                                                    "runbook_jobs j WHERE j.id = x.job_id)")));
    n += static_cast<int64_t>(r.affected_rows());
  }
  return n;
}

RunbookDispatcher::RunbookDispatcher(std::string conninfo, std::string site,
                                     replication::ChangeNotifier* notifier)
    : conninfo_(std::move(conninfo)), site_(std::move(site)), notifier_(notifier) {}

RunbookDispatcher::~RunbookDispatcher() { Stop(); }

void RunbookDispatcher::Start() {
  if (notifier_ != nullptr) {
    subscription_ = notifier_->Subscribe([this] {
      absl::MutexLock lock(&mu_);
      dirty_ = true;
    });
  }
  thread_ = std::thread([this] { Loop(); });
}

void RunbookDispatcher::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (notifier_ != nullptr && subscription_ >= 0) {
    notifier_->Unsubscribe(subscription_);
    subscription_ = -1;
  }
  if (thread_.joinable()) thread_.join();
}

void RunbookDispatcher::Loop() {
  store::ConnectionPtr conn;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      auto woken = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_ || dirty_; };
      mu_.AwaitWithTimeout(absl::Condition(&woken), absl::Seconds(1));
      if (stop_) return;
      dirty_ = false;
    }
    if (conn == nullptr) {
      auto opened = store::Connection::Open(conninfo_);
      if (!opened.ok()) {
        LogWarning("runbooks.dispatch_failed", {{"error", opened.status()}});
        continue;
      }
      conn = std::move(*opened);
    }
    auto stats = DispatchRunbooks(*conn, site_);
    if (!stats.ok()) {
      LogWarning("runbooks.dispatch_failed", {{"error", stats.status()}});
      if (absl::IsUnavailable(stats.status())) conn.reset();
      continue;
    }
    if (stats->taken_in + stats->stopped + stats->suspended + stats->resumed + stats->failed_over +
            stats->failed >
        0)
      LogInfo("runbooks.dispatched", {{"taken_in", stats->taken_in},
                                      {"stopped", stats->stopped},
                                      {"suspended", stats->suspended},
                                      {"resumed", stats->resumed},
                                      {"failed_over", stats->failed_over},
                                      {"failed", stats->failed},
                                      {"workers_woken", stats->workers_woken}});
  }
}

}  // namespace strata::site
