#include "common/collections/evaluator.h"

#include <catch2/catch.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tests/fixture/testing.h"

using strata::collections::CheckRule;
using strata::collections::Evaluator;
using strata::testing::PrepareSiteDatabase;
using strata::testing::TestDatabase;

namespace {

// Four devices with known inventory; "delta" belongs to another site.
void AddFleet(const TestDatabase& db) {
  db.Exec("UPDATE collection_evaluation SET enabled = true");
  struct Dev {
    const char* id;
    const char* name;
    const char* site;
    const char* os;
    int64_t mem_mb;
    int cores;
    std::vector<std::pair<const char*, const char*>> software;
  };
  std::vector<Dev> fleet = {
      {"00000000-0000-0000-0000-00000000000a",
       "alpha",
       "P01",
       "Debian GNU/Linux",
       8192,
       4,
       {{"openssl", "3.0.9-1"}, {"bash", "5.2"}}},
      {"00000000-0000-0000-0000-00000000000b",
       "bravo",
       "P01",
       "Debian GNU/Linux",
       2048,
       2,
       {{"openssl", "3.0.11-1"}, {"curl", "7.88.1"}}},
      {"00000000-0000-0000-0000-00000000000c",
       "charlie",
       "P01",
       "Ubuntu",
       16384,
       8,
       {{"openssl", "1.1.1f"}, {"telnet", "0.17"}}},
      {"00000000-0000-0000-0000-00000000000d",
       "delta",
       "P02",
       "Debian GNU/Linux",
       16384,
       8,
       {{"openssl", "1.0.2"}}},
  };
  for (const auto& d : fleet) {
    db.Exec("INSERT INTO devices (id, name, site_code) VALUES ($1, $2, $3)",
            {d.id, d.name, d.site});
    db.Exec(
        "INSERT INTO device_os (device_id, name, version, pretty_name, kernel, architecture, "
        "hostname) VALUES ($1, $2, '12', $2, '6.1.0-13-amd64', 'x86_64', $3)",
        {d.id, d.os, d.name});
    db.Exec("INSERT INTO device_memory (device_id, total_kb, swap_kb) VALUES ($1, $2, 0)",
            {d.id, absl::StrCat(d.mem_mb * 1024)});
    db.Exec(
        "INSERT INTO device_processor (device_id, idx, model, sockets, cores, threads) "
        "VALUES ($1, 0, 'CPU', 1, $2, $2)",
        {d.id, absl::StrCat(d.cores)});
    db.Exec(
        "INSERT INTO device_disk (device_id, name, is_filesystem, model, fs_type, size_bytes, "
        "free_bytes) VALUES ($1, '/', true, '', 'ext4', 107374182400, $2)",
        {d.id, absl::StrCat(int64_t{d.cores} * 10 * 1073741824)});
    for (const auto& [name, version] : d.software) {
      db.Exec(
          "INSERT INTO device_software (device_id, name, architecture, version, source) "
          "VALUES ($1, $2, 'amd64', $3, 'dpkg')",
          {d.id, name, version});
    }
  }
}

std::string Members(const TestDatabase& db, const std::string& collection) {
  return db.Scalar(
      "SELECT coalesce(string_agg(d.name, ',' ORDER BY d.name), '') FROM collection_members m "
      "JOIN devices d ON d.id = m.device_id WHERE m.collection = $1",
      {collection});
}

void AddQueryCollection(const TestDatabase& db, const std::string& name, const std::string& q) {
  db.Exec("INSERT INTO collections (name, limiting) VALUES ($1, 'All Systems')", {name});
  db.Exec(
      "INSERT INTO collection_rules (collection, name, kind, query) VALUES ($1, 'q', "
      "'query', $2)",
      {name, q});
}

}  // namespace

