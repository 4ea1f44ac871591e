#include "common/site/site_metrics.h"

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/base/hlc.h"
#include "common/base/status.h"

namespace strata::site {
namespace {

const char* StateName(v1::LinkState s) {
  return s == v1::LINK_STATE_ACTIVE     ? "active"
         : s == v1::LINK_STATE_DEGRADED ? "degraded"
                                        : "failed";
}

}  // namespace

void AddLinkMetrics(const v1::SiteStatus& status, metrics::Sample& s) {
  s.Gauge("strata_wal_position_bytes", "This site's WAL position (pg_current_wal_lsn)",
          static_cast<double>(status.log_last_id()));
  const double now_s = static_cast<double>(WallClockMs()) / 1000.0;
  for (const auto& l : status.links()) {
    const metrics::Labels peer = {{"peer", l.peer_site_code()}, {"role", l.role()}};
    s.Gauge("strata_link_connected", "1 while the link's stream is up", l.connected() ? 1 : 0,
            peer);
    for (v1::LinkState st :
         {v1::LINK_STATE_ACTIVE, v1::LINK_STATE_DEGRADED, v1::LINK_STATE_FAILED}) {
      metrics::Labels labels = peer;
      labels.emplace_back("state", StateName(st));
      s.Gauge("strata_link_state", "1 for the link's health state (active, degraded, failed)",
              l.state() == st ? 1 : 0, labels);
    }
    s.Gauge("strata_link_lag_changes", "Changes of this site the peer has not acknowledged",
            static_cast<double>(l.lag_changes()), peer);
    s.Gauge("strata_link_lag_seconds", "Age of the oldest change the peer has not acknowledged",
            l.lag_seconds(), peer);
    if (l.last_contact_unix_ms() > 0) {
      s.Gauge("strata_link_last_contact_age_seconds", "Seconds since the peer was last heard",
              now_s - static_cast<double>(l.last_contact_unix_ms()) / 1000.0, peer);
    }
    s.Counter("strata_link_changes_sent_total", "Changes sent to the peer (this process)",
              static_cast<double>(l.changes_sent()), peer);
    s.Counter("strata_link_changes_applied_total", "Changes from the peer applied here",
              static_cast<double>(l.changes_applied()), peer);
    s.Counter("strata_link_snapshots_sent_total", "Snapshots sent to the peer",
              static_cast<double>(l.snapshots_sent()), peer);
    s.Counter("strata_link_snapshots_applied_total", "Snapshots from the peer applied here",
              static_cast<double>(l.snapshots_applied()), peer);
  }
}

absl::Status AddDatabaseMetrics(store::Transaction& tx, const std::string& site_code,
                                metrics::Sample& s) {
  ASSIGN_OR_RETURN(store::Result devices,
                   tx.Exec("SELECT site_code, active, count(*) FROM devices GROUP BY 1, 2"));
  for (size_t i = 0; i < devices.size(); ++i) {
    s.Gauge("strata_devices", "Devices known here, by assigned site and activity",
            static_cast<double>(devices.GetInt(i, 2)),
            {{"site", devices.GetString(i, 0)},
             {"active", devices.GetString(i, 1) == "t" ? "true" : "false"}});
  }
  ASSIGN_OR_RETURN(store::Result systems,
                   tx.Exec("SELECT role, name, extract(epoch FROM now() - last_seen_at) "
                           "FROM site_systems WHERE site_code = $1",
                           {site_code}));
  for (size_t i = 0; i < systems.size(); ++i) {
    double age = 0;
    (void)absl::SimpleAtod(systems.GetString(i, 2), &age);
    s.Gauge("strata_site_system_last_seen_age_seconds",
            "Seconds since this site's MP or DP last reported", age,
            {{"role", systems.GetString(i, 0)}, {"name", systems.GetString(i, 1)}});
  }
  ASSIGN_OR_RETURN(store::Result content,
                   tx.Exec("SELECT location, state, count(*), "
                           "sum(greatest(bytes_total - bytes_done, 0)) FROM content_status "
                           "WHERE site_code = $1 GROUP BY 1, 2",
                           {site_code}));
  for (size_t i = 0; i < content.size(); ++i) {
    const metrics::Labels labels = {{"location", content.GetString(i, 0)},
                                    {"state", content.GetString(i, 1)}};
    s.Gauge("strata_content_versions", "Content versions at this site's library and DPs, by state",
            static_cast<double>(content.GetInt(i, 2)), labels);
    s.Gauge("strata_content_bytes_pending", "Bytes still to transfer, by location and state",
            static_cast<double>(content.GetInt(i, 3)), labels);
  }
  ASSIGN_OR_RETURN(store::Result jobs,
                   tx.Exec("SELECT worker_group, state, count(*) FROM runbook_job_runs "
                           "WHERE site_code = $1 AND state IN ('queued', 'dispatched', "
                           "'running', 'suspended') GROUP BY 1, 2",
                           {site_code}));
  for (size_t i = 0; i < jobs.size(); ++i) {
    s.Gauge("strata_runbook_jobs", "Runbook jobs this site dispatches, by worker group and state",
            static_cast<double>(jobs.GetInt(i, 2)),
            {{"group", jobs.GetString(i, 0)}, {"state", jobs.GetString(i, 1)}});
  }
  // What each peer's slot keeps of this site's WAL (a peer away keeps more).
  ASSIGN_OR_RETURN(
      store::Result slots,
      tx.Exec("SELECT slot_name, coalesce((pg_current_wal_lsn() - restart_lsn)::bigint, "
              "0) FROM pg_replication_slots WHERE database = current_database() AND "
              "slot_name LIKE $1",
              {absl::AsciiStrToLower(absl::StrCat("strata_", site_code, "_to_%"))}));
  const std::string prefix = absl::AsciiStrToLower(absl::StrCat("strata_", site_code, "_to_"));
  for (size_t i = 0; i < slots.size(); ++i) {
    s.Gauge("strata_link_slot_retained_bytes",
            "WAL this site keeps for the peer's slot (lag in bytes; bounded by "
            "max_slot_wal_keep_size)",
            static_cast<double>(slots.GetInt(i, 1)),
            {{"peer", absl::AsciiStrToUpper(slots.GetString(i, 0).substr(prefix.size()))}});
  }
  ASSIGN_OR_RETURN(store::Result intake, tx.Exec("SELECT count(*) FROM runbook_intake"));
  s.Gauge("strata_runbook_intake", "Runbook jobs arrived or changed, not taken in yet",
          static_cast<double>(intake.GetInt(0, 0)));
  return absl::OkStatus();
}

}  // namespace strata::site
