#include "common/base/config.h"

#include <catch2/catch.hpp>

#include "strata/v1/config.pb.h"

TEST_CASE("a text-format site config parses into SiteServerConfig") {
  strata::v1::SiteServerConfig config;
  auto status = strata::ParseTextProto(R"(
      site_code: "P01"
      database: "host=/tmp dbname=p01"
      listen_address: "127.0.0.1:0"
      tls { ca_file: "ca.pem" cert_file: "p01.pem" key_file: "p01.key" }
      replication { batch_max_changes: 500 }
  )",
                                       "p01.conf", &config);
  REQUIRE(status.ok());
  REQUIRE(config.site_code() == "P01");
  REQUIRE(config.tls().cert_file() == "p01.pem");
  REQUIRE(config.replication().batch_max_changes() == 500);
}

TEST_CASE("a config error names the file, line and column of the unknown field") {
  strata::v1::SiteServerConfig config;
  auto status =
      strata::ParseTextProto("site_code: \"P01\"\nsite_kode: \"x\"\n", "p01.conf", &config);
  REQUIRE(status.code() == absl::StatusCode::kInvalidArgument);
  REQUIRE_THAT(std::string(status.message()), Catch::Contains("p01.conf:2:"));
  REQUIRE_THAT(std::string(status.message()), Catch::Contains("site_kode"));
}

TEST_CASE("a missing config file is NotFound with its path") {
  strata::v1::SiteServerConfig config;
  auto status = strata::LoadTextProtoFile("/nonexistent/strata.conf", &config);
  REQUIRE(status.code() == absl::StatusCode::kNotFound);
  REQUIRE_THAT(std::string(status.message()), Catch::Contains("/nonexistent/strata.conf"));
}

TEST_CASE("site codes are three characters A-Z 0-9") {
  REQUIRE(strata::ValidateSiteCode("CAS").ok());
  REQUIRE(strata::ValidateSiteCode("P01").ok());
  REQUIRE_FALSE(strata::ValidateSiteCode("p01").ok());
  REQUIRE_FALSE(strata::ValidateSiteCode("P1").ok());
  REQUIRE_FALSE(strata::ValidateSiteCode("P001").ok());
  REQUIRE_FALSE(strata::ValidateSiteCode("P-1").ok());
}

TEST_CASE("flag overrides set the string fields they name, and only the flags given") {
  strata::v1::SiteServerConfig config;
  config.set_database("from the file");
  config.mutable_tls()->set_key_file("key from the file");
  auto status = strata::OverrideStringFields(&config, {{"site_code", "P01"},
                                                       {"database", ""},
                                                       {"tls.ca_file", "ca.pem"},
                                                       {"issuing_ca.cert_file", "issuing.pem"}});
  REQUIRE(status.ok());
  CHECK(config.site_code() == "P01");
  CHECK(config.database() == "from the file");  // an empty flag leaves it
  CHECK(config.tls().ca_file() == "ca.pem");
  CHECK(config.tls().key_file() == "key from the file");
  CHECK(config.issuing_ca().cert_file() == "issuing.pem");
  for (const char* bad :
       {"no_such_field", "tls.nope", "replication.batch_max_changes", "database.x"}) {
    INFO(bad);
    auto s = strata::OverrideStringFields(&config, {{bad, "v"}});
    CHECK(s.code() == absl::StatusCode::kInvalidArgument);
    CHECK_THAT(std::string(s.message()), Catch::Contains(bad));
  }
}
