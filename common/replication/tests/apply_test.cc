// Applying a peer's changes: last writer wins, tombstones, validation,
// forwarding, snapshots. Real PostgreSQL.
#include <catch2/catch.hpp>

#include "absl/strings/str_cat.h"
#include "common/replication/applier.h"
#include "common/site/site_server.h"
#include "tests/fixture/testing.h"

using namespace strata;
using testing::TestDatabase;

namespace {

void Prepare(const TestDatabase& db, const std::string& site) {
  testing::PrepareSiteDatabase(db, site);
}

v1::Change Setting(const std::string& name, const std::string& value, int64_t hlc,
                   const std::string& origin) {
  v1::Change c;
  c.set_table("global_settings");
  c.set_op(v1::CHANGE_OP_UPSERT);
  c.set_key(absl::StrCat("[\"", name, "\"]"));
  c.set_row_json(absl::StrCat("{\"name\": \"", name, "\", \"value\": \"", value,
                              "\", \"updated_at\": \"2026-01-01T00:00:00Z\", \"_hlc\": ", hlc,
                              ", \"_origin\": \"", origin, "\"}"));
  c.set_hlc(hlc);
  c.set_origin_site(origin);
  c.set_origin_seq(hlc);
  return c;
}

v1::Change Delete(const std::string& name, int64_t hlc, const std::string& origin) {
  v1::Change c;
  c.set_table("global_settings");
  c.set_op(v1::CHANGE_OP_DELETE);
  c.set_key(absl::StrCat("[\"", name, "\"]"));
  c.set_hlc(hlc);
  c.set_origin_site(origin);
  return c;
}

replication::ApplyPolicy FromParent() {
  replication::ApplyPolicy p;
  p.peer = "CAS";
  p.allowed_scopes = {"global", "global_proxy"};
  p.max_changes = 100;
  return p;
}

absl::StatusOr<replication::ApplyStats> Apply(const TestDatabase& db,
                                              const std::vector<v1::Change>& changes,
                                              const replication::ApplyPolicy& policy) {
  auto conn = db.Connect();
  absl::StatusOr<replication::ApplyStats> stats;
  absl::Status s = conn->Transact([&](store::Transaction& tx) -> absl::Status {
    auto catalog = replication::Catalog::Load(tx);
    if (!catalog.ok()) return catalog.status();
    if (auto b = replication::BeginApply(tx); !b.ok()) return b;
    google::protobuf::RepeatedPtrField<v1::Change> field(changes.begin(), changes.end());
    stats = replication::ApplyChanges(tx, *catalog, policy, field, false);
    return stats.status();
  });
  if (!s.ok()) return s;
  return stats;
}

std::string Value(const TestDatabase& db, const std::string& name) {
  return db.Scalar("SELECT value FROM global_settings WHERE name = $1", {name});
}

}  // namespace

TEST_CASE("the newer clock wins, whatever order versions arrive in") {
  TestDatabase db("apply");
  Prepare(db, "P01");
  REQUIRE(Apply(db, {Setting("x", "new", 200, "P02")}, FromParent()).ok());
  auto stats = Apply(db, {Setting("x", "old", 100, "CAS")}, FromParent());
  REQUIRE(stats.ok());
  REQUIRE(stats->applied == 0);
  REQUIRE(Value(db, "x") == "new");
  REQUIRE(Apply(db, {Setting("x", "newer", 300, "CAS")}, FromParent())->applied == 1);
  REQUIRE(Value(db, "x") == "newer");
  REQUIRE(db.Scalar("SELECT _origin FROM global_settings WHERE name = 'x'") == "CAS");
}

