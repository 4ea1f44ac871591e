#include "provider/resources/report_catalog.h"

#include "absl/strings/str_cat.h"
#include "provider/listing.h"

namespace strata::provider {
namespace {

using store::TextArrayLiteral;

std::string P(store::Params& params, std::string value) {
  params.emplace_back(std::move(value));
  return absl::StrCat("$", params.size());
}

// Devices (alias `d`) the caller may see.
std::string Visible(const ReportCaller& c, store::Params& params, const std::string& d = "d.id") {
  return absl::StrCat(d, " IN (SELECT vm.device_id FROM collection_members vm WHERE ",
                      "vm.collection = ANY(", P(params, TextArrayLiteral(c.collections)),
                      "::text[]))");
}

std::string Arg(const std::map<std::string, std::string>& args, const std::string& name) {
  auto it = args.find(name);
  return it == args.end() ? "" : it->second;
}

}  // namespace

const std::vector<ReportSpec>& BuiltinReports() {
  static const auto* reports = new std::vector<ReportSpec>{
      {"hardware-summary",
       "Devices per operating system with their memory, cores and disk",
       {},
       "",
       [](const ReportCaller& c, const auto&, store::Params& params) {
         return absl::StrCat(
             "SELECT coalesce(o.pretty_name, '(no inventory)') AS os, count(*) AS devices, "
             "round(avg(m.total_kb) / 1024) AS avg_memory_mb, min(m.total_kb) / 1024 AS "
             "min_memory_mb, max(m.total_kb) / 1024 AS max_memory_mb, round(avg(p.cores), 1) AS "
             "avg_cores, round(sum(k.bytes) / 1073741824.0) AS disk_gb FROM devices d LEFT JOIN "
             "device_os o ON o.device_id = d.id LEFT JOIN device_memory m ON m.device_id = d.id "
             "LEFT JOIN (SELECT device_id, sum(cores) AS cores FROM device_processor GROUP BY 1) "
             "p ON p.device_id = d.id LEFT JOIN (SELECT device_id, sum(size_bytes) AS bytes FROM "
             "device_disk WHERE NOT is_filesystem GROUP BY 1) k ON k.device_id = d.id WHERE ",
             Visible(c, params), " GROUP BY 1 ORDER BY devices DESC, os");
       }},
      {"software-by-title",
       "Installed software by title and version, with how many devices have it",
       {"name"},
       "",
       [](const ReportCaller& c, const auto& args, store::Params& params) {
         std::string sql = absl::StrCat(
             "SELECT s.name, s.version, count(DISTINCT s.device_id) AS devices FROM "
             "device_software s WHERE ",
             Visible(c, params, "s.device_id"));
         if (!Arg(args, "name").empty()) {
           absl::StrAppend(&sql, " AND s.name ILIKE ", P(params, NamePattern(Arg(args, "name"))));
         }
         return sql + " GROUP BY 1, 2 ORDER BY devices DESC, 1, 2";
       }},
      {"devices-by-os",
       "Devices per operating system and version",
       {},
       "",
       [](const ReportCaller& c, const auto&, store::Params& params) {
         return absl::StrCat(
             "SELECT coalesce(o.name, '(no inventory)') AS os, coalesce(o.version, '') AS "
             "version, count(*) AS devices FROM devices d LEFT JOIN device_os o ON o.device_id = "
             "d.id WHERE ",
             Visible(c, params), " GROUP BY 1, 2 ORDER BY devices DESC, 1, 2");
       }},
      {"inactive-devices",
       "Devices marked inactive (silent longer than client.inactive_after_seconds)",
       {},
       "",
       [](const ReportCaller& c, const auto&, store::Params& params) {
         return absl::StrCat("SELECT d.name, d.site_code AS site, ", Ts("d.last_seen_at"),
                             " AS last_seen, ", Ts("d.last_heartbeat_at"),
                             " AS last_heartbeat, d.id FROM devices d WHERE NOT d.active AND ",
                             Visible(c, params), " ORDER BY d.last_seen_at NULLS FIRST, d.name");
       }},
      {"collection-membership",
       "Members per collection; with collection=NAME, that collection's members",
       {"collection"},
       "",
       [](const ReportCaller& c, const auto& args, store::Params& params) {
         std::string scopes =
             c.all_scopes
                 ? std::string("true")
                 : absl::StrCat("c.scopes && ", P(params, TextArrayLiteral(c.scopes)), "::text[]");
         if (!Arg(args, "collection").empty()) {
           return absl::StrCat(
               "SELECT d.name, d.site_code AS site, ", Ts("m.added_at"),
               " AS member_since, d.id FROM collection_members m JOIN devices d ON d.id = "
               "m.device_id JOIN collections c ON c.name = m.collection WHERE m.collection = ",
               P(params, Arg(args, "collection")), " AND ", scopes, " AND ", Visible(c, params),
               " ORDER BY d.name, d.id");
         }
         return absl::StrCat(
             "SELECT c.name AS collection, coalesce(c.limiting, '') AS limiting, (SELECT "
             "count(*) FROM collection_members m JOIN devices d ON d.id = m.device_id WHERE "
             "m.collection = c.name AND ",
             Visible(c, params), ") AS members FROM collections c WHERE ", scopes,
             " ORDER BY c.name");
       }},
      {"deployment-compliance",
       "Per deployment: targeted devices, installed (compliant), failed, in progress, not "
       "applicable, unknown, and the compliance percent; with deployment=NAME, each device",
       {"deployment"},
       "deployment.read",
       [](const ReportCaller& c, const auto& args, store::Params& params) {
         std::string scopes =
             c.all_scopes
                 ? std::string("true")
                 : absl::StrCat("a.scopes && ", P(params, TextArrayLiteral(c.scopes)), "::text[]");
         if (!Arg(args, "deployment").empty()) {
           return absl::StrCat(
               "SELECT v.name AS device, s.site_code AS site, s.state, s.exit_code, s.attempt, ",
               Ts("s.reported_at"),
               " AS updated, left(s.detail, 200) AS detail FROM deployment_states s JOIN "
               "devices v ON v.id = s.device_id JOIN app_deployments d ON d.name = s.deployment "
               "JOIN applications a ON a.name = d.application WHERE s.deployment = ",
               P(params, Arg(args, "deployment")), " AND ", scopes, " AND ",
               Visible(c, params, "v.id"), " ORDER BY s.state, v.name");
         }
         const std::string visible = Visible(c, params, "m.device_id");
         return absl::StrCat(
             "SELECT d.name AS deployment, d.application, d.collection, count(m.device_id) AS "
             "targeted, count(*) FILTER (WHERE s.state IN ('installed', 'reboot_pending', "
             "'uninstalled')) AS compliant, count(*) FILTER (WHERE s.state = 'failed') AS "
             "failed, count(*) FILTER (WHERE s.state IN ('waiting', 'downloading', "
             "'installing', 'retrying', 'available')) AS in_progress, count(*) FILTER (WHERE "
             "s.state = 'requirements_not_met') AS not_applicable, count(m.device_id) FILTER "
             "(WHERE s.state IS NULL) AS unknown, CASE WHEN count(m.device_id) = 0 THEN '' ELSE "
             "round(100.0 * count(*) FILTER (WHERE s.state IN ('installed', 'reboot_pending', "
             "'uninstalled')) / count(m.device_id), 1)::text END AS compliance_percent FROM "
             "app_deployments d JOIN applications a ON a.name = d.application LEFT JOIN "
             "collection_members m ON m.collection = d.collection AND ",
             visible,
             " LEFT JOIN deployment_states s ON s.deployment = d.name AND s.device_id = "
             "m.device_id WHERE ",
             scopes, " GROUP BY d.name, d.application, d.collection ORDER BY d.name");
       }},
      {"replication-health",
       "This site's replication with each peer, from its database: WAL kept for the peer "
       "and not yet acknowledged, when the peer was last in contact and when this site last "
       "applied its changes",
       {},
       "link.read",
       [](const ReportCaller&, const auto&, store::Params&) {
         return absl::StrCat(
             "SELECT coalesce(o.peer, i.peer) AS peer, (SELECT (pg_current_wal_lsn() - "
             "s.confirmed_flush_lsn)::bigint FROM pg_replication_slots s, repl_identity r WHERE "
             "s.database = current_database() AND s.slot_name = lower('strata_' || r.site_code "
             "|| '_to_' || coalesce(o.peer, i.peer))) AS unacknowledged_wal_bytes, ",
             Ts("o.updated_at"), " AS peer_in_contact_at, ", Ts("i.updated_at"),
             " AS applied_from_peer_at FROM repl_outbound o FULL JOIN repl_inbound i ON i.peer "
             "= o.peer ORDER BY 1");
       }},
  };
  return *reports;
}

const ReportSpec* FindReport(const std::string& name) {
  for (const auto& r : BuiltinReports()) {
    if (r.name == name) return &r;
  }
  return nullptr;
}

}  // namespace strata::provider
