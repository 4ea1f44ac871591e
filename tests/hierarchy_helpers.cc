#include "tests/hierarchy_helpers.h"

#include <catch2/catch.hpp>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/store/database.h"

namespace strata::testing {

using std::chrono::seconds;

Hierarchy::Hierarchy(SiteOptions cas_options, bool with_p02) {
  cas = std::make_unique<SiteProcess>("CAS", v1::SITE_TYPE_CAS, dir, "", cas_options);
  cas->Start();
  p01 = std::make_unique<SiteProcess>("P01", v1::SITE_TYPE_PRIMARY, dir, cas->address());
  p01->Start();
  if (with_p02) {
    p02 = std::make_unique<SiteProcess>("P02", v1::SITE_TYPE_PRIMARY, dir, cas->address());
    p02->Start();
  }
  s01 = std::make_unique<SiteProcess>("S01", v1::SITE_TYPE_SECONDARY, dir, p01->address());
  s01->Start();
  bool linked = WaitFor(
      [&] {
        return cas->LinkActive("P01") && (!with_p02 || cas->LinkActive("P02")) &&
               p01->LinkActive("S01") && s01->LinkActive("P01") &&
               (!with_p02 || p02->LinkActive("CAS"));
      },
      seconds(60));
  INFO("CAS log:\n" << cas->LogText() << "\nP01 log:\n" << p01->LogText());
  REQUIRE(linked);
}

std::string CountOf(const std::string& where) {
  return absl::StrCat("SELECT count(*) FROM global_settings WHERE ", where);
}

absl::Status WriteSettings(const std::string& conninfo, const std::string& prefix, int rows,
                           std::chrono::milliseconds pause) {
  auto conn = store::Connection::Open(conninfo);
  if (!conn.ok()) return conn.status();
  for (int i = 0; i < rows; ++i) {
    absl::Status s = (*conn)
                         ->Exec("INSERT INTO global_settings (name, value) VALUES ($1, 'w')",
                                {absl::StrCat(prefix, i)})
                         .status();
    if (!s.ok()) return s;
    if (i % 10 == 0) std::this_thread::sleep_for(pause);
  }
  return absl::OkStatus();
}

void RecordWrites(const TestDatabase& db) {
  db.Exec(
      "CREATE TABLE test_writes (name text NOT NULL); "
      "CREATE FUNCTION test_write() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
      "INSERT INTO test_writes SELECT name FROM new_rows; RETURN NULL; END $$; "
      "CREATE TRIGGER test_write_i AFTER INSERT ON global_settings REFERENCING NEW TABLE AS "
      "new_rows FOR EACH STATEMENT EXECUTE FUNCTION test_write(); "
      "CREATE TRIGGER test_write_u AFTER UPDATE ON global_settings REFERENCING NEW TABLE AS "
      "new_rows FOR EACH STATEMENT EXECUTE FUNCTION test_write()");
}

std::string WritesOf(const TestDatabase& db, const std::string& pattern) {
  return db.Scalar(
      "SELECT count(*) || '/' || count(DISTINCT name) FROM test_writes WHERE name "
      "LIKE $1",
      {pattern});
}

}  // namespace strata::testing
