#include "primary/client_maintenance.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/base/log.h"
#include "common/base/status.h"
#include "common/store/pool.h"

namespace strata::primary {
namespace {

// A global setting of seconds: "<site>/<name>", else "<name>", else `fallback`.
absl::StatusOr<int64_t> SecondsSetting(store::Transaction& tx, const std::string& site,
                                       const std::string& name, int64_t fallback) {
  ASSIGN_OR_RETURN(store::Result r,
                   tx.Exec("SELECT value FROM global_settings WHERE name = $1 OR name = $2 "
                           "ORDER BY (name = $1) DESC LIMIT 1",
                           {absl::StrCat(site, "/", name), name}));
  int64_t n = 0;
  if (r.empty() || !absl::SimpleAtoi(r.GetString(0, 0), &n) || n <= 0) return fallback;
  return n;
}

void Run(const site::SiteJobContext& ctx) {
  const v1::SiteServerConfig& config = ctx.config();
  const int64_t period =
      config.client_maintenance_seconds() > 0 ? config.client_maintenance_seconds() : 300;
  store::ConnectionPool pool(config.database(), 1);
  while (ctx.Sleep(absl::Seconds(period))) {
    absl::Status s = pool.With([&](store::Connection& conn) {
      return conn.Transact(
          [&](store::Transaction& tx) { return RunClientMaintenance(tx, config.site_code()); });
    });
    if (!s.ok()) LogWarning("client.maintenance_failed", {{"error", s}});
  }
}

}  // namespace

site::SiteJob ClientMaintenance() { return {"client maintenance", Run}; }

absl::Status RunClientMaintenance(store::Transaction& tx, const std::string& site) {
  ASSIGN_OR_RETURN(int64_t inactive, SecondsSetting(tx, site, "client.inactive_after_seconds",
                                                    kDefaultInactiveAfterSeconds));
  ASSIGN_OR_RETURN(int64_t remove, SecondsSetting(tx, site, "client.delete_after_seconds",
                                                  kDefaultDeleteAfterSeconds));
  ASSIGN_OR_RETURN(
      store::Result marked,
      tx.Exec("UPDATE devices SET active = false WHERE site_code = $1 AND active AND "
              "coalesce(last_seen_at, discovered_at) < now() - make_interval(secs => $2)",
              {site, absl::StrCat(inactive)}));
  ASSIGN_OR_RETURN(store::Result gone,
                   tx.Exec("DELETE FROM devices WHERE site_code = $1 AND coalesce(last_seen_at, "
                           "discovered_at) < now() - make_interval(secs => $2) RETURNING id::text",
                           {site, absl::StrCat(remove)}));
  if (!gone.empty()) {
    std::vector<std::string> ids;
    for (size_t i = 0; i < gone.size(); ++i) ids.push_back(gone.GetString(i, 0));
    std::string arr = store::TextArrayLiteral(ids);
    for (const char* table :
         {"device_os", "device_system", "device_memory", "device_processor", "device_disk",
          "device_network", "device_software", "status_messages"}) {
      RETURN_IF_ERROR(
          tx.Exec(absl::StrCat("DELETE FROM ", table, " WHERE device_id = ANY($1::uuid[])"), {arr})
              .status());
    }
  }
  if (marked.affected_rows() > 0 || !gone.empty()) {
    LogInfo("client.maintenance",
            {{"marked_inactive", marked.affected_rows()}, {"deleted", gone.size()}});
  }
  return absl::OkStatus();
}

}  // namespace strata::primary
