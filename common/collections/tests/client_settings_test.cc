#include "common/collections/client_settings.h"

#include <catch2/catch.hpp>

#include "absl/strings/str_join.h"
#include "common/collections/evaluator.h"
#include "common/policy/client_settings.h"
#include "common/replication/migrations.h"
#include "tests/fixture/testing.h"

namespace strata::site {
extern const EmbeddedFile kSiteMigrations[];
}

using strata::collections::AssignClientSettings;
using strata::collections::Evaluator;
using strata::collections::LoadAssignments;
using strata::collections::LoadClientSettings;
using strata::testing::PrepareSiteDatabase;
using strata::testing::TestDatabase;

namespace {

constexpr char kAlpha[] = "00000000-0000-0000-0000-00000000000a";
constexpr char kBravo[] = "00000000-0000-0000-0000-00000000000b";
constexpr char kCharlie[] = "00000000-0000-0000-0000-00000000000c";
constexpr char kDelta[] = "00000000-0000-0000-0000-00000000000d";

// alpha and bravo run Debian, charlie Ubuntu (all of P01); delta is P02's.
void AddFleet(const TestDatabase& db) {
  db.Exec("UPDATE collection_evaluation SET enabled = true");
  const std::vector<std::vector<std::string>> fleet = {{kAlpha, "alpha", "P01", "Debian"},
                                                       {kBravo, "bravo", "P01", "Debian"},
                                                       {kCharlie, "charlie", "P01", "Ubuntu"},
                                                       {kDelta, "delta", "P02", "Debian"}};
  for (const auto& d : fleet) {
    db.Exec("INSERT INTO devices (id, name, site_code) VALUES ($1, $2, $3)", {d[0], d[1], d[2]});
    db.Exec(
        "INSERT INTO device_os (device_id, name, version, pretty_name, kernel, architecture, "
        "hostname) VALUES ($1, $2, '12', $2, '6.1.0', 'x86_64', $3)",
        {d[0], d[3], d[1]});
  }
  db.Exec("INSERT INTO collections (name, limiting) VALUES ('Debian', 'All Systems')");
  db.Exec(
      "INSERT INTO collection_rules (collection, name, kind, query) VALUES ('Debian', 'q', "
      "'query', 'os.name = \"Debian\"')");
  // fast: poll every minute, for Debian. slow: everything else slower, for all.
  db.Exec(
      "INSERT INTO client_settings (name, priority, policy_poll_seconds) VALUES ('fast', 1, 60)");
  db.Exec(
      "INSERT INTO client_settings (name, priority, policy_poll_seconds, inventory_seconds) "
      "VALUES ('slow', 2, 7200, 3600)");
  db.Exec(
      "INSERT INTO client_setting_deployments (setting, collection) VALUES ('fast', 'Debian'), "
      "('slow', 'All Systems')");
}

std::string Assigned(const TestDatabase& db, const std::string& device) {
  return db.Scalar(
      "SELECT coalesce(string_agg(setting, ',' ORDER BY setting), '') FROM "
      "client_setting_assignments WHERE device_id = $1",
      {device});
}

// What the device's management point would serve it.
strata::v1::ClientSettings Effective(const TestDatabase& db, const std::string& device) {
  auto conn = db.Connect();
  strata::v1::SiteBundle bundle;
  std::vector<std::string> names;
  REQUIRE(conn->Transact([&](strata::store::Transaction& tx) -> absl::Status {
                auto s = LoadClientSettings(tx, &bundle);
                if (!s.ok()) return s;
                auto a = LoadAssignments(tx, {device});
                if (!a.ok()) return a.status();
                names = (*a)[device].settings;
                return absl::OkStatus();
              })
              .ok());
  return strata::policy::EffectiveSettings(bundle, names);
}

// One pass of the primary's collection loop.
strata::collections::AssignStats Pass(const TestDatabase& db, bool all) {
  auto conn = db.Connect();
  Evaluator evaluator("P01");
  REQUIRE(evaluator.EvaluateChanged(*conn, false).ok());
  REQUIRE(evaluator.EvaluateDirty(*conn).ok());
  auto stats = AssignClientSettings(*conn, "P01", all);
  INFO(stats.status().ToString());
  REQUIRE(stats.ok());
  return *stats;
}

}  // namespace