TEST_CASE("query rules select exactly the expected devices of this site") {
  TestDatabase db("coll");
  PrepareSiteDatabase(db, "P01");
  AddFleet(db);
  struct Case {
    std::string query;
    std::string members;
  };
  std::vector<Case> cases = {
      {R"(os.name = "Debian GNU/Linux")", "alpha,bravo"},
      {R"(memory.total_mb >= 4096)", "alpha,charlie"},
      {R"(os.name = "Debian GNU/Linux" and memory.total_mb >= 4096 and software.name = "openssl")"
       R"( and software.version < "3.0.11")",
       "alpha"},
      {R"(software.name = "openssl" and software.version < "3.0.11")", "alpha,charlie"},
      {R"(software.name = "openssl" and software.version >= "3.0.10")", "bravo"},
      // Same-row semantics: curl's version is not openssl's.
      {R"(software.name = "curl" and software.version = "3.0.11-1")", ""},
      {R"(not software.name = "telnet")", "alpha,bravo"},
      {R"(software.name like "OPEN%")", "alpha,bravo,charlie"},
      {R"(software.name in ("curl", "telnet"))", "bravo,charlie"},
      {R"((os.name = "Ubuntu" or memory.total_mb < 4096) and not software.name = "curl")",
       "charlie"},
      {R"(device.name = "alpha")", "alpha"},
      {R"(device.site = "P02")", ""},  // another site's device is that site's to evaluate
      {R"(disk.free_gb > 50)", "charlie"},
      {R"(processor.cores >= 4 and disk.fs_type = "ext4")", "alpha,charlie"},
      {R"(os.kernel >= "6.1.0-9-amd64")", "alpha,bravo,charlie"},
      {R"(os.name = "x'); drop table devices; --")", ""},
  };
  int i = 0;
  for (const auto& c : cases) AddQueryCollection(db, absl::StrCat("c", i++), c.query);
  auto conn = db.Connect();
  Evaluator evaluator("P01");
  auto stats = evaluator.EvaluateChanged(*conn, false);
  INFO(stats.status().ToString());
  REQUIRE(stats.ok());
  CHECK(stats->failed == 0);
  i = 0;
  for (const auto& c : cases) {
    INFO("query: " << c.query);
    CHECK(Members(db, absl::StrCat("c", i++)) == c.members);
  }
  CHECK(Members(db, "All Systems") == "alpha,bravo,charlie");
  CHECK(Members(db, "All Linux Systems") == "alpha,bravo,charlie");
  CHECK(db.ScalarInt("SELECT count(*) FROM devices") == 4);  // the injection did nothing
}

TEST_CASE("include, exclude, direct and limiting rules combine in dependency order") {
  TestDatabase db("coll");
  PrepareSiteDatabase(db, "P01");
  AddFleet(db);
  AddQueryCollection(db, "Debian", R"(os.name = "Debian GNU/Linux")");
  AddQueryCollection(db, "Old OpenSSL", R"(software.name = "openssl" and software.version < "3")");
  // Defined before what it depends on (names sort first): order comes from references.
  db.Exec("INSERT INTO collections (name, limiting) VALUES ('A mix', 'All Linux Systems')");
  db.Exec(
      "INSERT INTO collection_rules (collection, name, kind, ref) VALUES "
      "('A mix', 'inc debian', 'include', 'Debian'), ('A mix', 'inc old', 'include', 'Old "
      "OpenSSL'), ('A mix', 'not bravo', 'exclude', 'Bravo only')");
  db.Exec("INSERT INTO collections (name, limiting) VALUES ('Bravo only', 'Debian')");
  db.Exec(
      "INSERT INTO collection_rules (collection, name, kind, device_id) VALUES ('Bravo only', "
      "'bravo', 'direct', '00000000-0000-0000-0000-00000000000b'), ('Bravo only', 'charlie', "
      "'direct', '00000000-0000-0000-0000-00000000000c')");
  auto conn = db.Connect();
  Evaluator evaluator("P01");
  REQUIRE(evaluator.EvaluateChanged(*conn, false).ok());
  CHECK(Members(db, "Bravo only") == "bravo");  // charlie is outside its limiting collection
  CHECK(Members(db, "A mix") == "alpha,charlie");

  SECTION("a changed rule re-evaluates that collection and what depends on it") {
    db.Exec(
        "UPDATE collection_rules SET query = 'os.name = \"Ubuntu\"' WHERE collection = "
        "'Debian'");
    auto s = evaluator.EvaluateChanged(*conn, false);
    REQUIRE(s.ok());
    CHECK(s->collections == 3);  // Debian, then Bravo only (limited by it), then A mix
    CHECK(Members(db, "Debian") == "charlie");
    CHECK(Members(db, "Bravo only") == "charlie");
    CHECK(Members(db, "A mix") == "");  // charlie, now in Bravo only, is excluded
  }
  SECTION("nothing changed: nothing is evaluated") {
    auto s = evaluator.EvaluateChanged(*conn, false);
    REQUIRE(s.ok());
    CHECK(s->collections == 0);
  }
  SECTION("a deleted collection loses its members") {
    db.Exec("DELETE FROM collection_rules WHERE collection = 'A mix'");
    db.Exec("DELETE FROM collections WHERE name = 'A mix'");
    REQUIRE(evaluator.EvaluateChanged(*conn, false).ok());
    CHECK(db.ScalarInt("SELECT count(*) FROM collection_members WHERE collection = 'A mix'") == 0);
  }
}

TEST_CASE("an inventory change moves a device in or out incrementally") {
  TestDatabase db("coll");
  PrepareSiteDatabase(db, "P01");
  AddFleet(db);
  AddQueryCollection(db, "Has telnet", R"(software.name = "telnet")");
  auto conn = db.Connect();
  Evaluator evaluator("P01");
  REQUIRE(evaluator.EvaluateChanged(*conn, true).ok());
  REQUIRE(evaluator.EvaluateDirty(*conn).ok());  // the fleet's own inserts
  CHECK(db.ScalarInt("SELECT count(*) FROM collection_dirty") == 0);
  CHECK(Members(db, "Has telnet") == "charlie");

  db.Exec(
      "INSERT INTO device_software (device_id, name, architecture, version, source) VALUES "
      "('00000000-0000-0000-0000-00000000000a', 'telnet', 'amd64', '0.17', 'dpkg')");
  db.Exec(
      "DELETE FROM device_software WHERE device_id = '00000000-0000-0000-0000-00000000000c' "
      "AND name = 'telnet'");
  CHECK(db.ScalarInt("SELECT count(*) FROM collection_dirty") == 2);  // queued by the triggers
  auto s = evaluator.EvaluateDirty(*conn);
  REQUIRE(s.ok());
  CHECK(s->devices == 2);
  CHECK(s->added == 1);
  CHECK(s->removed == 1);
  CHECK(Members(db, "Has telnet") == "alpha");
  CHECK(db.ScalarInt("SELECT count(*) FROM collection_dirty") == 0);
}

TEST_CASE("a broken definition fails alone and leaves its membership as it was") {
  TestDatabase db("coll");
  PrepareSiteDatabase(db, "P01");
  AddFleet(db);
  AddQueryCollection(db, "Good", R"(os.name = "Ubuntu")");
  AddQueryCollection(db, "Broken", R"(os.name = "Ubuntu")");
  auto conn = db.Connect();
  Evaluator evaluator("P01");
  REQUIRE(evaluator.EvaluateChanged(*conn, false).ok());
  // Replication can deliver what a provider would refuse: a bad query, a cycle.
  db.Exec("UPDATE collection_rules SET query = 'os.nmae = 1' WHERE collection = 'Broken'");
  db.Exec("INSERT INTO collections (name, limiting) VALUES ('X', 'Y'), ('Y', 'X')");
  auto s = evaluator.EvaluateChanged(*conn, false);
  REQUIRE(s.ok());
  CHECK(s->failed == 3);
  CHECK(Members(db, "Broken") == "charlie");
  CHECK(Members(db, "Good") == "charlie");
  CHECK_THAT(db.Scalar("SELECT error FROM collection_eval WHERE collection = 'Broken'"),
             Catch::Contains("unknown field os.nmae"));
  CHECK_THAT(db.Scalar("SELECT error FROM collection_eval WHERE collection = 'X'"),
             Catch::Contains("cycle"));
}

TEST_CASE("a rule that would close a reference cycle is refused before it is written") {
  TestDatabase db("coll");
  PrepareSiteDatabase(db, "P01");
  db.Exec("INSERT INTO collections (name, limiting) VALUES ('A', 'All Systems'), ('B', 'A')");
  auto conn = db.Connect();
  auto s = conn->Transact(
      [](strata::store::Transaction& tx) { return CheckRule(tx, "A", "include", "B"); });
  CHECK(s.code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(s.message()), Catch::Contains("cycle"));
  auto t = conn->Transact(
      [](strata::store::Transaction& tx) { return CheckRule(tx, "B", "exclude", "Nope"); });
  CHECK(t.code() == absl::StatusCode::kNotFound);
  auto u = conn->Transact([](strata::store::Transaction& tx) {
    return CheckRule(tx, "B", "include", "All Linux Systems");
  });
  CHECK(u.ok());
}

TEST_CASE("a collection deleted before its first full evaluation leaves no members behind") {
  TestDatabase db("coll");
  PrepareSiteDatabase(db, "P01");
  AddFleet(db);
  AddQueryCollection(db, "Short lived", R"(os.name = "Ubuntu")");
  auto conn = db.Connect();
  Evaluator evaluator("P01");
  auto s = evaluator.EvaluateDirty(*conn);  // the fleet's devices, incrementally
  REQUIRE(s.ok());
  REQUIRE(Members(db, "Short lived") == "charlie");
  db.Exec("DELETE FROM collection_rules WHERE collection = 'Short lived'");
  db.Exec("DELETE FROM collections WHERE name = 'Short lived'");
  REQUIRE(evaluator.EvaluateChanged(*conn, false).ok());
  CHECK(db.ScalarInt("SELECT count(*) FROM collection_members WHERE collection = 'Short lived'") ==
        0);
}

TEST_CASE("a report's bookkeeping update of a device does not queue it; a rename does") {
  TestDatabase db("coll");
  PrepareSiteDatabase(db, "P01");
  AddFleet(db);
  db.Exec("DELETE FROM collection_dirty");
  db.Exec("UPDATE devices SET last_seen_at = now(), last_report_seq = last_report_seq + 1");
  CHECK(db.ScalarInt("SELECT count(*) FROM collection_dirty") == 0);
  db.Exec("UPDATE devices SET name = 'alpha2' WHERE name = 'alpha'");
  CHECK(db.ScalarInt("SELECT count(*) FROM collection_dirty") == 1);
}
