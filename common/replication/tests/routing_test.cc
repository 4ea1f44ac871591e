// Replication routing (routing.h): which peers take which scopes, and what
// a site accepts from each. (What a site forwards follows from the same
// scopes and the changes' replication origins: capture_test.cc.)

#include <catch2/catch.hpp>

#include "common/replication/routing.h"

namespace strata::replication {
namespace {

using v1::SITE_TYPE_CAS;
using v1::SITE_TYPE_PRIMARY;
using v1::SITE_TYPE_SECONDARY;

const SitePlace kCas{SITE_TYPE_CAS, false};
const SitePlace kPrimary{SITE_TYPE_PRIMARY, true};
const SitePlace kSecondary{SITE_TYPE_SECONDARY, true};

constexpr bool kFromParent = true;
constexpr bool kFromChild = false;

using Scopes = std::vector<std::string>;

}  // namespace

TEST_CASE(
    "each peer takes its scopes: a parent all four, a primary the global ones, a secondary "
    "the proxy ones") {
  CHECK(ScopesFor(true, SITE_TYPE_CAS) == Scopes{"global", "global_proxy", "site", "site_proxy"});
  CHECK(ScopesFor(false, SITE_TYPE_PRIMARY) == Scopes{"global", "global_proxy"});
  CHECK(ScopesFor(false, SITE_TYPE_SECONDARY) == Scopes{"global_proxy", "site_proxy"});
  CHECK(ChildTypeOf(SITE_TYPE_CAS) == SITE_TYPE_PRIMARY);
  CHECK(ChildTypeOf(SITE_TYPE_PRIMARY) == SITE_TYPE_SECONDARY);
  CHECK(ChildTypeOf(SITE_TYPE_SECONDARY) == v1::SITE_TYPE_UNSPECIFIED);
}

TEST_CASE(
    "a secondary streams only site data up (it writes no global data), and still snapshots and "
    "accepts every scope") {
  CHECK(StreamScopesFor(true, SITE_TYPE_PRIMARY) == Scopes{"site", "site_proxy"});
  CHECK(ScopesFor(true, SITE_TYPE_PRIMARY) ==
        Scopes{"global", "global_proxy", "site", "site_proxy"});
  // Everyone else streams what it snapshots.
  CHECK(StreamScopesFor(true, SITE_TYPE_CAS) == ScopesFor(true, SITE_TYPE_CAS));
  CHECK(StreamScopesFor(false, SITE_TYPE_PRIMARY) == ScopesFor(false, SITE_TYPE_PRIMARY));
  CHECK(StreamScopesFor(false, SITE_TYPE_SECONDARY) == ScopesFor(false, SITE_TYPE_SECONDARY));
}

TEST_CASE("a site accepts from its parent what the parent sends it, from a child what goes up") {
  CHECK(ScopesFrom(kCas, kFromChild) == Scopes{"global", "global_proxy", "site", "site_proxy"});
  CHECK(ScopesFrom(kPrimary, kFromParent) == Scopes{"global", "global_proxy"});
  CHECK(ScopesFrom(kPrimary, kFromChild) == Scopes{"global", "global_proxy", "site", "site_proxy"});
  CHECK(ScopesFrom(kSecondary, kFromParent) == Scopes{"global_proxy", "site_proxy"});
}

}  // namespace strata::replication