TEST_CASE("equal clocks are broken by site code, the same everywhere") {
  TestDatabase a("apply");
  TestDatabase b("apply");
  Prepare(a, "P01");
  Prepare(b, "P01");
  // Opposite arrival orders converge on the higher site code.
  REQUIRE(Apply(a, {Setting("x", "from-P01", 500, "P01")}, FromParent()).ok());
  REQUIRE(Apply(a, {Setting("x", "from-P02", 500, "P02")}, FromParent()).ok());
  REQUIRE(Apply(b, {Setting("x", "from-P02", 500, "P02")}, FromParent()).ok());
  REQUIRE(Apply(b, {Setting("x", "from-P01", 500, "P01")}, FromParent()).ok());
  REQUIRE(Value(a, "x") == "from-P02");
  REQUIRE(Value(b, "x") == "from-P02");
}

TEST_CASE("a delete leaves a tombstone that stops an older write from bringing the row back") {
  TestDatabase db("apply");
  Prepare(db, "P01");
  REQUIRE(Apply(db, {Setting("x", "v", 100, "CAS")}, FromParent()).ok());
  REQUIRE(Apply(db, {Delete("x", 200, "CAS")}, FromParent())->applied == 1);
  REQUIRE(db.ScalarInt("SELECT count(*) FROM global_settings") == 0);
  REQUIRE(Apply(db, {Setting("x", "stale", 150, "P02")}, FromParent())->applied == 0);
  REQUIRE(db.ScalarInt("SELECT count(*) FROM global_settings") == 0);
  REQUIRE(Apply(db, {Setting("x", "recreated", 250, "P02")}, FromParent())->applied == 1);
  REQUIRE(Value(db, "x") == "recreated");
  // A local write after a delete it saw stamps a clock above the tombstone.
  REQUIRE(Apply(db, {Delete("x", 300, "CAS")}, FromParent()).ok());
  db.Exec("INSERT INTO global_settings (name, value) VALUES ('x', 'local')");
  REQUIRE(db.ScalarInt("SELECT _hlc FROM global_settings WHERE name = 'x'") > 300);
}

TEST_CASE("within one batch the last change of a key wins") {
  TestDatabase db("apply");
  Prepare(db, "P01");
  auto stats = Apply(
      db,
      {Setting("x", "1", 100, "CAS"), Setting("y", "1", 100, "CAS"), Setting("x", "2", 101, "CAS")},
      FromParent());
  REQUIRE(stats.ok());
  REQUIRE(Value(db, "x") == "2");
  REQUIRE(Value(db, "y") == "1");
}

TEST_CASE(
    "applied changes keep their origin and clock; a delete leaves its tombstone; a replay applies "
    "nothing twice") {
  TestDatabase db("apply");
  Prepare(db, "P01");
  std::vector<v1::Change> batch = {Setting("x", "1", 100, "CAS"), Delete("gone", 100, "CAS")};
  REQUIRE(Apply(db, batch, FromParent())->applied == 2);
  // No local capture happened: the apply is not re-stamped as P01's own write.
  REQUIRE(db.Scalar("SELECT _origin || ' ' || _hlc FROM global_settings WHERE name = 'x'") ==
          "CAS 100");
  // The tombstone (published) carries the delete on to this site's peers.
  REQUIRE(db.Scalar("SELECT origin || ' ' || hlc FROM repl_tombstone WHERE key = '[\"gone\"]'") ==
          "CAS 100");
  REQUIRE(Apply(db, batch, FromParent())->applied == 0);
  REQUIRE(db.ScalarInt("SELECT count(*) FROM repl_log") == 0);
}

