#pragma once

// A site server's status: the links part of GetStatus (from the sessions'
// counters and, for a peer not connected, its slot), and the `status`
// command's side (QueryStatus, FormatStatus).

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/replication/link_session.h"
#include "common/store/database.h"
#include "strata/v1/config.pb.h"
#include "strata/v1/site_link.pb.h"

namespace strata::site {

// Adds a LinkStatus per peer of `links` and per registered child of
// `site_code` (connected or not): lag from the session's unacknowledged
// batches when connected, else peeked from the peer's slot; the state from
// `settings`' thresholds.
// Without `peek`, a disconnected peer's lag is left out (reading it decodes
// the peer's slot, which a returning peer's session then waits for): the
// metrics endpoint reports the slot's retained WAL instead.
absl::Status AddLinkStatuses(store::Transaction& tx, const std::string& site_code,
                             std::vector<replication::LinkCounters> links,
                             const v1::ReplicationConfig& settings, v1::SiteStatus* out,
                             bool peek = true);

// Asks the site server at `address` for its status (GetStatus over mutual TLS).
absl::StatusOr<v1::SiteStatus> QueryStatus(const std::string& address, const v1::TlsConfig& tls);
// Human-readable table of a status.
std::string FormatStatus(const v1::SiteStatus& status);

}  // namespace strata::site
