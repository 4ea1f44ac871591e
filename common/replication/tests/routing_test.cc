// Replication routing (routing.h): which peers take which scopes, and which
// applied changes a site must log for its other peers. One check per cell
// of the table in routing.h.

#include <catch2/catch.hpp>

#include "common/replication/routing.h"

namespace strata::replication {
namespace {

using v1::SITE_TYPE_CAS;
using v1::SITE_TYPE_PRIMARY;
using v1::SITE_TYPE_SECONDARY;

const SitePlace kCas{SITE_TYPE_CAS, false};
const SitePlace kPrimary{SITE_TYPE_PRIMARY, true};
const SitePlace kStandalonePrimary{SITE_TYPE_PRIMARY, false};
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

TEST_CASE("a site accepts from its parent what the parent sends it, from a child what goes up") {
  CHECK(ScopesFrom(kCas, kFromChild) == Scopes{"global", "global_proxy", "site", "site_proxy"});
  CHECK(ScopesFrom(kPrimary, kFromParent) == Scopes{"global", "global_proxy"});
  CHECK(ScopesFrom(kPrimary, kFromChild) == Scopes{"global", "global_proxy", "site", "site_proxy"});
  CHECK(ScopesFrom(kSecondary, kFromParent) == Scopes{"global_proxy", "site_proxy"});
}

TEST_CASE("the CAS logs global data from one primary for the others, never site data") {
  CHECK(MustLog(kCas, kFromChild, "global"));
  CHECK(MustLog(kCas, kFromChild, "global_proxy"));
  CHECK_FALSE(MustLog(kCas, kFromChild, "site"));
  CHECK_FALSE(MustLog(kCas, kFromChild, "site_proxy"));
  CHECK(LoggedScopes(kCas, kFromChild) == Scopes{"global", "global_proxy"});
}

TEST_CASE("a primary logs from its CAS only what its secondaries take") {
  CHECK_FALSE(MustLog(kPrimary, kFromParent, "global"));
  CHECK(MustLog(kPrimary, kFromParent, "global_proxy"));
  // The CAS sends neither site scope down; had it, only site_proxy would go on.
  CHECK_FALSE(MustLog(kPrimary, kFromParent, "site"));
  CHECK(MustLog(kPrimary, kFromParent, "site_proxy"));
  CHECK(LoggedScopes(kPrimary, kFromParent) == Scopes{"global_proxy"});
}

TEST_CASE(
    "a primary under a CAS logs everything a secondary sends: for the CAS and the other "
    "secondaries") {
  CHECK(MustLog(kPrimary, kFromChild, "global"));
  CHECK(MustLog(kPrimary, kFromChild, "global_proxy"));
  CHECK(MustLog(kPrimary, kFromChild, "site"));
  CHECK(MustLog(kPrimary, kFromChild, "site_proxy"));
  CHECK(LoggedScopes(kPrimary, kFromChild) ==
        Scopes{"global", "global_proxy", "site", "site_proxy"});
}

TEST_CASE("a standalone primary logs from a secondary only what its other secondaries take") {
  CHECK_FALSE(MustLog(kStandalonePrimary, kFromChild, "global"));
  CHECK(MustLog(kStandalonePrimary, kFromChild, "global_proxy"));
  CHECK_FALSE(MustLog(kStandalonePrimary, kFromChild, "site"));
  CHECK(MustLog(kStandalonePrimary, kFromChild, "site_proxy"));
  CHECK(LoggedScopes(kStandalonePrimary, kFromChild) == Scopes{"global_proxy", "site_proxy"});
}

TEST_CASE("a secondary logs nothing it applies: it has no other peer") {
  for (const char* scope : {"global", "global_proxy", "site", "site_proxy"}) {
    INFO(scope);
    CHECK_FALSE(MustLog(kSecondary, kFromParent, scope));
  }
  CHECK(LoggedScopes(kSecondary, kFromParent).empty());
}

}  // namespace strata::replication
