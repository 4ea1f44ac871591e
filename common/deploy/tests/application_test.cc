#include "common/deploy/application.h"

#include <catch2/catch.hpp>

#include "common/collections/query.h"

namespace strata::deploy {
namespace {

v1::Application Valid() {
  v1::Application app;
  app.set_name("hello");
  auto* dt = app.add_deployment_types();
  dt->set_name("deb");
  dt->set_install_command("dpkg -i hello.deb");
  dt->set_requirements("os.id = \"debian\" and memory.total_mb >= 512");
  auto* rule = dt->mutable_detection()->add_rules()->mutable_package();
  rule->set_name("hello");
  rule->set_min_version("1.0");
  return app;
}

std::string Message(const absl::Status& s) { return std::string(s.message()); }

TEST_CASE("a well-formed application passes; each malformed field is refused by name") {
  REQUIRE(CheckApplication(Valid()).ok());

  v1::Application app = Valid();
  app.mutable_deployment_types(0)->set_requirements("os.idd = \"debian\"");
  absl::Status s = CheckApplication(app);
  CHECK(s.code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(Message(s), Catch::Contains("deployment type \"deb\": requirements: query:"));
  CHECK_THAT(Message(s), Catch::Contains("os.idd"));

  app = Valid();
  app.mutable_deployment_types(0)->set_install_command(std::string(kMaxCommandBytes + 1, 'x'));
  CHECK_THAT(Message(CheckApplication(app)), Catch::Contains("install_command: at most 8192"));

  app = Valid();
  app.clear_deployment_types();
  CHECK_THAT(Message(CheckApplication(app)), Catch::Contains("deployment_types: at least one"));

  app = Valid();
  app.mutable_deployment_types(0)->mutable_detection()->add_rules()->mutable_file()->set_path("x");
  CHECK_THAT(Message(CheckApplication(app)), Catch::Contains("absolute"));

  app = Valid();
  app.mutable_deployment_types(0)->set_run_as("Bad User");
  CHECK_THAT(Message(CheckApplication(app)), Catch::Contains("not a user name"));

  app = Valid();
  app.add_depends_on("hello");
  CHECK_THAT(Message(CheckApplication(app)), Catch::Contains("cannot depend on itself"));

  app = Valid();
  v1::Detection* d = app.mutable_deployment_types(0)->mutable_detection();
  for (int i = 0; i < kMaxDetectionDepth; ++i) {
    d = d->add_rules()->mutable_group();
  }
  d->add_rules()->mutable_file()->set_path("/x");
  CHECK_THAT(Message(CheckApplication(app)), Catch::Contains("nested more than"));
}

TEST_CASE("return codes: the defaults, and a definition's own codes replace them") {
  v1::DeploymentType dt;
  CHECK(ReturnKindOf(dt, 0) == v1::RETURN_KIND_SUCCESS);
  CHECK(ReturnKindOf(dt, 3010) == v1::RETURN_KIND_SOFT_REBOOT);
  CHECK(ReturnKindOf(dt, 1641) == v1::RETURN_KIND_HARD_REBOOT);
  CHECK(ReturnKindOf(dt, 1618) == v1::RETURN_KIND_RETRY);
  CHECK(ReturnKindOf(dt, 1) == v1::RETURN_KIND_FAILURE);
  auto* rc = dt.add_return_codes();
  rc->set_code(0);
  rc->set_kind(v1::RETURN_KIND_FAILURE);
  rc = dt.add_return_codes();
  rc->set_code(7);
  rc->set_kind(v1::RETURN_KIND_SUCCESS);
  CHECK(ReturnKindOf(dt, 0) == v1::RETURN_KIND_FAILURE);
  CHECK(ReturnKindOf(dt, 7) == v1::RETURN_KIND_SUCCESS);
  CHECK(MaxRunMinutes(dt) == kDefaultMaxRunMinutes);
  CHECK(StateName(v1::DEPLOYMENT_STATE_REQUIREMENTS_NOT_MET) == "requirements_not_met");
}

TEST_CASE("requirements evaluate over a device's own facts as the SQL does") {
  collections::DeviceFacts facts;
  facts["os"] = {{{"id", "debian"}, {"version", "12"}}};
  facts["memory"] = {{{"total_mb", "4096"}}};
  facts["software"] = {{{"name", "openssl"}, {"version", "3.0.11"}},
                       {{"name", "curl"}, {"version", "7.88.1"}}};
  auto eval = [&](const char* q) {
    auto r = collections::EvaluateQuery(q, facts);
    REQUIRE(r.ok());
    return *r;
  };
  CHECK(eval("os.id = \"debian\" and memory.total_mb >= 2048"));
  CHECK_FALSE(eval("memory.total_mb >= 8192"));
  // Versions by numeric runs: 3.0.11 > 3.0.9.
  CHECK(eval("software.name = \"openssl\" and software.version > \"3.0.9\""));
  // One row under "and": no package is both curl and 3.x.
  CHECK_FALSE(
      eval("software.name = \"curl\" and software.version >= \"3\" and "
           "software.version < \"4\""));
  CHECK(eval("not software.name = \"telnet\""));
  CHECK(eval("software.name like \"OPEN%\""));
  CHECK(eval("software.name like \"o_ens%l\""));
  CHECK(eval("software.name like \"%SS%\""));
  CHECK_FALSE(eval("software.name like \"openss\""));
  CHECK_FALSE(eval("software.name like \"open\\\\%\""));  // a literal %: no such name
  // Many wildcards against a long value end at once (no exponential backtracking).
  facts["software"].push_back({{"name", std::string(5000, 'a')}, {"version", "1"}});
  CHECK_FALSE(eval("software.name like \"%a%a%a%a%a%a%a%a%a%a%a%a%a%a%a%a%a%a%a%a%b\""));
  CHECK(eval("os.id in (\"ubuntu\", \"debian\")"));
  // No row of a class (no disks reported): no comparison holds.
  CHECK_FALSE(eval("disk.size_gb > 0"));
  CHECK_FALSE(collections::EvaluateQuery("os.id = ", facts).ok());
}

}  // namespace
}  // namespace strata::deploy
