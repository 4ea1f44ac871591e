#include "common/site/runbook_schedules.h"

#include <google/protobuf/util/json_util.h>

#include "absl/strings/str_cat.h"
#include "common/base/log.h"
#include "common/base/status.h"
#include "common/collections/runbook_jobs.h"
#include "common/deploy/schedule.h"
#include "common/deploy/script.h"

namespace strata::site {
namespace {

using store::Result;
using store::Transaction;

std::string Ts(absl::Time t) {
  return t == absl::InfiniteFuture() ? std::string()
                                     : absl::FormatTime(absl::RFC3339_full, t, absl::UTCTimeZone());
}

// Starts the schedule's job: its id, or why not (the runbook unpublished or
// gone, the group gone, a parameter the published version refuses).
absl::StatusOr<std::string> Start(Transaction& tx, const std::string& site,
                                  const std::string& schedule, const std::string& runbook,
                                  const std::string& group, const std::string& args_json,
                                  const std::string& created_by) {
  ASSIGN_OR_RETURN(Result b, tx.Exec("SELECT r.published_version, v.parameters FROM runbooks r "
                                     "JOIN runbook_versions v ON v.runbook = r.name AND v.version "
                                     "= r.published_version WHERE r.name = $1",
                                     {runbook}));
  if (b.empty())
    return absl::FailedPreconditionError(
        absl::StrCat("runbook \"", runbook, "\" is gone or has no published version"));
  ASSIGN_OR_RETURN(Result g,
                   tx.Exec("SELECT site_code FROM runbook_worker_groups WHERE name = $1", {group}));
  if (g.empty())
    return absl::FailedPreconditionError(absl::StrCat("worker group \"", group, "\" is gone"));
  google::protobuf::RepeatedPtrField<v1::ScriptParameter> params;
  google::protobuf::RepeatedPtrField<v1::ScriptArgument> given;
  RETURN_IF_ERROR(deploy::ParseParameters(b.GetString(0, 1), &params));
  RETURN_IF_ERROR(deploy::ParseArguments(args_json, &given));
  ASSIGN_OR_RETURN(auto args, deploy::ResolveArguments(params, given));
  google::protobuf::RepeatedPtrField<v1::ScriptArgument> stored(args.begin(), args.end());
  collections::RunbookJobRequest job;
  job.runbook = runbook;
  job.version = static_cast<int>(b.GetInt(0, 0));
  job.arguments_json = deploy::ArgumentsJson(stored);
  job.group = group;
  job.site = g.GetString(0, 0);
  job.created_by = created_by;
  job.schedule = schedule;
  ASSIGN_OR_RETURN(std::string id, collections::InsertRunbookJob(tx, job));
  RETURN_IF_ERROR(
      tx.Exec("INSERT INTO audit_log (site_code, admin, action, object_type, "
              "object_name, outcome, summary) VALUES ($1, $2, 'start', 'runbook', "
              "$3, 'ok', $4)",
              {site, created_by, runbook,
               absl::StrCat("job ", id, " of version ", job.version, " by schedule \"", schedule,
                            "\" on worker group \"", group, "\" at site ", job.site)})
          .status());
  return id;
}

}  // namespace

absl::StatusOr<int> FireSchedules(store::Connection& conn, const std::string& site,
                                  absl::Time now) {
  int started = 0;
  RETURN_IF_ERROR(conn.Transact([&](Transaction& tx) -> absl::Status {
    started = 0;
    RETURN_IF_ERROR(tx.Exec("DELETE FROM runbook_schedule_runs r WHERE NOT EXISTS (SELECT 1 "
                            "FROM runbook_schedules s WHERE s.name = r.name AND NOT s.disabled "
                            "AND s._origin = $1)",
                            {site})
                        .status());
    ASSIGN_OR_RETURN(
        Result r,
        tx.Exec("SELECT s.name, s.runbook, s.worker_group, s.rule, s.parameters, s.created_by, "
                "s.updated_at::text, r.rule_updated_at::text, (extract(epoch FROM r.next_run_at) "
                "* 1000)::bigint, r.name IS NULL FROM runbook_schedules s LEFT JOIN "
                "runbook_schedule_runs r ON r.name = s.name WHERE s._origin = $1 AND NOT "
                "s.disabled ORDER BY s.name FOR UPDATE OF s",
                {site}));
    for (size_t i = 0; i < r.size(); ++i) {
      const std::string name = r.GetString(i, 0);
      v1::RunbookSchedule rule;
      google::protobuf::util::JsonParseOptions opts;
      opts.ignore_unknown_fields = true;
      std::string error;
      absl::StatusOr<absl::Time> next = absl::InternalError("unset");
      if (!google::protobuf::util::JsonStringToMessage(r.GetString(i, 3), &rule, opts).ok()) {
        next = absl::DataLossError("its rule cannot be read");
      } else if (r.GetBool(i, 9) || r.GetString(i, 6) != r.GetString(i, 7)) {
        next = deploy::NextRun(rule, now);  // new or changed: from now on
      } else if (r.IsNull(i, 8)) {
        continue;  // ran its one time
      } else {
        const absl::Time due = absl::FromUnixMillis(r.GetInt(i, 8));
        if (due > now) continue;
        std::string job;
        if (now - due <= kScheduleLate || rule.missed() == "run_once") {
          auto id = Start(tx, site, name, r.GetString(i, 1), r.GetString(i, 2), r.GetString(i, 4),
                          r.GetString(i, 5));
          if (id.ok()) {
            job = *id;
            ++started;
            LogInfo("runbooks.scheduled", {{"schedule", name}, {"job", job}, {"due", Ts(due)}});
          } else {
            error = std::string(id.status().message());
            LogWarning("runbooks.schedule_failed", {{"schedule", name}, {"error", id.status()}});
          }
        } else {
          error = absl::StrCat("the run due at ", Ts(due),
                               " was missed (the site was down) and "
                               "skipped, as the schedule says");
        }
        next = deploy::NextRun(rule, now);
        RETURN_IF_ERROR(tx.Exec("UPDATE runbook_schedule_runs SET last_run_at = $2, last_job = "
                                "nullif($3, '')::uuid, last_error = $4 WHERE name = $1",
                                {name, Ts(now), job, error})
                            .status());
      }
      if (!next.ok()) {
        LogWarning("runbooks.schedule_failed", {{"schedule", name}, {"error", next.status()}});
        next = absl::InfiniteFuture();
      }
      RETURN_IF_ERROR(tx.Exec("INSERT INTO runbook_schedule_runs (name, rule_updated_at, "
                              "next_run_at) VALUES ($1, $2::timestamptz, nullif($3, '')::"
                              "timestamptz) ON CONFLICT (name) DO UPDATE SET rule_updated_at = "
                              "EXCLUDED.rule_updated_at, next_run_at = EXCLUDED.next_run_at",
                              {name, r.GetString(i, 6), Ts(*next)})
                          .status());
    }
    return absl::OkStatus();
  }));
  return started;
}

SiteJob RunbookScheduleJob() {
  return {"runbook schedules", [](const SiteJobContext& ctx) {
            store::ConnectionPtr conn;
            while (ctx.Sleep(absl::Seconds(1))) {
              if (conn == nullptr) {
                auto opened = store::Connection::Open(ctx.config().database());
                if (!opened.ok()) continue;
                conn = std::move(*opened);
              }
              auto fired = FireSchedules(*conn, ctx.config().site_code(), absl::Now());
              if (!fired.ok()) {
                LogWarning("runbooks.schedules_failed", {{"error", fired.status()}});
                if (absl::IsUnavailable(fired.status())) conn.reset();
              }
            }
          }};
}

}  // namespace strata::site
