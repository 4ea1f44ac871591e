#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "common/base/config.h"
#include "provider/provider_server.h"
#include "provider/resource.h"
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

TEST_CASE("every permission the built-in roles grant is one a resource declares") {
  // The roles are seeded by the site migrations (0003, then permissions
  // added as resources come); a typo there would grant nothing.
  const auto& known = strata::provider::KnownPermissions();
  int checked = 0;
  for (const auto& entry : std::filesystem::directory_iterator(std::string(STRATA_SOURCE_DIR) +
                                                               "/common/site/migrations")) {
    std::ifstream in(entry.path());
    std::stringstream sql;
    sql << in.rdbuf();
    const std::string text = sql.str();
    for (size_t start = text.find("security_roles"); start != std::string::npos;
         start = text.find("security_roles", start + 1)) {
      const size_t end = text.find(";", start);
      for (size_t at = text.find("'{", start); at < end; at = text.find("'{", at + 1)) {
        const size_t close = text.find("}'", at);
        std::stringstream list(text.substr(at + 2, close - at - 2));
        for (std::string perm; std::getline(list, perm, ',');) {
          INFO(entry.path() << ": " << perm);
          CHECK((perm == "*" || std::find(known.begin(), known.end(), perm) != known.end()));
          ++checked;
        }
      }
    }
  }
  CHECK(checked > 45);
}

TEST_CASE("resources declare distinct permissions, object.operation, each with a description") {
  std::set<std::string> names, permissions;
  for (const auto& r : strata::provider::Resources()) {
    INFO(r.name);
    CHECK(names.insert(r.name).second);
    CHECK(r.make != nullptr);
    for (const auto& p : r.permissions) {
      const std::string perm = p.name;
      INFO(perm);
      CHECK(permissions.insert(perm).second);
      CHECK(perm.find('.') != std::string::npos);
      CHECK(std::string(p.description).size() > 10);
    }
  }
  CHECK(permissions.size() == strata::provider::KnownPermissions().size());
  CHECK(permissions.count("token.create"));
  CHECK(permissions.count("device.approve"));
}
