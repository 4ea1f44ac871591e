// Global data is the same everywhere, whole rows: every global table at
// the CAS, both primaries and (its global_proxy tables) a secondary, after
// start-up and after an upgrade from sites whose carried-over values
// differed; built-in rows included.
#include <catch2/catch.hpp>
#include <map>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/base/embedded_file.h"
#include "common/replication/migrations.h"
#include "common/store/database.h"
#include "tests/fixture/site_fixture.h"

using namespace strata;
using namespace strata::testing;

namespace strata::site {
extern const EmbeddedFile kSiteMigrations[];
}
using std::chrono::seconds;

namespace {

// Every global table of `site` (global_proxy only at a secondary), each as
// its whole rows in one canonical text.
std::map<std::string, std::string> GlobalTables(SiteProcess& site, bool secondary) {
  std::map<std::string, std::string> out;
  auto conn = site.db().Connect();
  auto tables = conn->Exec(secondary ? "SELECT tbl FROM repl_scope WHERE scope = 'global_proxy'"
                                     : "SELECT tbl FROM repl_scope WHERE scope IN ('global', "
                                       "'global_proxy')");
  REQUIRE(tables.ok());
  for (size_t i = 0; i < tables->size(); ++i) {
    const std::string table = tables->GetString(i, 0);
    auto rows = conn->Exec(absl::StrCat(
        "SELECT coalesce(string_agg(r, E'\\n' ORDER BY r), '') FROM (SELECT to_jsonb(t)::text AS "
        "r FROM ",
        table, " t) x"));
    REQUIRE(rows.ok());
    out[table] = rows->GetString(0, 0);
  }
  return out;
}

// Waits until every global table is the same, whole rows, at the CAS, both
// primaries and (global_proxy tables) the secondary; on a timeout, says
// which differ.
void ExpectGlobalDataIdentical(SiteProcess& cas, SiteProcess& p01, SiteProcess& p02,
                               SiteProcess& s01) {
  std::string differ;
  bool same = WaitFor(
      [&] {
        differ.clear();
        auto top = GlobalTables(cas, false);
        for (SiteProcess* site : {&p01, &p02, &s01}) {
          const bool secondary = site == &s01;
          auto theirs = GlobalTables(*site, secondary);
          for (const auto& [table, rows] : theirs) {
            if (top[table] != rows) {
              absl::StrAppend(&differ, site->code(), " ", table, ":\n  CAS: ", top[table], "\n  ",
                              site->code(), ": ", rows, "\n");
            }
          }
          if (theirs.size() < (secondary ? 1u : top.size())) {
            absl::StrAppend(&differ, site->code(), " has ", theirs.size(), " tables\n");
          }
        }
        return differ.empty();
      },
      seconds(60));
  INFO(differ);
  CHECK(same);
}

}  // namespace

TEST_CASE(
    "every global table is the same, whole rows, at every site after start-up: built-in rows "
    "included") {
  TempDir dir;
  SiteProcess cas("CAS", v1::SITE_TYPE_CAS, dir, "");
  cas.Start();
  // Sites made at different moments: built-in rows must not carry their
  // own times.
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  SiteProcess p01("P01", v1::SITE_TYPE_PRIMARY, dir, cas.address());
  p01.Start();
  SiteProcess p02("P02", v1::SITE_TYPE_PRIMARY, dir, cas.address());
  p02.Start();
  SiteProcess s01("S01", v1::SITE_TYPE_SECONDARY, dir, p01.address());
  s01.Start();
  REQUIRE(WaitFor(
      [&] { return p01.LinkActive("CAS") && p02.LinkActive("CAS") && s01.LinkActive("P01"); },
      seconds(60)));
  ExpectGlobalDataIdentical(cas, p01, p02, s01);
  CHECK(s01.db().Scalar("SELECT _hlc || ' ' || _origin FROM client_settings WHERE builtin") ==
        "1 000");
}

TEST_CASE(
    "after an upgrade from sites whose client settings differed, every global table converges "
    "to the same rows everywhere") {
  TempDir dir;
  SiteProcess cas("CAS", v1::SITE_TYPE_CAS, dir, "");
  SiteProcess p01("P01", v1::SITE_TYPE_PRIMARY, dir, cas.address());
  SiteProcess p02("P02", v1::SITE_TYPE_PRIMARY, dir, cas.address());
  SiteProcess s01("S01", v1::SITE_TYPE_SECONDARY, dir, p01.address());
  // Databases of the version before client settings (migration 0003), each
  // with its own hierarchy-wide client.* value at the moment it upgrades:
  // 0004 carries it into the Default Client Settings of that site.
  for (const auto& [site, poll] : std::vector<std::pair<SiteProcess*, std::string>>{
           {&cas, "600"}, {&p01, "900"}, {&p02, "1200"}, {&s01, "1800"}}) {
    {
      auto conn = site->db().Connect();
      REQUIRE(replication::ApplyReplicationMigrations(*conn).ok());
      REQUIRE(store::ApplyMigrations(*conn, "site", site::kSiteMigrations, 3).ok());
    }
    site->db().Exec("INSERT INTO repl_identity (site_code) VALUES ($1)", {site->code()});
    site->db().Exec(
        "INSERT INTO global_settings (name, value) VALUES ('client.policy_poll_seconds', $1)",
        {poll});
  }
  cas.Start();
  p01.Start();
  p02.Start();
  s01.Start();
  REQUIRE(WaitFor(
      [&] { return p01.LinkActive("CAS") && p02.LinkActive("CAS") && s01.LinkActive("P01"); },
      seconds(60)));
  ExpectGlobalDataIdentical(cas, p01, p02, s01);
  // One of the carried values won everywhere, as the site's own change.
  const std::string poll =
      s01.db().Scalar("SELECT policy_poll_seconds FROM client_settings WHERE builtin");
  CHECK((poll == "600" || poll == "900" || poll == "1200" || poll == "1800"));
  CHECK(s01.db().Scalar("SELECT _origin <> '000' FROM client_settings WHERE builtin") == "t");
}
