#include "mp/locate.h"

#include <optional>
#include <set>

#include "common/net/boundary.h"

namespace strata::mp {

v1::ServiceLocation Locate(const v1::SiteBundle& bundle, const std::vector<std::string>& ips,
                           const std::string& own_address) {
  std::optional<IpAddress> best_width;
  std::string group;
  for (const auto& b : bundle.boundaries()) {
    auto range = ParseBoundary(b.value());
    if (!range) continue;
    for (const auto& ip : ips) {
      auto a = ParseIpAddress(ip);
      if (!a || !range->Contains(*a)) continue;
      IpAddress w = range->Width();
      if (!best_width || w < *best_width) {
        best_width = w;
        group = b.group();
      }
    }
  }
  v1::ServiceLocation out;
  std::string site = bundle.site_code();
  if (!group.empty()) {
    for (const auto& g : bundle.groups()) {
      if (g.name() == group) {
        site = g.assigned_site();
        out.set_boundary_group(group);
      }
    }
  }
  auto add_mps = [&](const std::string& code) {
    if (code == bundle.site_code() && !own_address.empty()) {
      out.add_management_points(own_address);
    }
    for (const auto& s : bundle.systems()) {
      if (s.site_code() != code || s.address() == own_address) continue;
      if (s.role() == "mp") out.add_management_points(s.address());
    }
  };
  add_mps(site);
  if (out.management_points_size() == 0) {
    // A group assigned to a site whose MPs this site does not know: serve
    // the client here rather than send it nowhere.
    site = bundle.site_code();
    out.clear_boundary_group();
    add_mps(site);
  }
  out.set_assigned_site(site);
  // Distribution points: the boundary group's, in its order; then the
  // assigned site's (its default), those online first.
  std::set<std::string> listed;
  auto add_dp = [&](const v1::SiteSystem& s) {
    if (listed.insert(s.address()).second) out.add_distribution_points(s.address());
  };
  for (const auto& g : bundle.groups()) {
    if (g.name() != out.boundary_group()) continue;
    for (const std::string& name : g.distribution_points())
      for (const auto& s : bundle.systems())
        if (s.role() == "dp" && s.name() == name) add_dp(s);
  }
  for (bool online : {true, false})
    for (const auto& s : bundle.systems())
      if (s.role() == "dp" && s.site_code() == site && s.online() == online) add_dp(s);
  return out;
}

}  // namespace strata::mp
