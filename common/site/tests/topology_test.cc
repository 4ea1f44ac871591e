#include "common/site/topology.h"

#include <catch2/catch.hpp>

using strata::site::AttachCandidate;
using strata::site::CheckAttach;
using strata::site::KnownSite;
namespace v1 = strata::v1;

namespace {
AttachCandidate Site(const std::string& code, v1::SiteType type) {
  return AttachCandidate{code, type, "site", code};
}
}  // namespace

TEST_CASE("a primary attaches to a CAS and a secondary to a primary") {
  REQUIRE(CheckAttach("CAS", v1::SITE_TYPE_CAS, Site("P01", v1::SITE_TYPE_PRIMARY), {}).ok());
  REQUIRE(CheckAttach("P01", v1::SITE_TYPE_PRIMARY, Site("S01", v1::SITE_TYPE_SECONDARY), {}).ok());
  // Re-attaching where it is already recorded is fine.
  REQUIRE(CheckAttach("CAS", v1::SITE_TYPE_CAS, Site("P01", v1::SITE_TYPE_PRIMARY),
                      KnownSite{"P01", v1::SITE_TYPE_PRIMARY, "CAS"})
              .ok());
}

TEST_CASE("a secondary attaching to a CAS is refused as a placement error") {
  auto s = CheckAttach("CAS", v1::SITE_TYPE_CAS, Site("S01", v1::SITE_TYPE_SECONDARY), {});
  REQUIRE(s.code() == absl::StatusCode::kFailedPrecondition);
  REQUIRE_THAT(std::string(s.message()), Catch::Contains("parent must be a primary site"));
}

TEST_CASE("a primary under a primary and a CAS under anything are refused") {
  REQUIRE(
      CheckAttach("P01", v1::SITE_TYPE_PRIMARY, Site("P02", v1::SITE_TYPE_PRIMARY), {}).code() ==
      absl::StatusCode::kFailedPrecondition);
  REQUIRE(CheckAttach("CAS", v1::SITE_TYPE_CAS, Site("CA2", v1::SITE_TYPE_CAS), {}).code() ==
          absl::StatusCode::kFailedPrecondition);
}

TEST_CASE("a certificate for another site is refused as PermissionDenied") {
  AttachCandidate c{"P01", v1::SITE_TYPE_PRIMARY, "site", "P02"};
  auto s = CheckAttach("CAS", v1::SITE_TYPE_CAS, c, {});
  REQUIRE(s.code() == absl::StatusCode::kPermissionDenied);
  REQUIRE_THAT(std::string(s.message()), Catch::Contains("names site P02"));
  AttachCandidate admin{"P01", v1::SITE_TYPE_PRIMARY, "admin", "alice"};
  REQUIRE(CheckAttach("CAS", v1::SITE_TYPE_CAS, admin, {}).code() ==
          absl::StatusCode::kPermissionDenied);
}

TEST_CASE("a site code used elsewhere in the hierarchy is refused as AlreadyExists") {
  auto s = CheckAttach("P01", v1::SITE_TYPE_PRIMARY, Site("P02", v1::SITE_TYPE_SECONDARY),
                       KnownSite{"P02", v1::SITE_TYPE_PRIMARY, "CAS"});
  REQUIRE(s.code() == absl::StatusCode::kAlreadyExists);
  REQUIRE_THAT(std::string(s.message()), Catch::Contains("primary site under CAS"));
  REQUIRE(CheckAttach("CAS", v1::SITE_TYPE_CAS, Site("CAS", v1::SITE_TYPE_PRIMARY), {}).code() ==
          absl::StatusCode::kAlreadyExists);
}

TEST_CASE("a malformed site code is InvalidArgument") {
  REQUIRE(CheckAttach("CAS", v1::SITE_TYPE_CAS, Site("p1", v1::SITE_TYPE_PRIMARY), {}).code() ==
          absl::StatusCode::kInvalidArgument);
}
