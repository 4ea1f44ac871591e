#include "common/replication/routing.h"

#include <algorithm>

namespace strata::replication {
namespace {

bool Has(const std::vector<std::string>& scopes, std::string_view scope) {
  return std::find(scopes.begin(), scopes.end(), scope) != scopes.end();
}

}  // namespace

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

std::vector<std::string> ScopesFrom(const SitePlace& site, bool peer_is_parent) {
  // What a parent sends is what it sends a child of our type; a child may
  // send us what goes up.
  return peer_is_parent ? ScopesFor(false, site.type) : ScopesFor(true, site.type);
}

bool MustLog(const SitePlace& site, bool from_parent, std::string_view scope) {
  // The sender never gets its own changes back; any other peer that takes
  // the scope needs it logged. From a child, the other peers are the parent
  // and the other children; from the parent, the children.
  const v1::SiteType child = ChildTypeOf(site.type);
  if (child != v1::SITE_TYPE_UNSPECIFIED && Has(ScopesFor(false, child), scope)) return true;
  return !from_parent && site.has_parent && Has(ScopesFor(true, site.type), scope);
}

std::vector<std::string> LoggedScopes(const SitePlace& site, bool from_parent) {
  std::vector<std::string> out;
  for (const std::string& scope : ScopesFor(true, v1::SITE_TYPE_UNSPECIFIED)) {
    if (Has(ScopesFrom(site, from_parent), scope) && MustLog(site, from_parent, scope)) {
      out.push_back(scope);
    }
  }
  return out;
}

}  // namespace strata::replication