TEST_CASE("malformed batches are rejected whole with a clear error and nothing applied") {
  TestDatabase db("apply");
  Prepare(db, "P01");
  auto good = Setting("ok", "1", 100, "CAS");
  auto expect_rejected = [&](v1::Change bad, const std::string& message,
                             replication::ApplyPolicy policy = FromParent()) {
    auto stats = Apply(db, {good, bad}, policy);
    INFO(stats.status().ToString());
    REQUIRE_FALSE(stats.ok());
    REQUIRE((stats.status().code() == absl::StatusCode::kInvalidArgument ||
             stats.status().code() == absl::StatusCode::kPermissionDenied));
    REQUIRE_THAT(std::string(stats.status().message()), Catch::Contains(message));
    REQUIRE(db.ScalarInt("SELECT count(*) FROM global_settings") == 0);
    REQUIRE(db.ScalarInt("SELECT count(*) FROM repl_log") == 0);
  };
  auto unknown = Setting("x", "1", 100, "CAS");
  unknown.set_table("users; drop table sites");
  expect_rejected(unknown, "unknown table");

  v1::Change device;
  device.set_table("devices");
  device.set_op(v1::CHANGE_OP_UPSERT);
  device.set_key("[\"7d6c1c1e-0000-0000-0000-000000000001\"]");
  device.set_row_json(
      "{\"id\": \"7d6c1c1e-0000-0000-0000-000000000001\", \"name\": \"pc\", \"site_code\": "
      "\"P02\", \"_hlc\": 100, \"_origin\": \"P02\"}");
  device.set_hlc(100);
  device.set_origin_site("P02");
  expect_rejected(device, "may not come from CAS");  // site data never comes down

  auto bad_json = Setting("x", "1", 100, "CAS");
  bad_json.set_row_json("{\"name\": \"x\", \"value\": ");
  expect_rejected(bad_json, "malformed row");

  auto smuggled = Setting("x", "1", 100, "CAS");
  smuggled.set_row_json("{\"name\": \"x\", \"value\": \"1\"}, {\"name\": \"y\", \"value\": \"2\"}");
  expect_rejected(smuggled, "malformed row");

  auto wrong_key = Setting("x", "1", 100, "CAS");
  wrong_key.set_key("[\"other\"]");
  expect_rejected(wrong_key, "does not match its key");
  auto no_stamp = Setting("x", "1", 100, "CAS");
  no_stamp.set_row_json(R"({"name": "x", "value": "1", "updated_at": "2026-01-01T00:00:00Z"})");
  expect_rejected(no_stamp, "batch rejected");

  auto forged = Setting("x", "1", 100, "CAS");
  forged.set_row_json(
      R"({"name": "x", "value": "1", "updated_at": "2026-01-01T00:00:00Z", "_hlc": 100, "_origin": "P02"})");
  expect_rejected(forged, "is not the change's");

  auto bad_type = Setting("x", "1", 100, "CAS");
  bad_type.set_row_json("{\"name\": \"x\", \"value\": \"1\", \"updated_at\": \"not a time\"}");
  expect_rejected(bad_type, "batch rejected");

  auto no_origin = Setting("x", "1", 100, "");
  expect_rejected(no_origin, "invalid origin");

  auto no_clock = Setting("x", "1", 0, "CAS");
  expect_rejected(no_clock, "no timestamp");

  // A child may only speak for its own subtree.
  replication::ApplyPolicy from_child;
  from_child.peer = "P01";
  from_child.allowed_scopes = {"global", "global_proxy", "site"};
  from_child.allowed_origins = {"P01", "S01"};
  good = Setting("ok", "1", 100, "S01");
  expect_rejected(Setting("x", "1", 100, "P02"), "may not send changes made at P02", from_child);

  replication::ApplyPolicy small = FromParent();
  small.max_changes = 1;
  expect_rejected(Setting("x", "1", 100, "CAS"), "more than the limit", small);
}

