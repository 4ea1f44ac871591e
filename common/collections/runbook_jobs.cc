#include "common/collections/runbook_jobs.h"

#include "absl/strings/str_cat.h"
#include "common/base/status.h"

namespace strata::collections {

absl::StatusOr<std::string> InsertRunbookJob(store::Transaction& tx, const RunbookJobRequest& r) {
  ASSIGN_OR_RETURN(
      store::Result made,
      tx.Exec("INSERT INTO runbook_jobs (id, runbook, version, interpreter, body, sha256, "
              "arguments, timeout_seconds, run_as, on_worker_lost, max_attempts, assets, "
              "worker_group, site_code, scopes, created_by, schedule, resumable) SELECT "
              "gen_random_uuid(), v.runbook, v.version, v.interpreter, v.body, v.sha256, $3, "
              "v.timeout_seconds, v.run_as, v.on_worker_lost, v.max_attempts, v.assets, $4, $5, "
              "b.scopes, $6, $7, v.resumable FROM runbook_versions "
              "v JOIN runbooks b ON b.name = v.runbook WHERE v.runbook = $1 AND v.version = $2 "
              "RETURNING id::text",
              {r.runbook, absl::StrCat(r.version), r.arguments_json, r.group, r.site, r.created_by,
               r.schedule}));
  if (made.empty())
    return absl::NotFoundError(
        absl::StrCat("runbook \"", r.runbook, "\" has no version ", r.version));
  return made.GetString(0, 0);
}

}  // namespace strata::collections
