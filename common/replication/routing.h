#pragma once

// Replication routing in one place: which scopes each peer takes from this
// site, and which scopes a site accepts from each peer.
//
// Scopes (a table's `repl_enable(table, scope)`):
//   global        definitions authored at the CAS or a primary; the CAS and
//                 primaries keep them
//   global_proxy  global data secondaries need too; every site keeps it
//   site          a primary's data (devices, inventory, state); up only
//   site_proxy    site data a primary's secondaries need too (their
//                 management points serve its clients); up, and from a
//                 primary down to its secondaries
//
// Who takes what from this site (ScopesFor):
//   its parent              all four (a secondary streams only site and
//                           site_proxy up: StreamScopesFor)
//   a child primary         global, global_proxy
//   a child secondary       global_proxy, site_proxy
//
// Forwarding needs no rule of its own: what a site applies from a peer is
// in its WAL with that peer's replication origin, and its reader for each
// other peer sends whatever is in the scopes that peer takes (ScopesFor),
// never the peer's own changes back (wal_reader.h). A change therefore
// crosses as many hops as its scope allows.

#include <string>
#include <string_view>
#include <vector>

#include "strata/v1/site_link.pb.h"

namespace strata::replication {

inline constexpr char kScopeGlobal[] = "global";
inline constexpr char kScopeGlobalProxy[] = "global_proxy";
inline constexpr char kScopeSite[] = "site";
inline constexpr char kScopeSiteProxy[] = "site_proxy";

// Where a site stands: its type and whether it has a parent (a primary may
// be standalone). Its children's type follows from its own.
struct SitePlace {
  v1::SiteType type = v1::SITE_TYPE_UNSPECIFIED;
  bool has_parent = false;
};

// The type of site a site of `type` has as children (UNSPECIFIED: none).
v1::SiteType ChildTypeOf(v1::SiteType type);

// Scopes a peer takes from this site: the parent (`peer_is_parent`) or a
// child of type `peer_type`.
std::vector<std::string> ScopesFor(bool peer_is_parent, v1::SiteType peer_type);

// Scopes this site's stream of changes to a peer carries: ScopesFor's,
// except that a secondary streams only `site` and `site_proxy` up to its
// parent (a primary). A secondary writes no global data (no provider runs
// there; its jobs write site data), so the rest of its WAL is its parent's
// own changes, which PostgreSQL 15's pgoutput cannot leave out by origin:
// they were decoded, sent back and dropped, costing that walsender as much
// as the parent's walsender decoding them in the first place. Snapshots
// still carry ScopesFor's scopes (they also hold rows written by
// migrations), and what a primary accepts from a secondary is unchanged.
std::vector<std::string> StreamScopesFor(bool peer_is_parent, v1::SiteType peer_type);

// Scopes a peer may send this site: what this site takes from it.
std::vector<std::string> ScopesFrom(const SitePlace& site, bool peer_is_parent);

}  // namespace strata::replication