TEST_CASE("a snapshot removes rows it speaks for and did not contain, and keeps the others") {
  TestDatabase db("apply");
  Prepare(db, "P01");
  REQUIRE(Apply(db, {Setting("stays", "1", 100, "CAS"), Setting("stale", "1", 100, "CAS")},
                FromParent())
              .ok());
  db.Exec("INSERT INTO global_settings (name, value) VALUES ('mine', 'local')");  // origin P01
  auto conn = db.Connect();
  absl::StatusOr<int64_t> deleted;
  REQUIRE(conn->Transact([&](store::Transaction& tx) -> absl::Status {
                auto catalog = replication::Catalog::Load(tx);
                REQUIRE(catalog.ok());
                REQUIRE(replication::BeginApply(tx).ok());
                REQUIRE(replication::StartSnapshot(tx).ok());
                google::protobuf::RepeatedPtrField<v1::Change> rows;
                *rows.Add() = Setting("stays", "2", 200, "CAS");
                *rows.Add() = Setting("new", "1", 200, "CAS");
                auto applied = replication::ApplyChanges(tx, *catalog, FromParent(), rows, true);
                REQUIRE(applied.ok());
                // The snapshot speaks for every origin but P01's subtree.
                deleted = replication::FinishSnapshot(tx, *catalog, FromParent(),
                                                      {"global_settings"}, {"P01"}, true);
                return deleted.status();
              })
              .ok());
  REQUIRE(*deleted == 1);
  REQUIRE(Value(db, "stays") == "2");
  REQUIRE(Value(db, "new") == "1");
  REQUIRE(Value(db, "mine") == "local");
  REQUIRE(db.ScalarInt("SELECT count(*) FROM global_settings WHERE name = 'stale'") == 0);
}

TEST_CASE("a snapshot cannot clean tables the peer may not send") {
  TestDatabase db("apply");
  Prepare(db, "P01");
  db.Exec("INSERT INTO devices (id, name, site_code) VALUES (gen_random_uuid(), 'pc', 'P01')");
  auto conn = db.Connect();
  absl::StatusOr<int64_t> deleted;
  auto s = conn->Transact([&](store::Transaction& tx) -> absl::Status {
    auto catalog = replication::Catalog::Load(tx);
    REQUIRE(catalog.ok());
    REQUIRE(replication::StartSnapshot(tx).ok());
    // Site data never comes down from a parent, so a parent's snapshot cannot clean it.
    deleted = replication::FinishSnapshot(tx, *catalog, FromParent(), {"devices"}, {"P01"}, true);
    return deleted.status();
  });
  REQUIRE(s.code() == absl::StatusCode::kInvalidArgument);
  REQUIRE_THAT(std::string(s.message()), Catch::Contains("may not come from CAS"));
  REQUIRE(db.ScalarInt("SELECT count(*) FROM devices") == 1);
}

TEST_CASE("a row is one JSON object carrying its stamps once, and nothing else") {
  replication::RowStamps st;
  REQUIRE(replication::ParseRowObject(
      R"({"a": "}{", "_hlc": 42, "b": [1, {"c": "]"}], "_origin": "P01", "n": null})", &st));
  REQUIRE(st.hlc == 42);
  REQUIRE(st.origin == "P01");
  REQUIRE_FALSE(replication::ParseRowObject(R"({"_hlc": 1, "_origin": "P01"}, {"b": 2})", &st));
  REQUIRE_FALSE(replication::ParseRowObject(R"([1])", &st));
  REQUIRE_FALSE(replication::ParseRowObject(R"({"_hlc": 1, "_origin": "\"})", &st));
  REQUIRE_FALSE(replication::ParseRowObject("", &st));
  // Stamps missing, repeated, of the wrong type, or hidden behind escapes.
  REQUIRE_FALSE(replication::ParseRowObject(R"({"a": 1})", &st));
  REQUIRE_FALSE(replication::ParseRowObject(R"({"_hlc": 1, "_hlc": 2, "_origin": "P01"})", &st));
  REQUIRE_FALSE(replication::ParseRowObject(R"({"_hlc": "1", "_origin": "P01"})", &st));
  REQUIRE_FALSE(replication::ParseRowObject(R"({"_hlc": 1.5, "_origin": "P01"})", &st));
  REQUIRE_FALSE(
      replication::ParseRowObject(R"({"_hlc": 1, "\u005fhlc": 2, "_origin": "P01"})", &st));
}

