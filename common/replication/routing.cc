#include "common/replication/routing.h"

#include <algorithm>

namespace strata::replication {

v1::SiteType ChildTypeOf(v1::SiteType type) {
  switch (type) {
    case v1::SITE_TYPE_CAS:
      return v1::SITE_TYPE_PRIMARY;
    case v1::SITE_TYPE_PRIMARY:
      return v1::SITE_TYPE_SECONDARY;
    default:
      return v1::SITE_TYPE_UNSPECIFIED;
  }
}

std::vector<std::string> ScopesFor(bool peer_is_parent, v1::SiteType peer_type) {
  if (peer_is_parent) return {kScopeGlobal, kScopeGlobalProxy, kScopeSite, kScopeSiteProxy};
  if (peer_type == v1::SITE_TYPE_SECONDARY) return {kScopeGlobalProxy, kScopeSiteProxy};
  if (peer_type == v1::SITE_TYPE_PRIMARY) return {kScopeGlobal, kScopeGlobalProxy};
  return {};
}

std::vector<std::string> StreamScopesFor(bool peer_is_parent, v1::SiteType peer_type) {
  if (peer_is_parent && peer_type == v1::SITE_TYPE_PRIMARY) return {kScopeSite, kScopeSiteProxy};
  return ScopesFor(peer_is_parent, peer_type);
}

std::vector<std::string> ScopesFrom(const SitePlace& site, bool peer_is_parent) {
  // What a parent sends is what it sends a child of our type; a child may
  // send us what goes up.
  return peer_is_parent ? ScopesFor(false, site.type) : ScopesFor(true, site.type);
}

}  // namespace strata::replication
