#include <algorithm>
#include <catch2/catch.hpp>
#include <fstream>
#include <sstream>

#include "common/base/config.h"
#include "provider/provider_server.h"
#include "strata/v1/config.pb.h"

using strata::provider::ValidateProviderConfig;

TEST_CASE("the example provider and stratactl configurations parse and validate") {
  strata::v1::ProviderConfig config;
  auto s = strata::LoadTextProtoFile(
      std::string(STRATA_SOURCE_DIR) + "/deploy/examples/provider.conf", &config);
  INFO(s.ToString());
  REQUIRE(s.ok());
  CHECK(ValidateProviderConfig(config).ok());
  strata::v1::StratactlConfig ctl;
  CHECK(strata::LoadTextProtoFile(
            std::string(STRATA_SOURCE_DIR) + "/deploy/examples/stratactl.conf", &ctl)
            .ok());
  CHECK(ctl.server() == "cas.example.net:7443");
}

TEST_CASE("a provider configuration that cannot work is refused, naming the field") {
  strata::v1::ProviderConfig c;
  CHECK_THAT(std::string(ValidateProviderConfig(c).message()), Catch::Contains("database"));
  c.set_database("dbname=x");
  CHECK_THAT(std::string(ValidateProviderConfig(c).message()), Catch::Contains("listen_address"));
  c.set_listen_address("unix:/tmp/x.sock");
  CHECK_THAT(std::string(ValidateProviderConfig(c).message()), Catch::Contains("tls"));
  c.mutable_tls()->set_ca_file("a");
  c.mutable_tls()->set_cert_file("b");
  c.mutable_tls()->set_key_file("c");
  CHECK(ValidateProviderConfig(c).ok());
  c.set_bootstrap_admin(" alice");
  CHECK_THAT(std::string(ValidateProviderConfig(c).message()), Catch::Contains("bootstrap_admin"));
}

TEST_CASE("every permission the built-in roles grant is one the provider knows") {
  // The roles are seeded by the site migration; a typo there would grant nothing.
  std::ifstream in(std::string(STRATA_SOURCE_DIR) +
                   "/common/site/migrations/0003_administration.sql");
  std::stringstream sql;
  sql << in.rdbuf();
  const std::string text = sql.str();
  const auto& known = strata::provider::KnownPermissions();
  size_t start = text.find("INSERT INTO security_roles");
  REQUIRE(start != std::string::npos);
  size_t end = text.find(";", start);
  int checked = 0;
  for (size_t at = text.find("'{", start); at < end; at = text.find("'{", at + 1)) {
    const size_t close = text.find("}'", at);
    std::stringstream list(text.substr(at + 2, close - at - 2));
    for (std::string perm; std::getline(list, perm, ',');) {
      INFO(perm);
      CHECK((perm == "*" || std::find(known.begin(), known.end(), perm) != known.end()));
      ++checked;
    }
  }
  CHECK(checked > 40);
}