TEST_CASE("a row's key is spelled from its key columns as the change log writes it") {
  replication::RowStamps st;
  std::string key;
  const std::vector<std::string> one = {"name"};
  REQUIRE(replication::ParseRowObject(R"({"name": "a\"b", "_hlc": 1, "_origin": "P01"})", &st, &one,
                                      &key));
  REQUIRE(key == R"(["a\"b"])");
  const std::vector<std::string> two = {"site", "n"};
  REQUIRE(replication::ParseRowObject(R"({"n": 7, "site": "P01", "_hlc": 1, "_origin": "P01"})",
                                      &st, &two, &key));
  REQUIRE(key == R"(["P01", 7])");
  REQUIRE(replication::ParseRowObject(R"({"_hlc": 1, "_origin": "P01"})", &st, &one, &key));
  REQUIRE(key.empty());  // no key column: matches no change's key
  REQUIRE_FALSE(replication::ParseRowObject(
      R"({"name": "a", "name": "b", "_hlc": 1, "_origin": "P01"})", &st, &one, &key));
}

TEST_CASE(
    "rows from a site on an older release, lacking a column this site's table has, keep that "
    "column's default or value instead of nulling it") {
  TestDatabase db("apply");
  Prepare(db, "P01");
  // This site is newer: its release added a column the sender does not know.
  db.Exec("ALTER TABLE global_settings ADD COLUMN note text NOT NULL DEFAULT 'n/a'");
  REQUIRE(Apply(db, {Setting("x", "v1", 100, "CAS")}, FromParent()).ok());
  CHECK(Value(db, "x") == "v1");
  CHECK(db.Scalar("SELECT note FROM global_settings WHERE name = 'x'") == "n/a");  // its default

  // A newer sender sets it; an older one's later change leaves it alone.
  v1::Change newer = Setting("x", "v2", 200, "CAS");
  newer.set_row_json(
      "{\"name\": \"x\", \"value\": \"v2\", \"updated_at\": \"2026-01-01T00:00:00Z\", \"note\": "
      "\"kept\", \"_hlc\": 200, \"_origin\": \"CAS\"}");
  REQUIRE(Apply(db, {newer}, FromParent()).ok());
  auto stats =
      Apply(db, {Setting("x", "v3", 300, "CAS"), Setting("y", "w", 300, "CAS")}, FromParent());
  REQUIRE(stats.ok());
  CHECK(stats->applied == 2);
  CHECK(Value(db, "x") == "v3");
  CHECK(db.Scalar("SELECT note FROM global_settings WHERE name = 'x'") == "kept");
  CHECK(db.Scalar("SELECT note FROM global_settings WHERE name = 'y'") == "n/a");
  // An older sender's change that loses to the newer row changes nothing.
  REQUIRE(Apply(db, {Setting("x", "stale", 250, "CAS")}, FromParent()).ok());
  CHECK(Value(db, "x") == "v3");
}

TEST_CASE(
    "one batch mixing rows with and without a column added by a release applies each row's own "
    "columns (a sender replaying rows from before its upgrade)") {
  TestDatabase db("apply");
  Prepare(db, "P01");
  db.Exec("ALTER TABLE global_settings ADD COLUMN note text NOT NULL DEFAULT 'n/a'");
  auto with_note = [](const std::string& name, const std::string& value, int64_t hlc,
                      const std::string& note) {
    v1::Change c = Setting(name, value, hlc, "CAS");
    c.set_row_json(absl::StrCat("{\"name\": \"", name, "\", \"value\": \"", value,
                                "\", \"updated_at\": \"2026-01-01T00:00:00Z\", \"note\": \"", note,
                                "\", \"_hlc\": ", hlc, ", \"_origin\": \"CAS\"}"));
    return c;
  };
  // Old shape first, then the new shape, then old again; and one key in
  // both shapes, the later change without the column.
  auto stats = Apply(db,
                     {Setting("x", "x1", 100, "CAS"), with_note("y", "y1", 100, "set"),
                      Setting("z", "z1", 100, "CAS"), with_note("w", "w1", 100, "first"),
                      Setting("w", "w2", 200, "CAS")},
                     FromParent());
  REQUIRE(stats.ok());
  CHECK(db.Scalar("SELECT string_agg(name || '=' || value || '/' || note, ' ' ORDER BY name) "
                  "FROM global_settings WHERE name IN ('w', 'x', 'y', 'z')") ==
        "w=w2/first x=x1/n/a y=y1/set z=z1/n/a");
}

