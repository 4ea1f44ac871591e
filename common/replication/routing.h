#pragma once

// Replication routing in one place: which scopes each peer takes from this
// site, and which changes applied from one peer this site must write to its
// own change log so that its other peers get them.
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
//   its parent              all four
//   a child primary         global, global_proxy
//   a child secondary       global_proxy, site_proxy
//
// A change applied from a peer is logged when another of this site's peers
// takes its scope from this site (MustLog). Peers are known from the site's
// place in the hierarchy, not from who is attached at the moment: a change
// applied while a child attaches must reach it by the log or its snapshot.
//
//   site                applied from   global  global_proxy  site  site_proxy
//   CAS                 a primary      log     log           -     -
//   primary under a CAS its CAS        -       log           n/a   n/a
//   primary under a CAS a secondary    log     log           log   log
//   standalone primary  a secondary    -       log           -     log
//   secondary           its primary    n/a     -             n/a   -
//   (n/a: that peer may not send that scope to this site)
//
// Snapshots read tables, not the log, so routing does not change what a
// re-initialized peer receives.

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

// Scopes a peer may send this site: what this site takes from it.
std::vector<std::string> ScopesFrom(const SitePlace& site, bool peer_is_parent);

// Whether a change of `scope`, applied from the parent (`from_parent`) or
// from a child, must go to this site's log for another peer.
bool MustLog(const SitePlace& site, bool from_parent, std::string_view scope);

// The scopes MustLog() holds for, in ScopesFor() order.
std::vector<std::string> LoggedScopes(const SitePlace& site, bool from_parent);

}  // namespace strata::replication
