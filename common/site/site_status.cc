#include "common/site/site_status.h"

#include <algorithm>
#include <chrono>
#include <map>

#include "absl/strings/str_format.h"
#include "common/base/hlc.h"
#include "common/base/status.h"
#include "common/net/tls.h"
#include "common/replication/routing.h"
#include "common/replication/wal_reader.h"
#include "common/site/topology.h"
#include "common/store/wal_stream.h"
#include "strata/v1/site_link.grpc.pb.h"

namespace strata::site {

using replication::LinkCounters;

absl::Status AddLinkStatuses(store::Transaction& tx, const std::string& site_code,
                             std::vector<LinkCounters> links, const v1::ReplicationConfig& settings,
                             v1::SiteStatus* out, bool peek) {
  std::map<std::string, LinkCounters> by_peer;
  for (auto& c : links) by_peer[c.peer] = std::move(c);
  // Every registered child is listed, connected or not.
  ASSIGN_OR_RETURN(
      store::Result children,
      tx.Exec("SELECT code, type FROM sites WHERE parent = $1 ORDER BY code", {site_code}));
  for (size_t i = 0; i < children.size(); ++i) {
    LinkCounters& c = by_peer[children.GetString(i, 0)];
    c.peer = children.GetString(i, 0);
    c.peer_type = SiteTypeFromName(children.Get(i, 1));
    c.peer_is_parent = false;
  }
  const int64_t now = WallClockMs();
  for (auto& [peer, c] : by_peer) {
    v1::LinkStatus* l = out->add_links();
    l->set_peer_site_code(peer);
    l->set_role(c.peer_is_parent ? "parent" : "child");
    l->set_connected(c.connected);
    l->set_last_error(c.last_error);
    l->set_last_contact_unix_ms(c.last_contact_unix_ms);
    l->set_changes_sent(c.changes_sent);
    l->set_changes_applied(c.changes_applied);
    l->set_snapshots_sent(c.snapshots_sent);
    l->set_snapshots_applied(c.snapshots_applied);
    replication::PeerFilter filter;
    filter.peer = peer;
    filter.scopes = replication::StreamScopesFor(c.peer_is_parent, c.peer_type);
    if (c.connected) {
      // What the session sent and the peer has not acknowledged.
      l->set_lag_changes(c.unacked_changes);
      if (c.oldest_unacked_unix_ms > 0) {
        l->set_lag_seconds(std::max<int64_t>(0, now - c.oldest_unacked_unix_ms) / 1000.0);
      }
    } else if (peek && !(c.peer_is_parent && peer == "parent")) {  // a parent not yet reached
      // What the peer's slot holds for it (none yet: it will get a snapshot).
      ASSIGN_OR_RETURN(replication::SlotState slot,
                       replication::ReadSlot(tx, replication::SlotName(site_code, peer)));
      if (slot.exists && !slot.lost) {
        // A session may take the slot meanwhile (the peek then fails):
        // the rest of the status must not go with it.
        RETURN_IF_ERROR(tx.Exec("SAVEPOINT peek").status());
        auto lag = replication::PeekLag(tx, site_code, filter);
        if (lag.ok()) {
          l->set_lag_changes(lag->changes);
          l->set_lag_seconds(lag->seconds);
        }
        RETURN_IF_ERROR(
            tx.Exec(lag.ok() ? "RELEASE SAVEPOINT peek" : "ROLLBACK TO SAVEPOINT peek").status());
      }
    }
    v1::LinkState state;
    if (c.connected) {
      state = l->lag_seconds() > settings.degraded_lag_seconds() ? v1::LINK_STATE_DEGRADED
                                                                 : v1::LINK_STATE_ACTIVE;
    } else {
      int64_t down_since = c.disconnected_since_unix_ms;
      state =
          (down_since == 0 || now - down_since > settings.failed_after_seconds() * int64_t{1000})
              ? v1::LINK_STATE_FAILED
              : v1::LINK_STATE_DEGRADED;
    }
    l->set_state(state);
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::SiteStatus> QueryStatus(const std::string& address, const v1::TlsConfig& tls) {
  ASSIGN_OR_RETURN(auto channel, MakeChannel(address, tls));
  auto stub = v1::SiteLink::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::SiteStatus status;
  RETURN_IF_ERROR(FromGrpcStatus(stub->GetStatus(&ctx, v1::GetStatusRequest(), &status)));
  return status;
}

std::string FormatStatus(const v1::SiteStatus& s) {
  std::string out = absl::StrFormat(
      "site %s (%s)  parent %s  version %s  WAL at %s\n", s.site_code(),
      SiteTypeLongName(s.site_type()), s.parent_site_code().empty() ? "-" : s.parent_site_code(),
      s.version(), store::LsnToString(static_cast<store::Lsn>(s.log_last_id())));
  out += absl::StrFormat("%-6s %-7s %-9s %-9s %11s %9s %12s  %s\n", "PEER", "ROLE", "STATE",
                         "CONNECTED", "LAG_CHANGES", "LAG_S", "LAST_CONTACT", "LAST_ERROR");
  const int64_t now = WallClockMs();
  for (const auto& l : s.links()) {
    std::string state = l.state() == v1::LINK_STATE_ACTIVE     ? "active"
                        : l.state() == v1::LINK_STATE_DEGRADED ? "degraded"
                                                               : "failed";
    std::string contact =
        l.last_contact_unix_ms() == 0
            ? "never"
            : absl::StrFormat("%.1fs ago", (now - l.last_contact_unix_ms()) / 1000.0);
    out += absl::StrFormat("%-6s %-7s %-9s %-9s %11d %9.1f %12s  %s\n", l.peer_site_code(),
                           l.role(), state, l.connected() ? "yes" : "no", l.lag_changes(),
                           l.lag_seconds(), contact, l.last_error().empty() ? "-" : l.last_error());
  }
  return out;
}

}  // namespace strata::site