TEST_CASE(
    "rows of every column type apply exactly as the sender's to_json spelled them (values go in "
    "as text arrays, one per column)") {
  TestDatabase db("apply");
  Prepare(db, "P01");
  db.Exec("CREATE DOMAIN small_count AS int CHECK (VALUE >= 0)");
  db.Exec("CREATE DOMAIN labels AS text[]");
  db.Exec("CREATE DOMAIN doc AS jsonb");
  db.Exec(
      "CREATE TABLE typed (id int PRIMARY KEY, u uuid, n bigint, at timestamptz, name text, flag "
      "boolean, ratio numeric, f float8, day date, local timestamp, doc jsonb, j json, tags "
      "text[], grid int[], c small_count, raw bytea, short varchar(8), span interval, net cidr, "
      "t time, \"Odd Name\" text, l labels, d doc)");
  db.Exec("SELECT repl_enable('typed', 'global')");
  db.Exec("CREATE TABLE typed_src (LIKE typed)");  // the sender's rows, _hlc and _origin too
  // Awkward values: quotes, backslashes, control characters, non-ASCII and
  // astral characters, NULL and empty elements, nested arrays, NaN,
  // infinities, JSON null and a JSON string in jsonb, and a row of NULLs.
  db.Exec(R"sql(SET TimeZone = 'Asia/Kolkata'; INSERT INTO typed_src VALUES
    (1, '6f1f0a4e-86b1-4a43-9c58-3a1f4c1e0b7a', 42, '2026-11-30 09:14:12.386+05:30',
     E'a"b\\c\n\t\b\f\x01é😀/', true, 1.50, 0.1, '2026-11-30', '2026-11-30 01:02:03.5',
     '{"k": [1, "x\"y", "\u00e9"], "e": "😀"}', '{"a":  1, "b": [null], "c": "\u00e9"}',
     ARRAY['x', NULL, 'y,z', 'q"r', 'NULL', '', E'b\\s', '{}', ' lead'], '{{1,2},{3,4}}', 7,
     '\x00ff', 'abcdefgh', '1 day 02:03:04.5', '10.0.0.0/8', '12:34:56.789', 'it''s', '{"a b",NULL}',
     '"just a string"', 1000, 'CAS'),
    (2, NULL, -1, 'infinity', '', false, 'NaN', '-Infinity', '-infinity', '2026-01-01', 'null',
     '[]', '{}', '{}', 0, '', '', '-1 mons', '::1/128', '00:00', E'\\', '{}', '{"x": 1}', 1001, 'CAS'),
    (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '"a string"', '"s"', NULL, NULL,
     NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 1002, 'CAS'))sql");
  auto rows = [&](const std::string& table) {
    return db.Scalar(
        "SET TimeZone = 'UTC'; SELECT string_agg(to_json(r)::text, E'\\n' ORDER BY id) "
        "FROM " +
        table + " r");
  };
  std::vector<v1::Change> batch;
  for (int id = 1; id <= 3; ++id) {
    v1::Change c;
    c.set_table("typed");
    c.set_op(v1::CHANGE_OP_UPSERT);
    c.set_key(absl::StrCat("[", id, "]"));
    c.set_row_json(db.Scalar(absl::StrCat(
        "SET TimeZone = 'UTC'; SELECT to_json(r)::text FROM typed_src r WHERE id = ", id)));
    c.set_hlc(999 + id);
    c.set_origin_site("CAS");
    batch.push_back(c);
  }
  auto stats = Apply(db, batch, FromParent());
  INFO(stats.status().ToString());
  REQUIRE(stats.ok());
  CHECK(stats->applied == 3);
  CHECK(rows("typed") == rows("typed_src"));

  // Values that cannot be their column's are refused, and nothing applied.
  auto bad = [&](const std::string& column, const std::string& json) {
    v1::Change c = batch[0];
    c.set_key("[9]");
    c.set_row_json(absl::StrCat("{\"id\": 9, \"", column, "\": ", json,
                                ", \"_hlc\": 1000, \"_origin\": \"CAS\"}"));
    auto s = Apply(db, {batch[1], c}, FromParent());
    INFO(column << ": " << json << " -> " << s.status().ToString());
    CHECK(s.status().code() == absl::StatusCode::kInvalidArgument);
    CHECK(db.ScalarInt("SELECT count(*) FROM typed WHERE id = 9") == 0);
  };
  bad("name", R"("nul \u0000 inside")");  // text cannot hold NUL
  bad("name", R"("lone \udc00 surrogate")");
  bad("tags", R"(["unterminated")");
  bad("tags", "5");         // not an array
  bad("n", R"("twelve")");  // not a number
  bad("c", "-1");           // the domain's check
  bad("short", R"("too long for eight")");
}

