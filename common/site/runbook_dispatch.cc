#include "common/site/runbook_dispatch.h"

#include <algorithm>
#include <map>
#include <set>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/base/status.h"
#include "common/deploy/runbook.h"
#include "common/deploy/script.h"
#include "common/net/asset_key.h"

namespace strata::site {
namespace {

using store::Result;
using store::Transaction;

constexpr int64_t kDefaultLeaseSeconds = 60;

// A run this site holds for a job named in a worker's request.
struct Held {
  int attempt = 0;
  std::string state, device;
  bool stop_requested = false;
  bool suspend_requested = false;
  bool resumable = false;
  std::string suspended_by;
  int64_t lease_seconds = kDefaultLeaseSeconds;
};

// The assets in `names`, in plain form: NotFound / DataLoss / Failed
// Precondition saying which one cannot be handed out, and why.
absl::Status LoadAssets(Transaction& tx, const std::vector<std::string>& names, const AssetKey* key,
                        v1::RunbookJobOrder* o) {
  ASSIGN_OR_RETURN(Result r, tx.ExecCached("SELECT name, kind, encrypted, value, user_name, "
                                           "certificate, sealed FROM runbook_assets WHERE name = "
                                           "ANY($1::text[]) ORDER BY name",
                                           {store::TextArrayLiteral(names)}));
  if (r.size() != names.size())
    return absl::NotFoundError("an asset the runbook names does not exist (any more)");
  for (size_t i = 0; i < r.size(); ++i) {
    v1::RunbookAsset* a = o->add_assets();
    a->set_name(r.GetString(i, 0));
    a->set_kind(r.GetString(i, 1));
    a->set_encrypted(r.GetBool(i, 2));
    a->set_value(r.GetString(i, 3));
    a->set_user(r.GetString(i, 4));
    a->set_certificate(r.GetString(i, 5));
    if (!a->encrypted()) continue;
    if (key == nullptr)
      return absl::FailedPreconditionError(
          absl::StrCat("asset \"", a->name(),
                       "\" is encrypted and this site has no asset key (asset_key_file)"));
    auto plain = key->Open(r.GetString(i, 6), a->name());
    if (!plain.ok())
      return absl::DataLossError(
          absl::StrCat("asset \"", a->name(), "\": ", plain.status().message()));
    if (a->kind() == "variable") a->set_value(*plain);
    if (a->kind() == "credential") a->set_secret(*plain);
    if (a->kind() == "certificate") a->set_private_key(*plain);
  }
  return absl::OkStatus();
}

// Orders for the jobs in `ids` (their current attempt), with their assets.
// A job whose assets this site cannot hand out fails, saying why.
absl::Status AddOrders(Transaction& tx, const std::string& site, const AssetKey* key,
                       const std::vector<std::string>& ids, v1::RunbookWorkResponse* resp) {
  if (ids.empty()) return absl::OkStatus();
  ASSIGN_OR_RETURN(
      Result r, tx.Exec("SELECT j.id::text, r.attempt, j.runbook, j.version, j.interpreter, "
                        "j.body, j.sha256, j.arguments, j.timeout_seconds, j.run_as, "
                        "j.worker_group, j.assets::text, j.resumable, encode(c.data, 'hex') FROM "
                        "runbook_jobs j JOIN runbook_job_runs r ON r.job_id = j.id LEFT JOIN "
                        "runbook_job_checkpoints c ON c.job_id = j.id WHERE j.id = "
                        "ANY($1::uuid[]) ORDER BY r.queued_at, j.id",
                        {store::TextArrayLiteral(ids)}));
  for (size_t i = 0; i < r.size(); ++i) {
    v1::RunbookJobOrder o;
    o.set_job(r.GetString(i, 0));
    o.set_attempt(static_cast<int32_t>(r.GetInt(i, 1)));
    o.set_runbook(r.GetString(i, 2));
    o.set_version(static_cast<int32_t>(r.GetInt(i, 3)));
    o.set_interpreter(r.GetString(i, 4));
    o.set_body(r.GetString(i, 5));
    o.set_sha256(r.GetString(i, 6));
    RETURN_IF_ERROR(deploy::ParseArguments(r.GetString(i, 7), o.mutable_arguments()));
    o.set_timeout_seconds(r.GetInt(i, 8));
    o.set_run_as(r.GetString(i, 9));
    o.set_worker_group(r.GetString(i, 10));
    o.set_resumable(r.GetBool(i, 12));
    if (o.resumable() && !r.IsNull(i, 13))
      o.set_checkpoint(absl::HexStringToBytes(r.GetString(i, 13)));
    const std::vector<std::string> assets = store::ParseTextArray(r.GetString(i, 11));
    if (!assets.empty()) {
      if (absl::Status s = LoadAssets(tx, assets, key, &o); !s.ok()) {
        const std::string why = absl::StrCat(
            "site ", site, " cannot hand out its assets: ", s.message(), "; nothing ran");
        RETURN_IF_ERROR(tx.Exec("UPDATE runbook_job_runs SET state = 'failed', ended_at = now(), "
                                "lease_expires_at = NULL, detail = $2 WHERE job_id = $1::uuid",
                                {o.job(), why})
                            .status());
        RETURN_IF_ERROR(tx.Exec("UPDATE runbook_job_attempts SET outcome = 'failed', ended_at = "
                                "now(), detail = $3 WHERE job_id = $1::uuid AND attempt = $2",
                                {o.job(), absl::StrCat(o.attempt()), why})
                            .status());
        continue;
      }
    }
    *resp->add_start() = std::move(o);
  }
  return absl::OkStatus();
}

std::string MsTime(int64_t unix_ms) { return unix_ms > 0 ? absl::StrCat(unix_ms) : std::string(); }

// Takes up to `n` queued jobs of `group` for `device`: the oldest of each
// runbook in turn (fair across runbooks). Workers claiming at once skip
// each other's picks (SKIP LOCKED) instead of queueing behind one another;
// a group with a limit of its own is claimed under its lock instead, so
// that its count holds.
absl::StatusOr<std::vector<std::string>> Claim(Transaction& tx, const std::string& group,
                                               const std::string& device, const std::string& worker,
                                               int n, int64_t lease_seconds) {
  std::vector<std::string> got;
  if (n <= 0) return got;
  // More candidates than wanted: others claiming now hold some of them.
  ASSIGN_OR_RETURN(
      Result picked,
      tx.ExecCached(
          "SELECT x.job_id::text FROM (SELECT DISTINCT runbook FROM runbook_job_runs WHERE "
          "state = 'queued' AND worker_group = $1) rb CROSS JOIN LATERAL (SELECT job_id, "
          "queued_at, row_number() OVER (ORDER BY queued_at, job_id) AS rn FROM runbook_job_runs "
          "q WHERE q.state = 'queued' AND q.worker_group = $1 AND q.runbook = rb.runbook ORDER "
          "BY queued_at, job_id LIMIT $2) x ORDER BY x.rn, x.queued_at, x.job_id LIMIT $2",
          {group, absl::StrCat(n * 4 + 8)}));
  if (picked.empty()) return got;
  std::vector<std::string> ids;
  for (size_t i = 0; i < picked.size(); ++i) ids.push_back(picked.GetString(i, 0));
  ASSIGN_OR_RETURN(
      Result taken,
      tx.ExecCached(
          "WITH c AS (SELECT job_id FROM runbook_job_runs WHERE job_id = ANY($1::uuid[]) AND "
          "state = 'queued' ORDER BY array_position($1::uuid[], job_id) LIMIT $5 FOR UPDATE "
          "SKIP LOCKED), t AS (UPDATE runbook_job_runs r SET state = 'dispatched', attempt = "
          "attempt + 1, device_id = $2::uuid, worker_name = $3, dispatched_at = now(), "
          "started_at = NULL, lease_expires_at = now() + $4 * interval '1 second' FROM c WHERE "
          "r.job_id = c.job_id RETURNING r.job_id, r.attempt, r.site_code) INSERT INTO "
          "runbook_job_attempts (job_id, attempt, site_code, device_id, worker_name, "
          "dispatched_at) SELECT job_id, attempt, site_code, $2::uuid, $3, now() FROM t RETURNING "
          "job_id::text",
          {store::TextArrayLiteral(ids), device, worker, absl::StrCat(lease_seconds),
           absl::StrCat(n)}));
  for (size_t i = 0; i < taken.size(); ++i) got.push_back(taken.GetString(i, 0));
  return got;
}

}  // namespace

absl::Status RunbookWork(store::Connection& conn, const std::string& site,
                         const std::string& device, const v1::RunbookWorkRequest& req,
                         v1::RunbookWorkResponse* resp, const AssetKey* key) {
  RETURN_IF_ERROR(deploy::CheckWorkRequest(req));
  std::vector<std::string> ids;
  for (const auto& j : req.jobs()) ids.push_back(j.job());
  return conn.Transact([&](Transaction& tx) -> absl::Status {
    resp->Clear();  // a retried transaction starts over
    ASSIGN_OR_RETURN(Result name,
                     tx.ExecCached("SELECT name FROM devices WHERE id = $1::uuid", {device}));
    const std::string worker = name.empty() ? device : name.GetString(0, 0);
    // The groups it works for here.
    ASSIGN_OR_RETURN(
        Result groups,
        tx.ExecCached("SELECT g.name, g.lease_seconds, g.max_jobs_per_worker, g.max_jobs FROM "
                      "runbook_worker_assignments a JOIN runbook_worker_groups g ON g.name = "
                      "a.worker_group WHERE a.device_id = $1::uuid AND g.site_code = $2 ORDER "
                      "BY g.name",
                      {device, site}));
    int64_t lease_seconds = 0;
    for (size_t i = 0; i < groups.size(); ++i)
      lease_seconds =
          lease_seconds == 0 ? groups.GetInt(i, 1) : std::min(lease_seconds, groups.GetInt(i, 1));

    // The runs it names, locked; and the attempts it was given of them.
    std::map<std::string, Held> held;
    std::set<std::pair<std::string, int>> attempts;
    if (!ids.empty()) {
      ASSIGN_OR_RETURN(
          Result r,
          tx.ExecCached("SELECT r.job_id::text, r.attempt, r.state, coalesce(r.device_id::text, "
                        "''), j.stop_requested_at IS NOT NULL, coalesce(g.lease_seconds, 60), "
                        "j.suspend_requested, j.resumable, j.suspend_changed_by FROM "
                        "runbook_job_runs r JOIN runbook_jobs j ON j.id = r.job_id LEFT JOIN "
                        "runbook_worker_groups g ON g.name = r.worker_group WHERE r.job_id = "
                        "ANY($1::uuid[]) AND r.site_code = $2 ORDER BY r.job_id FOR UPDATE OF r",
                        {store::TextArrayLiteral(ids), site}));
      for (size_t i = 0; i < r.size(); ++i) {
        Held& h = held[r.GetString(i, 0)];
        h.attempt = static_cast<int>(r.GetInt(i, 1));
        h.state = r.GetString(i, 2);
        h.device = r.GetString(i, 3);
        h.stop_requested = r.GetBool(i, 4);
        h.lease_seconds = r.GetInt(i, 5);
        h.suspend_requested = r.GetBool(i, 6);
        h.resumable = r.GetBool(i, 7);
        h.suspended_by = r.GetString(i, 8);
      }
      // (This site's attempts only: a worker that moved to another site's
      // MP mid-job reports there nothing of a job it held here.)
      ASSIGN_OR_RETURN(Result a, tx.ExecCached("SELECT job_id::text, attempt FROM "
                                               "runbook_job_attempts WHERE device_id = $1::uuid "
                                               "AND job_id = ANY($2::uuid[]) AND site_code = $3",
                                               {device, store::TextArrayLiteral(ids), site}));
      for (size_t i = 0; i < a.size(); ++i)
        attempts.insert({a.GetString(i, 0), static_cast<int>(a.GetInt(i, 1))});
    }

    // Output of attempts it was given (a lost attempt's too: what it wrote
    // before it was cut off is kept).
    std::vector<std::string> o_job, o_attempt, o_stream, o_offset, o_text;
    for (const auto& p : req.jobs()) {
      if (!attempts.count({p.job(), p.attempt()})) continue;
      for (const auto& c : p.output()) {
        o_job.push_back(p.job());
        o_attempt.push_back(absl::StrCat(p.attempt()));
        o_stream.push_back(c.stream());
        o_offset.push_back(absl::StrCat(c.offset()));
        o_text.push_back(c.text());
      }
    }
    if (!o_job.empty()) {
      RETURN_IF_ERROR(
          tx.ExecCached("INSERT INTO runbook_job_output (job_id, attempt, stream, byte_offset, "
                        "site_code, text, at) SELECT j, a, s, o, $6, t, now() FROM "
                        "unnest($1::uuid[], $2::int[], $3::text[], $4::bigint[], $5::text[]) AS "
                        "x(j, a, s, o, t) ON CONFLICT (job_id, attempt, stream, byte_offset) DO "
                        "UPDATE SET text = excluded.text WHERE octet_length(excluded.text) > "
                        "octet_length(runbook_job_output.text)",
                        {store::TextArrayLiteral(o_job), store::TextArrayLiteral(o_attempt),
                         store::TextArrayLiteral(o_stream), store::TextArrayLiteral(o_offset),
                         store::TextArrayLiteral(o_text), site})
              .status());
    }

    // States: taken only from the worker holding the attempt; written as
    // one statement per kind (a busy worker reports dozens at once).
    std::vector<std::string> f_job, f_attempt, f_state, f_started, f_ended, f_exit, f_detail;
    std::vector<std::string> r_job, r_attempt, r_started, r_lease;
    std::vector<std::string> c_job, c_attempt, c_hex;
    // Ended suspended here: the dispatcher looks at them again, with the
    // requests as they are when it does (a resume or a stop may have come in
    // since this exchange read them).
    std::vector<std::string> suspended_now;
    for (const auto& p : req.jobs()) {
      auto it = held.find(p.job());
      const bool mine = it != held.end() && it->second.device == device &&
                        it->second.attempt == p.attempt() &&
                        (it->second.state == "dispatched" || it->second.state == "running");
      if (mine && it->second.resumable && p.has_checkpoint()) {
        c_job.push_back(p.job());
        c_attempt.push_back(absl::StrCat(p.attempt()));
        c_hex.push_back(absl::BytesToHexString(p.checkpoint()));
      }
      if (deploy::IsFinal(p.state())) {
        if (mine) {
          // Killed because it was asked to suspend (and not to stop): it
          // waits, suspended, with its checkpoint. (A resumable job is told
          // to stop only for that; resumed before its worker killed it, it
          // is suspended and queued again by the dispatcher.)
          const bool suspended = p.state() == v1::RUNBOOK_JOB_STATE_STOPPED &&
                                 it->second.resumable && !it->second.stop_requested;
          if (suspended) suspended_now.push_back(p.job());
          // What the worker adds to why it stopped (output dropped, a
          // checkpoint too large) stays.
          absl::string_view more = p.detail();
          absl::ConsumePrefix(&more, deploy::kStoppedAsAsked);
          absl::ConsumePrefix(&more, "; ");
          f_job.push_back(p.job());
          f_attempt.push_back(absl::StrCat(p.attempt()));
          f_state.push_back(suspended ? "suspended" : deploy::RunbookJobStateName(p.state()));
          f_started.push_back(MsTime(p.started_unix_ms()));
          f_ended.push_back(MsTime(p.finished_unix_ms()));
          f_exit.push_back(absl::StrCat(p.exit_code()));
          f_detail.push_back(
              !suspended
                  ? p.detail()
                  : absl::StrCat(it->second.suspend_requested ? "suspended by "
                                                              : "suspended, then resumed by ",
                                 it->second.suspended_by, more.empty() ? "" : "; ", more));
        }
        // Recorded now or before, or not its to record: it may forget it.
        resp->add_accepted(p.job());
        continue;
      }
      if (!mine) {
        resp->add_stop(p.job());  // failed over, failed, or never its
        continue;
      }
      r_job.push_back(p.job());
      r_attempt.push_back(absl::StrCat(p.attempt()));
      r_started.push_back(MsTime(p.started_unix_ms()));
      r_lease.push_back(absl::StrCat(it->second.lease_seconds));
      if (it->second.stop_requested || it->second.suspend_requested) resp->add_stop(p.job());
      if (lease_seconds == 0 || it->second.lease_seconds < lease_seconds)
        lease_seconds = it->second.lease_seconds;
    }
    using store::TextArrayLiteral;
    if (!c_job.empty()) {
      // The latest checkpoint of each (a later attempt's wins).
      const store::Params params = {TextArrayLiteral(c_job), TextArrayLiteral(c_attempt),
                                    TextArrayLiteral(c_hex)};
      RETURN_IF_ERROR(
          tx.ExecCached("INSERT INTO runbook_job_checkpoints AS c (job_id, attempt, data, at) "
                        "SELECT j, a, decode(h, 'hex'), now() FROM unnest($1::uuid[], $2::int[], "
                        "$3::text[]) AS x(j, a, h) ON CONFLICT (job_id) DO UPDATE SET attempt = "
                        "excluded.attempt, data = excluded.data, at = excluded.at WHERE c.attempt "
                        "<= excluded.attempt",
                        params)
              .status());
      RETURN_IF_ERROR(tx.ExecCached("UPDATE runbook_job_runs r SET checkpoint_bytes = "
                                    "octet_length(c.data), checkpoint_at = c.at FROM "
                                    "runbook_job_checkpoints c WHERE c.job_id = r.job_id AND "
                                    "r.job_id = ANY($1::uuid[])",
                                    {TextArrayLiteral(c_job)})
                          .status());
    }
    if (!f_job.empty()) {
      const store::Params params = {TextArrayLiteral(f_job),   TextArrayLiteral(f_attempt),
                                    TextArrayLiteral(f_state), TextArrayLiteral(f_started),
                                    TextArrayLiteral(f_ended), TextArrayLiteral(f_exit),
                                    TextArrayLiteral(f_detail)};
      constexpr char kEnded[] =
          "unnest($1::uuid[], $2::int[], $3::text[], $4::text[], $5::text[], $6::int[], "
          "$7::text[]) AS x(j, a, st, s, e, c, d)";
      RETURN_IF_ERROR(
          tx.ExecCached(
                absl::StrCat(
                    "UPDATE runbook_job_runs r SET state = x.st, started_at = "
                    "coalesce(r.started_at, to_timestamp(nullif(x.s, '')::bigint / 1000.0), "
                    "now()), ended_at = coalesce(to_timestamp(nullif(x.e, '')::bigint / 1000.0), "
                    "now()), exit_code = x.c, detail = x.d, lease_expires_at = NULL FROM ",
                    kEnded, " WHERE r.job_id = x.j"),
                params)
              .status());
      RETURN_IF_ERROR(
          tx.ExecCached(absl::StrCat("UPDATE runbook_job_attempts t SET outcome = x.st, "
                                     "started_at = coalesce(t.started_at, "
                                     "to_timestamp(nullif(x.s, '')::bigint / 1000.0), now()), "
                                     "ended_at = now(), detail = x.d FROM ",
                                     kEnded, " WHERE t.job_id = x.j AND t.attempt = x.a"),
                        params)
              .status());
    }
    if (!suspended_now.empty()) {
      RETURN_IF_ERROR(tx.ExecCached("INSERT INTO runbook_intake (job_id) SELECT "
                                    "unnest($1::uuid[]) ON CONFLICT DO NOTHING",
                                    {TextArrayLiteral(suspended_now)})
                          .status());
    }
    if (!r_job.empty()) {
      const store::Params params = {TextArrayLiteral(r_job), TextArrayLiteral(r_attempt),
                                    TextArrayLiteral(r_started), TextArrayLiteral(r_lease)};
      constexpr char kRunning[] =
          "unnest($1::uuid[], $2::int[], $3::text[], $4::int[]) AS x(j, a, s, l)";
      RETURN_IF_ERROR(
          tx.ExecCached(absl::StrCat("UPDATE runbook_job_runs r SET state = 'running', "
                                     "started_at = coalesce(r.started_at, "
                                     "to_timestamp(nullif(x.s, '')::bigint / 1000.0), now()), "
                                     "lease_expires_at = now() + x.l * interval '1 second' FROM ",
                                     kRunning, " WHERE r.job_id = x.j"),
                        params)
              .status());
      RETURN_IF_ERROR(
          tx.ExecCached(absl::StrCat("UPDATE runbook_job_attempts t SET started_at = "
                                     "to_timestamp(nullif(x.s, '')::bigint / 1000.0) FROM ",
                                     kRunning,
                                     " WHERE t.job_id = x.j AND t.attempt = x.a AND t.started_at "
                                     "IS NULL AND x.s <> ''"),
                        params)
              .status());
    }

    // Dispatched to it and not acknowledged (the answer was lost): again,
    // unless it was asked meanwhile to stop or suspend. It never started
    // (a worker names every job it started, until the site accepted its
    // end), so it ends here, and the dispatcher looks at it again (a resume
    // since).
    ASSIGN_OR_RETURN(
        Result pending,
        tx.ExecCached("SELECT r.job_id::text, CASE WHEN j.stop_requested_at IS NOT NULL THEN "
                      "'stopped' WHEN j.suspend_requested THEN 'suspended' ELSE '' END, CASE WHEN "
                      "j.stop_requested_at IS NOT NULL THEN j.stop_requested_by ELSE "
                      "j.suspend_changed_by END FROM runbook_job_runs r JOIN runbook_jobs j ON "
                      "j.id = r.job_id WHERE r.device_id = $1::uuid AND r.state = 'dispatched' AND "
                      "r.site_code = $2 AND NOT (r.job_id = ANY($3::uuid[])) ORDER BY r.job_id FOR "
                      "UPDATE OF r",
                      {device, site, store::TextArrayLiteral(ids)}));
    std::vector<std::string> orders, u_job, u_state, u_detail;
    for (size_t i = 0; i < pending.size(); ++i) {
      const std::string end = pending.GetString(i, 1);
      if (end.empty()) {
        orders.push_back(pending.GetString(i, 0));
        continue;
      }
      u_job.push_back(pending.GetString(i, 0));
      u_state.push_back(end);
      u_detail.push_back(absl::StrCat(end, " by ", pending.GetString(i, 2), " before it started"));
    }
    if (!u_job.empty()) {
      const store::Params params = {TextArrayLiteral(u_job), TextArrayLiteral(u_state),
                                    TextArrayLiteral(u_detail)};
      constexpr char kUnstarted[] = "unnest($1::uuid[], $2::text[], $3::text[]) AS x(j, st, d)";
      RETURN_IF_ERROR(
          tx.ExecCached(
                absl::StrCat("UPDATE runbook_job_runs r SET state = x.st, ended_at = now(), "
                             "lease_expires_at = NULL, detail = x.d FROM ",
                             kUnstarted, " WHERE r.job_id = x.j"),
                params)
              .status());
      RETURN_IF_ERROR(
          tx.ExecCached(absl::StrCat("UPDATE runbook_job_attempts t SET outcome = x.st, ended_at = "
                                     "now(), detail = x.d FROM ",
                                     kUnstarted,
                                     ", runbook_job_runs r WHERE r.job_id = x.j AND t.job_id = "
                                     "x.j AND t.attempt = r.attempt"),
                        params)
              .status());
      RETURN_IF_ERROR(tx.ExecCached("INSERT INTO runbook_intake (job_id) SELECT "
                                    "unnest($1::uuid[]) ON CONFLICT DO NOTHING",
                                    {TextArrayLiteral(u_job)})
                          .status());
    }
    if (!orders.empty()) {
      // Its lease runs from now: the worker learns of it now.
      RETURN_IF_ERROR(tx.ExecCached("UPDATE runbook_job_runs r SET lease_expires_at = now() + "
                                    "coalesce((SELECT g.lease_seconds FROM runbook_worker_groups "
                                    "g WHERE g.name = r.worker_group), 60) * interval '1 second' "
                                    "WHERE job_id = ANY($1::uuid[])",
                                    {store::TextArrayLiteral(orders)})
                          .status());
    }

    // New work, group by group, within the limits.
    int free = req.free_slots() - static_cast<int>(orders.size());
    for (size_t i = 0; i < groups.size() && free > 0; ++i) {
      const std::string group = groups.GetString(i, 0);
      const int64_t per_worker = groups.GetInt(i, 2), max_jobs = groups.GetInt(i, 3);
      if (max_jobs > 0) {
        RETURN_IF_ERROR(tx.ExecCached("SELECT pg_advisory_xact_lock(hashtext('strata.runbook:' "
                                      "|| $1))",
                                      {group})
                            .status());
      }
      ASSIGN_OR_RETURN(
          Result busy,
          tx.ExecCached("SELECT count(*) FILTER (WHERE device_id = $2::uuid), count(*) FROM "
                        "runbook_job_runs WHERE worker_group = $1 AND state IN ('dispatched', "
                        "'running')",
                        {group, device}));
      int64_t n = std::min<int64_t>(free, per_worker - busy.GetInt(0, 0));
      if (max_jobs > 0) n = std::min<int64_t>(n, max_jobs - busy.GetInt(0, 1));
      ASSIGN_OR_RETURN(std::vector<std::string> got,
                       Claim(tx, group, device, worker, static_cast<int>(n), groups.GetInt(i, 1)));
      free -= static_cast<int>(got.size());
      orders.insert(orders.end(), got.begin(), got.end());
    }
    RETURN_IF_ERROR(AddOrders(tx, site, key, orders, resp));
    resp->set_lease_ms((lease_seconds > 0 ? lease_seconds : kDefaultLeaseSeconds) * 1000);
    return absl::OkStatus();
  });
}

}  // namespace strata::site
