#include <catch2/catch.hpp>

#include "common/base/config.h"
#include "common/site/site_server.h"
#include "dp/dp_server.h"
#include "strata/v1/config.pb.h"

namespace {

void CheckExample(const std::string& file, strata::v1::SiteType type) {
  strata::v1::SiteServerConfig config;
  auto s = strata::LoadTextProtoFile(std::string(STRATA_SOURCE_DIR) + "/deploy/examples/" + file,
                                     &config);
  INFO(file << ": " << s.ToString());
  REQUIRE(s.ok());
  REQUIRE(strata::site::ValidateSiteConfig(type, config).ok());
}

}  // namespace

TEST_CASE("the example configurations in deploy/examples parse and validate") {
  CheckExample("cas.conf", strata::v1::SITE_TYPE_CAS);
  CheckExample("p01.conf", strata::v1::SITE_TYPE_PRIMARY);
  CheckExample("s01.conf", strata::v1::SITE_TYPE_SECONDARY);
  strata::v1::DpConfig dp;
  auto s =
      strata::LoadTextProtoFile(std::string(STRATA_SOURCE_DIR) + "/deploy/examples/dp.conf", &dp);
  INFO(s.ToString());
  REQUIRE(s.ok());
  REQUIRE(strata::dp::ValidateDpConfig(dp).ok());
}

TEST_CASE("configurations that cannot work are refused before anything starts, naming the field") {
  strata::v1::SiteServerConfig config;
  REQUIRE(
      strata::ParseTextProto(R"(site_code: "S01" database: "dbname=x" listen_address: "unix:/tmp/x"
      tls { ca_file: "a" cert_file: "b" key_file: "c" })",
                             "s01.conf", &config)
          .ok());
  auto s = strata::site::ValidateSiteConfig(strata::v1::SITE_TYPE_SECONDARY, config);
  REQUIRE(s.code() == absl::StatusCode::kInvalidArgument);
  REQUIRE_THAT(std::string(s.message()), Catch::Contains("parent_address"));
  config.set_parent_address("unix:/tmp/p01");
  REQUIRE(strata::site::ValidateSiteConfig(strata::v1::SITE_TYPE_CAS, config).code() ==
          absl::StatusCode::kInvalidArgument);
  config.clear_tls();
  s = strata::site::ValidateSiteConfig(strata::v1::SITE_TYPE_SECONDARY, config);
  REQUIRE_THAT(std::string(s.message()), Catch::Contains("tls"));
}
