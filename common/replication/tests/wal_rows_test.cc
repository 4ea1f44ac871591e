#include "common/replication/wal_rows.h"

#include <catch2/catch.hpp>

#include "tests/fixture/testing.h"

using strata::replication::KeyJson;
using strata::replication::RowJson;
using strata::replication::TypeMap;
using strata::store::PgOutputDecoder;
using strata::store::WalEvent;
using strata::store::WalStream;
using strata::testing::TestDatabase;

TEST_CASE("rows and keys read from the WAL are spelled as to_json and the change log spell them") {
  TestDatabase db("walrows");
  db.Exec("CREATE DOMAIN small_count AS int CHECK (VALUE >= 0)");
  db.Exec(
      "CREATE TABLE t (id uuid, n bigint, at timestamptz, name text, flag boolean, "
      "ratio numeric, f float8, day date, local timestamp, doc jsonb, j json, tags text[], "
      "grid int[], c small_count, raw bytea, gone text, PRIMARY KEY (name, id, at, n))");
  db.Exec("CREATE PUBLICATION pub FOR TABLE t");
  auto stream = WalStream::Open(db.conninfo());
  REQUIRE(stream.ok());
  REQUIRE((*stream)->CreateSlot("rows", false).ok());
  // Awkward values: quotes, escapes, control characters, unicode, NULL
  // array elements, nested arrays, NaN, infinities, offsets that are not
  // UTC in the writer's session.
  db.Exec(
      "SET TimeZone = 'Asia/Kolkata'; INSERT INTO t VALUES "
      "('6f1f0a4e-86b1-4a43-9c58-3a1f4c1e0b7a', 42, '2026-11-30 09:14:12.386+05:30', "
      "E'a\"b\\\\c\\n\\t\\b\\f\\x01é', true, 1.50, 0.1, '2026-11-30', '2026-11-30 01:02:03.5', "
      "'{\"k\": [1, \"x\"]}', '{\"a\":  1}', ARRAY['x', NULL, 'y,z', 'q\"r', 'NULL', ''], "
      "'{{1,2},{3,4}}', 7, '\\x00ff', NULL), "
      "('00000000-0000-0000-0000-000000000001', -1, 'infinity', 'n', false, 'NaN', "
      "'-Infinity', '-infinity', '2026-01-01 00:00:00', 'null', '[]', '{}', NULL, 0, '', 'x')");
  REQUIRE((*stream)->Start("rows", 0, {"pub"}).ok());
  PgOutputDecoder decoder;
  std::vector<WalEvent> inserts;
  for (auto& e : strata::testing::ReadWalEvents(**stream, decoder, 1)) {
    if (e.kind == WalEvent::kInsert) inserts.push_back(std::move(e));
  }
  REQUIRE(inserts.size() == 2);

  TypeMap types;
  auto conn = db.Connect();
  REQUIRE(conn->Transact([&](strata::store::Transaction& tx) -> absl::Status {
                auto m = TypeMap::Load(tx);
                if (m.ok()) types = std::move(*m);
                return m.status();
              })
              .ok());
  const std::vector<std::string> key = {"name", "id", "at", "n"};
  for (const auto& e : inserts) {
    bool complete = false;
    std::string row = RowJson(types, *e.relation, e.new_tuple, &complete);
    REQUIRE(complete);
    auto k = KeyJson(types, *e.relation, e.new_tuple, key);
    REQUIRE(k.ok());
    // PostgreSQL's own spelling, in a session of another time zone than
    // the writer's: the stream's values are in UTC, as the site's are.
    const std::string id = e.new_tuple[0].text;
    const std::string want_row =
        db.Scalar("SET TimeZone = 'UTC'; SELECT to_json(t)::text FROM t WHERE id = '" + id + "'");
    const std::string want_key = db.Scalar(
        "SET TimeZone = 'UTC'; SELECT jsonb_build_array(name, id, at, n)::text FROM t "
        "WHERE id = '" +
        id + "'");
    INFO(row);
    REQUIRE(row == want_row);
    REQUIRE(*k == want_key);
  }

  // Without the database's types a domain is not known for a number.
  bool complete = false;
  const auto& first = inserts[0];
  REQUIRE_THAT(RowJson(TypeMap(), *first.relation, first.new_tuple, &complete),
               Catch::Contains("\"c\":\"7\""));
  REQUIRE_THAT(RowJson(types, *first.relation, first.new_tuple, &complete),
               Catch::Contains("\"c\":7"));
  // A key column without a value is refused.
  auto bad = KeyJson(types, *first.relation, first.new_tuple, {"gone"});
  REQUIRE(bad.status().code() == absl::StatusCode::kInvalidArgument);
  REQUIRE(KeyJson(types, *first.relation, first.new_tuple, {"nope"}).status().code() ==
          absl::StatusCode::kInvalidArgument);
}