TEST_CASE("custom settings reach the members of their collections, merged by priority") {
  TestDatabase db("csettings");
  PrepareSiteDatabase(db, "P01");
  AddFleet(db);
  auto first = Pass(db, true);
  CHECK(first.added == 5);
  CHECK(Assigned(db, kAlpha) == "fast,slow");
  CHECK(Assigned(db, kBravo) == "fast,slow");
  CHECK(Assigned(db, kCharlie) == "slow");
  CHECK(Assigned(db, kDelta) == "");                           // P02 resolves its own devices
  CHECK(Effective(db, kAlpha).policy_poll_seconds() == 60);    // fast (1) over slow (2)
  CHECK(Effective(db, kAlpha).inventory_seconds() == 3600);    // only slow sets it
  CHECK(Effective(db, kAlpha).heartbeat_seconds() == 604800);  // the default's
  CHECK(Effective(db, kCharlie).policy_poll_seconds() == 7200);
  CHECK(Effective(db, kDelta).policy_poll_seconds() == 3600);
  // The site server tells management points about these three devices.
  CHECK(db.ScalarInt("SELECT count(*) FROM client_setting_changed") == 3);

  SECTION("a pass with nothing changed writes nothing") {
    db.Exec("DELETE FROM client_setting_changed");
    auto again = Pass(db, true);
    CHECK(again.added == 0);
    CHECK(again.removed == 0);
    CHECK(db.ScalarInt("SELECT count(*) FROM client_setting_changed") == 0);
  }
  SECTION("a device that joins a collection gets its settings incrementally") {
    db.Exec("UPDATE device_os SET name = 'Debian' WHERE device_id = $1", {kCharlie});
    auto conn = db.Connect();
    Evaluator evaluator("P01");
    REQUIRE(evaluator.EvaluateDirty(*conn).ok());
    CHECK(db.ScalarInt("SELECT count(*) FROM client_setting_dirty") == 1);  // charlie
    auto step = AssignClientSettings(*conn, "P01", false);
    REQUIRE(step.ok());
    CHECK(step->devices == 1);
    CHECK(step->added == 1);
    CHECK(step->removed == 0);
    CHECK(Assigned(db, kCharlie) == "fast,slow");
    CHECK(Effective(db, kCharlie).policy_poll_seconds() == 60);
    CHECK(db.ScalarInt("SELECT count(*) FROM client_setting_dirty") == 0);
  }
  SECTION("only the kinds whose deployments changed are resolved for every device") {
    auto conn = db.Connect();
    auto before = strata::collections::DeploymentVersions(*conn);
    REQUIRE(before.ok());
    db.Exec(
        "INSERT INTO client_setting_deployments (setting, collection) VALUES ('fast', 'All "
        "Systems')");
    auto after = strata::collections::DeploymentVersions(*conn);
    REQUIRE(after.ok());
    REQUIRE(after->size() == strata::collections::kDeploymentKinds);
    CHECK((*after)[0] != (*before)[0]);  // custom client settings
    for (size_t i = 1; i < after->size(); ++i) CHECK((*after)[i] == (*before)[i]);
    // A pass for live queries only (as after a new query) leaves settings be.
    strata::collections::DeploymentKinds live_queries{};
    live_queries[4] = true;
    auto step = AssignClientSettings(*conn, "P01", live_queries);
    REQUIRE(step.ok());
    CHECK(step->added == 0);
    CHECK(Assigned(db, kCharlie) == "slow");
    strata::collections::DeploymentKinds settings{};
    settings[0] = true;
    step = AssignClientSettings(*conn, "P01", settings);
    REQUIRE(step.ok());
    CHECK(step->added == 1);
    CHECK(Assigned(db, kCharlie) == "fast,slow");
  }
  SECTION("a deployment taken away is taken from every device; a priority change reorders") {
    db.Exec("DELETE FROM client_setting_deployments WHERE setting = 'fast'");
    auto step = Pass(db, true);
    CHECK(step.removed == 2);
    CHECK(Assigned(db, kAlpha) == "slow");
    CHECK(Effective(db, kAlpha).policy_poll_seconds() == 7200);
    db.Exec(
        "INSERT INTO client_setting_deployments (setting, collection) VALUES ('fast', "
        "'All Systems')");
    Pass(db, true);
    CHECK(Effective(db, kCharlie).policy_poll_seconds() == 60);
    db.Exec("UPDATE client_settings SET priority = 3 WHERE name = 'fast'");
    CHECK(Effective(db, kCharlie).policy_poll_seconds() == 7200);  // slow (2) now wins
  }
}

