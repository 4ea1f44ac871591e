#include "mp/locate.h"

#include "catch2/catch.hpp"
#include "common/net/boundary.h"

namespace strata::mp {
namespace {

v1::SiteBundle Bundle() {
  v1::SiteBundle b;
  b.set_site_code("P01");
  auto add_boundary = [&](const char* name, const char* value, const char* group) {
    auto* x = b.add_boundaries();
    x->set_name(name);
    x->set_value(value);
    x->set_group(group);
  };
  add_boundary("hq", "10.0.0.0/8", "hq");
  add_boundary("branch", "10.20.0.10-10.20.0.200", "branch");
  add_boundary("v6", "fd00:1::/64", "branch");
  auto add_group = [&](const char* name, const char* site) {
    auto* g = b.add_groups();
    g->set_name(name);
    g->set_assigned_site(site);
  };
  add_group("hq", "P01");
  add_group("branch", "S01");
  auto add_mp = [&](const char* site, const char* addr) {
    auto* s = b.add_systems();
    s->set_site_code(site);
    s->set_role("mp");
    s->set_address(addr);
  };
  add_mp("P01", "p01-mp1:443");
  add_mp("P01", "p01-mp2:443");
  add_mp("S01", "s01-mp:443");
  return b;
}

TEST_CASE("locate: the smallest matching boundary decides the site") {
  auto loc = Locate(Bundle(), {"10.20.0.50"}, "p01-mp1:443");
  CHECK(loc.assigned_site() == "S01");
  CHECK(loc.boundary_group() == "branch");
  REQUIRE(loc.management_points_size() == 1);
  CHECK(loc.management_points(0) == "s01-mp:443");

  loc = Locate(Bundle(), {"10.20.0.201"}, "p01-mp1:443");  // outside the range, inside /8
  CHECK(loc.assigned_site() == "P01");
  REQUIRE(loc.management_points_size() == 2);
  CHECK(loc.management_points(0) == "p01-mp1:443");  // the answering MP first
  CHECK(loc.management_points(1) == "p01-mp2:443");
}

TEST_CASE("locate: IPv6 subnets, and the site default without a match") {
  CHECK(Locate(Bundle(), {"fd00:1::42/64"}, "x").assigned_site() == "S01");
  auto loc = Locate(Bundle(), {"192.168.1.1"}, "p01-mp1:443");
  CHECK(loc.assigned_site() == "P01");
  CHECK(loc.boundary_group().empty());
}

TEST_CASE("locate: boundary values are checked") {
  CHECK(CheckBoundaryValue("10.1.0.0/16").ok());
  CHECK(CheckBoundaryValue("10.1.0.10-10.1.0.20").ok());
  CHECK(CheckBoundaryValue("fd00::/8").ok());
  CHECK_FALSE(CheckBoundaryValue("10.1.0.0/33").ok());
  CHECK_FALSE(CheckBoundaryValue("10.1.0.20-10.1.0.10").ok());
  CHECK_FALSE(CheckBoundaryValue("10.1.0.1-fd00::1").ok());
  CHECK_FALSE(CheckBoundaryValue("'; drop table boundaries; --").ok());
}

}  // namespace
}  // namespace strata::mp
