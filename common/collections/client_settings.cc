#include "common/collections/client_settings.h"

#include <algorithm>
#include <iterator>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/status.h"

namespace strata::collections {
namespace {

constexpr int kAssignBatch = 5000;

// What is resolved per device from its collections: custom client settings
// and application deployments, each a table of deployments to collections
// and one of what reached each device (same shape, one mechanism).
struct AssignedKind {
  const char* deployments;  // (name column, collection)
  const char* name;
  const char* assignments;  // (device_id, column, site_code)
  const char* column;
  // More of the join of a deployment `d` and a member `m` (a script run
  // may name one device of its collection).
  const char* also = "";
};
constexpr AssignedKind kKinds[] = {
    {"client_setting_deployments", "setting", "client_setting_assignments", "setting"},
    {"app_deployments", "name", "app_deployment_assignments", "deployment"},
    {"maintenance_windows", "name", "maintenance_window_assignments", "maintenance_window"},
    {"script_runs", "id", "script_run_assignments", "run",
     " AND (d.device_id IS NULL OR d.device_id = m.device_id)"},
    {"live_queries", "id", "live_query_assignments", "query",
     " AND (d.device_id IS NULL OR d.device_id = m.device_id)"},
    {"runbook_worker_groups", "name", "runbook_worker_assignments", "worker_group"},
};

static_assert(std::size(kKinds) == kDeploymentKinds);

// For every device of the site ($1), or (`some`) for the devices in $2;
// the kinds in `kinds` (kinds[i] for kKinds[i]).
absl::StatusOr<AssignStats> Resolve(store::Transaction& tx, bool some, const store::Params& params,
                                    const DeploymentKinds& kinds) {
  AssignStats stats;
  for (size_t i = 0; i < std::size(kKinds); ++i) {
    if (!kinds[i]) continue;
    const AssignedKind& k = kKinds[i];
    const std::string col = k.column;
    ASSIGN_OR_RETURN(
        store::Result removed,
        tx.Exec(absl::StrCat("DELETE FROM ", k.assignments, " a WHERE a.site_code = $1",
                             !some ? "" : " AND a.device_id = ANY($2::uuid[])",
                             " AND NOT EXISTS (SELECT 1 FROM ", k.deployments,
                             " d JOIN collection_members m ON m.collection = d.collection WHERE "
                             "m.device_id = a.device_id AND d.",
                             k.name, " = a.", col, k.also, ")"),
                params));
    ASSIGN_OR_RETURN(
        store::Result added,
        tx.Exec(absl::StrCat("INSERT INTO ", k.assignments, " (device_id, ", col,
                             ", site_code) SELECT DISTINCT m.device_id, d.", k.name, ", $1 FROM ",
                             k.deployments,
                             " d JOIN collection_members m ON m.collection = d.collection", k.also,
                             " WHERE m.site_code = $1",
                             !some ? "" : " AND m.device_id = ANY($2::uuid[])",
                             " ON CONFLICT (device_id, ", col, ") DO NOTHING"),
                params));
    stats.removed += removed.affected_rows();
    stats.added += added.affected_rows();
  }
  return stats;
}

}  // namespace

absl::Status LoadClientSettings(store::Transaction& tx, v1::SiteBundle* bundle) {
  ASSIGN_OR_RETURN(store::Result r,
                   tx.Exec("SELECT name, priority, builtin, policy_poll_seconds, "
                           "inventory_seconds, heartbeat_seconds, splay_seconds FROM "
                           "client_settings ORDER BY name"));
  bool have_default = false;
  for (size_t i = 0; i < r.size(); ++i) {
    if (r.GetString(i, 0) == kDefaultClientSettings) {
      auto* s = bundle->mutable_settings();
      // The default sets every field (the provider refuses to clear one);
      // a NULL would only come from a hand-edited row: 0 lets agents fall
      // back to their own defaults.
      s->set_policy_poll_seconds(r.IsNull(i, 3) ? 0 : r.GetInt(i, 3));
      s->set_inventory_seconds(r.IsNull(i, 4) ? 0 : r.GetInt(i, 4));
      s->set_heartbeat_seconds(r.IsNull(i, 5) ? 0 : r.GetInt(i, 5));
      s->set_splay_seconds(r.IsNull(i, 6) ? 0 : r.GetInt(i, 6));
      have_default = true;
      continue;
    }
    auto* c = bundle->add_custom_settings();
    c->set_name(r.GetString(i, 0));
    c->set_priority(static_cast<int32_t>(r.GetInt(i, 1)));
    if (!r.IsNull(i, 3)) c->set_policy_poll_seconds(r.GetInt(i, 3));
    if (!r.IsNull(i, 4)) c->set_inventory_seconds(r.GetInt(i, 4));
    if (!r.IsNull(i, 5)) c->set_heartbeat_seconds(r.GetInt(i, 5));
    if (!r.IsNull(i, 6)) c->set_splay_seconds(r.GetInt(i, 6));
  }
  if (!have_default) {
    return absl::FailedPreconditionError(
        absl::StrCat("the site database has no \"", kDefaultClientSettings, "\" row"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ApprovalMode(store::Transaction& tx) {
  ASSIGN_OR_RETURN(store::Result r, tx.Exec("SELECT coalesce(approval_mode, 'token') FROM "
                                            "client_settings WHERE name = $1",
                                            {kDefaultClientSettings}));
  return r.empty() ? std::string("token") : r.GetString(0, 0);
}

absl::StatusOr<std::map<std::string, Assigned>> LoadAssignments(
    store::Transaction& tx, const std::vector<std::string>& device_ids) {
  std::map<std::string, Assigned> out;
  if (device_ids.empty()) return out;
  ASSIGN_OR_RETURN(store::Result r,
                   tx.Exec("SELECT d, n, k FROM (SELECT device_id::text AS d, setting AS n, 0 AS k "
                           "FROM client_setting_assignments WHERE device_id = ANY($1::uuid[]) "
                           "UNION ALL SELECT device_id::text, deployment, 1 FROM "
                           "app_deployment_assignments WHERE device_id = ANY($1::uuid[]) UNION "
                           "ALL SELECT device_id::text, maintenance_window, 2 FROM "
                           "maintenance_window_assignments WHERE device_id = ANY($1::uuid[]) "
                           "UNION ALL SELECT device_id::text, run::text, 3 FROM "
                           "script_run_assignments WHERE device_id = ANY($1::uuid[]) UNION ALL "
                           "SELECT device_id::text, query::text, 4 FROM live_query_assignments "
                           "WHERE device_id = ANY($1::uuid[]) UNION ALL SELECT device_id::text, "
                           "worker_group, 5 FROM runbook_worker_assignments WHERE device_id = "
                           "ANY($1::uuid[])) x ORDER BY k, d, n COLLATE \"C\"",
                           {store::TextArrayLiteral(device_ids)}));
  for (size_t i = 0; i < r.size(); ++i) {
    Assigned& a = out[r.GetString(i, 0)];
    std::vector<std::string>* lists[] = {&a.settings,    &a.deployments,  &a.windows,
                                         &a.script_runs, &a.live_queries, &a.runbook_worker_groups};
    lists[std::clamp<int64_t>(r.GetInt(i, 2), 0, 5)]->push_back(r.GetString(i, 1));
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> DeploymentVersions(store::Connection& conn) {
  std::vector<std::string> parts;
  for (const AssignedKind& k : kKinds) {
    parts.push_back(absl::StrCat("(SELECT count(*) || ':' || coalesce(sum(_hlc), 0) FROM ",
                                 k.deployments, ")"));
  }
  ASSIGN_OR_RETURN(store::Result r, conn.Exec(absl::StrCat("SELECT ", absl::StrJoin(parts, ", "))));
  std::vector<std::string> out;
  for (size_t i = 0; i < std::size(kKinds); ++i) out.push_back(r.GetString(0, static_cast<int>(i)));
  return out;
}

absl::StatusOr<AssignStats> AssignClientSettings(store::Connection& conn, const std::string& site,
                                                 bool all) {
  DeploymentKinds whole;
  whole.fill(all);
  return AssignClientSettings(conn, site, whole);
}

absl::StatusOr<AssignStats> AssignClientSettings(store::Connection& conn, const std::string& site,
                                                 const DeploymentKinds& whole) {
  AssignStats total;
  if (std::find(whole.begin(), whole.end(), true) != whole.end()) {
    RETURN_IF_ERROR(conn.Transact([&](store::Transaction& tx) -> absl::Status {
      ASSIGN_OR_RETURN(total, Resolve(tx, false, {site}, whole));
      return absl::OkStatus();
    }));
  }
  DeploymentKinds every;
  every.fill(true);
  // The queue, also after a whole pass (what it holds is resolved already,
  // and resolving again writes nothing).
  while (true) {
    AssignStats step;
    RETURN_IF_ERROR(conn.Transact([&](store::Transaction& tx) -> absl::Status {
      step = AssignStats();
      ASSIGN_OR_RETURN(store::Result q, tx.Exec("SELECT device_id::text FROM client_setting_dirty "
                                                "LIMIT $1 FOR UPDATE SKIP LOCKED",
                                                {absl::StrCat(kAssignBatch)}));
      if (q.empty()) return absl::OkStatus();
      std::vector<std::string> ids;
      for (size_t i = 0; i < q.size(); ++i) ids.push_back(q.GetString(i, 0));
      const std::string arr = store::TextArrayLiteral(ids);
      ASSIGN_OR_RETURN(step, Resolve(tx, true, {site, arr}, every));
      step.devices = static_cast<int64_t>(ids.size());
      return tx.Exec("DELETE FROM client_setting_dirty WHERE device_id = ANY($1::uuid[])", {arr})
          .status();
    }));
    total.added += step.added;
    total.removed += step.removed;
    total.devices += step.devices;
    if (step.devices < kAssignBatch) break;
  }
  return total;
}

}  // namespace strata::collections