TEST_CASE("where collections are not evaluated nothing is queued for settings") {
  TestDatabase db("csettings");
  PrepareSiteDatabase(db, "P01");
  AddFleet(db);
  db.Exec("UPDATE collection_evaluation SET enabled = false");
  db.Exec(
      "INSERT INTO collection_members (collection, device_id, site_code) VALUES ('Debian', "
      "$1, 'P02')",
      {kDelta});
  CHECK(db.ScalarInt("SELECT count(*) FROM client_setting_dirty") == 0);
  // At a CAS (only a copy of each primary's assignments) nothing waits for
  // management points.
  db.Exec("INSERT INTO sites (code, type, version) VALUES ('P01', 'cas', 'test')");
  db.Exec(
      "INSERT INTO client_setting_assignments (device_id, setting, site_code) VALUES ($1, "
      "'fast', 'P02')",
      {kDelta});
  CHECK(db.ScalarInt("SELECT count(*) FROM client_setting_changed") == 0);
}

TEST_CASE("an upgrade carries the hierarchy's client.* global settings into the default") {
  TestDatabase db("csettings");
  {
    auto conn = db.Connect();
    REQUIRE(strata::replication::ApplyReplicationMigrations(*conn).ok());
    REQUIRE(strata::store::ApplyMigrations(*conn, "site", strata::site::kSiteMigrations, 3).ok());
  }
  db.Exec("INSERT INTO repl_identity (site_code) VALUES ('P01')");
  db.Exec(
      "INSERT INTO global_settings (name, value) VALUES ('client.approval', 'manual'), "
      "('client.policy_poll_seconds', '900'), ('client.splay_seconds', '0'), "
      "('client.inventory_seconds', 'weekly'), ('P01/client.heartbeat_seconds', '60')");
  PrepareSiteDatabase(db, "P01");  // the rest: 0004
  CHECK(db.Scalar("SELECT approval_mode || ' ' || policy_poll_seconds || ' ' || "
                  "inventory_seconds || ' ' || heartbeat_seconds || ' ' || splay_seconds || ' ' "
                  "|| _origin FROM client_settings WHERE builtin") ==
        "manual 900 604800 604800 0 P01");  // not a number, or one site's: defaults
  // Carried-over values are this site's own version (0008) at clock 2
  // (peers get it with their first snapshot): sites which carried different
  // values converge on one version instead of each keeping its own under
  // (1, 000), and any administrator's edit (clocked by time) still wins over
  // them.
  CHECK(db.ScalarInt("SELECT _hlc FROM client_settings WHERE builtin") == 2);

  // Without any, the built-in defaults.
  TestDatabase fresh("csettings");
  PrepareSiteDatabase(fresh, "P01");
  CHECK(fresh.Scalar("SELECT approval_mode || ' ' || policy_poll_seconds || ' ' || "
                     "inventory_seconds || ' ' || heartbeat_seconds || ' ' || splay_seconds FROM "
                     "client_settings WHERE builtin") == "token 3600 604800 604800 300");
  // ... identical at every site, whole rows: the built-in version and time.
  CHECK(fresh.Scalar("SELECT _hlc || ' ' || _origin || ' ' || (updated_at AT TIME ZONE 'UTC') "
                     "FROM client_settings WHERE builtin") == "1 000 2026-01-01 00:00:00");
}
