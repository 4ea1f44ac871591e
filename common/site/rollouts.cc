#include "common/site/rollouts.h"

#include "absl/strings/str_cat.h"
#include "common/base/log.h"
#include "common/base/status.h"
#include "common/site/runbook_dispatch.h"
#include "common/store/pool.h"

namespace strata::site {
namespace {

std::string PhaseName(const std::string& rollout, int64_t phase) {
  return absl::StrCat(rollout, " (phase ", phase, ")");
}

int64_t Percent(int64_t part, int64_t whole) { return whole == 0 ? 0 : part * 100 / whole; }

void Run(const SiteJobContext& ctx) {
  store::ConnectionPool pool(ctx.config().database(), 1);
  for (int pass = 1; ctx.Sleep(absl::Seconds(2)); ++pass) {
    absl::Status s = pool.With([&](store::Connection& conn) {
      return conn.Transact([&](store::Transaction& tx) -> absl::Status {
        RETURN_IF_ERROR(AdvanceRollouts(tx).status());
        // Every minute: states of deployments deleted (their counts go with
        // them; a deployment made again under the name starts from none).
        if (pass % 30 == 0) RETURN_IF_ERROR(ForgetDeletedDeployments(tx).status());
        if (pass % 30 == 0) RETURN_IF_ERROR(ForgetOldWork(tx).status());
        return absl::OkStatus();
      });
    });
    if (!s.ok()) LogWarning("rollouts.failed", {{"error", s}});
  }
}

}  // namespace

absl::StatusOr<int> AdvanceRollouts(store::Transaction& tx) {
  // Only rollouts this site made (and so advances): one writer per rollout.
  ASSIGN_OR_RETURN(store::Result r,
                   tx.Exec("SELECT name, phase, cardinality(collections), collections[phase], "
                           "success_percent, failure_percent FROM deployment_rollouts WHERE "
                           "state = 'running' AND _origin = repl_site_code() ORDER BY name "
                           "FOR UPDATE"));
  int changed = 0;
  for (size_t i = 0; i < r.size(); ++i) {
    const std::string name = r.GetString(i, 0);
    const int64_t phase = r.GetInt(i, 1), phases = r.GetInt(i, 2);
    const std::string collection = r.GetString(i, 3);
    const int64_t success = r.GetInt(i, 4), failure = r.GetInt(i, 5);
    const std::string deployment = PhaseName(name, phase);
    ASSIGN_OR_RETURN(
        store::Result n,
        tx.Exec("SELECT (SELECT count(*) FROM collection_members WHERE collection = $1), "
                "(SELECT coalesce(sum(devices), 0) FROM deployment_state_counts WHERE deployment "
                "= $2 AND state IN ('installed', 'reboot_pending')), (SELECT coalesce(sum("
                "devices), 0) FROM deployment_state_counts WHERE deployment = $2 AND state = "
                "'failed')",
                {collection, deployment}));
    const int64_t targeted = n.GetInt(0, 0), succeeded = n.GetInt(0, 1), failed = n.GetInt(0, 2);
    if (targeted == 0) continue;  // an empty phase holds the rollout (get rollouts says 0)
    if (failed * 100 > failure * targeted) {
      const std::string reason =
          absl::StrCat("halted in phase ", phase, " (", collection, "): ", failed, " of ", targeted,
                       " devices failed (", Percent(failed, targeted), " %), above the limit of ",
                       failure, " %; later phases were not started");
      RETURN_IF_ERROR(tx.Exec("UPDATE deployment_rollouts SET state = 'halted', reason = $2, "
                              "updated_at = now() WHERE name = $1",
                              {name, reason})
                          .status());
      LogWarning("rollouts.halted", {{"rollout", name}, {"reason", reason}});
      ++changed;
      continue;
    }
    if (succeeded * 100 < success * targeted) continue;
    const std::string done =
        absl::StrCat("phase ", phase, " (", collection, "): ", succeeded, " of ", targeted,
                     " devices installed (", Percent(succeeded, targeted), " %)");
    if (phase == phases) {
      RETURN_IF_ERROR(tx.Exec("UPDATE deployment_rollouts SET state = 'completed', reason = $2, "
                              "updated_at = now() WHERE name = $1",
                              {name, absl::StrCat("completed: ", done)})
                          .status());
    } else {
      // The next phase: a deployment like the first, to the next collection.
      RETURN_IF_ERROR(
          tx.Exec("INSERT INTO app_deployments (name, application, collection, action, purpose, "
                  "available_at, deadline, max_retries, retry_seconds, rerun_interrupted, "
                  "ignore_maintenance_windows, created_by, rollout) SELECT $2, r.application, "
                  "r.collections[r.phase + 1], 'install', 'required', now(), now(), "
                  "r.max_retries, r.retry_seconds, false, r.ignore_maintenance_windows, "
                  "r.created_by, r.name FROM deployment_rollouts r WHERE r.name = $1 ON "
                  "CONFLICT (name) DO NOTHING",
                  {name, PhaseName(name, phase + 1)})
              .status());
      RETURN_IF_ERROR(tx.Exec("UPDATE deployment_rollouts SET phase = phase + 1, reason = $2, "
                              "updated_at = now() WHERE name = $1",
                              {name, absl::StrCat(done, "; phase ", phase + 1, " started")})
                          .status());
    }
    LogInfo("rollouts.advanced", {{"rollout", name}, {"phase", phase}, {"of", phases}});
    ++changed;
  }
  return changed;
}

absl::StatusOr<int64_t> ForgetDeletedDeployments(store::Transaction& tx) {
  ASSIGN_OR_RETURN(store::Result r,
                   tx.Exec("DELETE FROM deployment_states s WHERE NOT EXISTS (SELECT 1 FROM "
                           "app_deployments d WHERE d.name = s.deployment)"));
  if (r.affected_rows() > 0) LogInfo("deployments.states_forgotten", {{"rows", r.affected_rows()}});
  return r.affected_rows();
}

absl::StatusOr<int64_t> ForgetOldWork(store::Transaction& tx) {
  // The site that made a query or run deletes it (one writer); every site
  // drops the answers of those gone (site data: the deletions go up).
  int64_t n = 0;
  for (const char* sql :
       {"DELETE FROM live_queries WHERE _origin = repl_site_code() AND expires_at < now() - "
        "interval '1 day'",
        "DELETE FROM script_runs WHERE _origin = repl_site_code() AND expires_at < now() - "
        "interval '30 days'",
        "DELETE FROM live_query_results r WHERE NOT EXISTS (SELECT 1 FROM live_queries q WHERE "
        "q.id = r.query)",
        "DELETE FROM script_results r WHERE NOT EXISTS (SELECT 1 FROM script_runs x WHERE x.id = "
        "r.run)"}) {
    ASSIGN_OR_RETURN(store::Result r, tx.Exec(sql));
    n += r.affected_rows();
  }
  ASSIGN_OR_RETURN(int64_t jobs, PruneRunbookJobs(tx));
  n += jobs;
  if (n > 0) LogInfo("work.forgotten", {{"rows", n}});
  return n;
}

SiteJob RolloutJob() { return {"rollouts", Run}; }

}  // namespace strata::site