TEST_CASE("JSON values become PostgreSQL text: strings unescaped, arrays as array literals") {
  using replication::ColumnArray;
  using replication::ColumnKind;
  std::string out;
  REQUIRE(replication::UnescapeJsonString(R"("a\"b\\c\/\n\u00e9\ud83d\ude00")", &out));
  CHECK(out == "a\"b\\c/\n\xc3\xa9\xf0\x9f\x98\x80");
  for (const char* bad :
       {R"("\u0000")", R"("\ud83d")", R"("\ude00x")", R"("\x")", R"("open)", "\"tab\there\""}) {
    out.clear();
    INFO(bad);
    CHECK_FALSE(replication::UnescapeJsonString(bad, &out));
  }
  out.clear();
  REQUIRE(replication::JsonArrayToLiteral(R"([["a\"b", null], ["", "x,y"]])", false, &out));
  CHECK(out == R"({{"a\"b",NULL},{"","x,y"}})");
  out.clear();
  REQUIRE(replication::JsonArrayToLiteral(R"([{"k": [1]}, "s", 2])", true, &out));
  CHECK(out == R"({"{\"k\": [1]}","\"s\"","2"})");
  out.clear();
  CHECK_FALSE(replication::JsonArrayToLiteral("[1, 2", false, &out));
  out.clear();
  CHECK_FALSE(replication::JsonArrayToLiteral("[1] x", false, &out));

  CHECK(replication::KindOfType("jsonb") == ColumnKind::kJson);
  CHECK(replication::KindOfType("json[]") == ColumnKind::kJsonArray);
  CHECK(replication::KindOfType("character varying(8)[]") == ColumnKind::kArray);
  CHECK(replication::KindOfType("timestamp with time zone") == ColumnKind::kScalar);

  ColumnArray a;
  REQUIRE(a.Append("null", ColumnKind::kScalar));
  REQUIRE(a.Append(R"("q\"")", ColumnKind::kScalar));
  REQUIRE(a.Append("12.5", ColumnKind::kScalar));
  REQUIRE_FALSE(a.Append(R"("\u0000")", ColumnKind::kScalar));  // refused, nothing added
  REQUIRE(a.Append(R"({"a": "b"})", ColumnKind::kJson));
  CHECK(std::move(a).Finish() == R"({NULL,"q\"","12.5","{\"a\": \"b\"}"})");
}
