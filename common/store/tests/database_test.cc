#include "common/store/database.h"

#include <catch2/catch.hpp>
#include <thread>

#include "common/base/embedded_file.h"
#include "tests/fixture/testing.h"

using strata::store::Connection;
using strata::testing::TestDatabase;

TEST_CASE("a unique violation is AlreadyExists and nothing of the transaction stays") {
  TestDatabase db("store");
  db.Exec("CREATE TABLE t (id int PRIMARY KEY)");
  auto conn = db.Connect();
  auto s = conn->Transact([](strata::store::Transaction& tx) -> absl::Status {
    auto r = tx.Exec("INSERT INTO t VALUES (1)");
    if (!r.ok()) return r.status();
    return tx.Exec("INSERT INTO t VALUES (1)").status();
  });
  REQUIRE(s.code() == absl::StatusCode::kAlreadyExists);
  REQUIRE(db.ScalarInt("SELECT count(*) FROM t") == 0);
}

TEST_CASE("bad data is InvalidArgument, a check violation FailedPrecondition") {
  TestDatabase db("store");
  db.Exec("CREATE TABLE t (n int CHECK (n > 0))");
  auto conn = db.Connect();
  REQUIRE(conn->Exec("SELECT 'abc'::int").status().code() == absl::StatusCode::kInvalidArgument);
  REQUIRE(conn->Exec("INSERT INTO t VALUES (-1)").status().code() ==
          absl::StatusCode::kFailedPrecondition);
}

TEST_CASE("an unreachable server is Unavailable with the reason") {
  auto c =
      Connection::Open("host=/nonexistent-socket-dir port=1 user=x dbname=x connect_timeout=2");
  REQUIRE(c.status().code() == absl::StatusCode::kUnavailable);
  REQUIRE_THAT(std::string(c.status().message()), Catch::Contains("cannot connect"));
}

TEST_CASE("a connection terminated by the server is Unavailable") {
  TestDatabase db("store");
  auto conn = db.Connect();
  std::string pid = conn->Exec("SELECT pg_backend_pid()")->GetString(0, 0);
  db.Exec("SELECT pg_terminate_backend($1::int)", {pid});
  REQUIRE(conn->Exec("SELECT 1").status().code() == absl::StatusCode::kUnavailable);
}

TEST_CASE("a serialization failure is Aborted and Transact retries it") {
  TestDatabase db("store");
  db.Exec("CREATE TABLE c (id int PRIMARY KEY, n int)");
  db.Exec("INSERT INTO c VALUES (1, 0)");
  auto a = db.Connect();
  auto b = db.Connect();
  int attempts = 0;
  auto s = a->Transact(
      [&](strata::store::Transaction& tx) -> absl::Status {
        ++attempts;
        auto r = tx.Exec("SELECT n FROM c WHERE id = 1");
        if (!r.ok()) return r.status();
        if (attempts == 1) {
          // Another session commits a conflicting update under our snapshot.
          REQUIRE(b->Exec("UPDATE c SET n = n + 1 WHERE id = 1").ok());
        }
        return tx.Exec("UPDATE c SET n = n + 10 WHERE id = 1").status();
      },
      strata::store::Isolation::kRepeatableRead, 3);
  REQUIRE(s.ok());
  REQUIRE(attempts == 2);
  REQUIRE(db.ScalarInt("SELECT n FROM c WHERE id = 1") == 11);
  REQUIRE(strata::store::StatusFromSqlState("40001", "could not serialize").code() ==
          absl::StatusCode::kAborted);
}

TEST_CASE("migrations apply once, in order, and a failing one leaves no trace") {
  TestDatabase db("store");
  const strata::EmbeddedFile files[] = {
      {"0002_add.sql", "ALTER TABLE m ADD COLUMN b int;"},
      {"0001_create.sql", "CREATE TABLE m (a int); INSERT INTO m VALUES (1);"},
  };
  auto conn = db.Connect();
  REQUIRE(strata::store::ApplyMigrations(*conn, "demo", files, 2).ok());
  REQUIRE(strata::store::ApplyMigrations(*conn, "demo", files, 2).ok());
  REQUIRE(db.ScalarInt("SELECT count(*) FROM m") == 1);
  REQUIRE(db.ScalarInt("SELECT count(*) FROM schema_migrations WHERE component = 'demo'") == 2);

  const strata::EmbeddedFile bad[] = {
      {"0003_bad.sql", "ALTER TABLE m ADD COLUMN c int; SELECT nope;"}};
  auto s = strata::store::ApplyMigrations(*conn, "demo", bad, 1);
  REQUIRE_FALSE(s.ok());
  REQUIRE_THAT(std::string(s.message()), Catch::Contains("0003_bad.sql"));
  REQUIRE(db.ScalarInt("SELECT count(*) FROM information_schema.columns WHERE table_name = 'm' "
                       "AND column_name = 'c'") == 0);
}

TEST_CASE("a notification on a listened channel wakes AwaitNotification") {
  TestDatabase db("store");
  auto listener = db.Connect();
  REQUIRE(listener->Listen("strata_test").ok());
  REQUIRE(*listener->AwaitNotification(50) == 0);
  db.Exec("SELECT pg_notify('strata_test', 'x')");
  REQUIRE(*listener->AwaitNotification(5000) >= 1);
}

TEST_CASE("a text[] literal survives quotes, backslashes, commas and braces") {
  TestDatabase db("store");
  const std::vector<std::string> values = {"P01", "a\"b", "c\\d", "e,f", "{g}", ""};
  auto conn = db.Connect();
  auto r = conn->Exec(
      "SELECT array_length($1::text[], 1), ($1::text[])[2], ($1::text[])[3], "
      "($1::text[])[4], ($1::text[])[5], ($1::text[])[6]",
      {strata::store::TextArrayLiteral(values)});
  REQUIRE(r.ok());
  REQUIRE(r->GetInt(0, 0) == 6);
  for (int i = 1; i <= 5; ++i) REQUIRE(r->GetString(0, i) == values[i]);
  REQUIRE(strata::store::TextArrayLiteral({}) == "{}");
}

TEST_CASE("a text[] value as PostgreSQL prints it parses back to its elements") {
  TestDatabase db("store");
  auto conn = db.Connect();
  for (const std::vector<std::string>& values : std::vector<std::vector<std::string>>{
           {}, {""}, {"Full Administrator"}, {"P01", "a\"b", "c\\d", "e,f", "{g}", "", "h i"}}) {
    auto r = conn->Exec("SELECT $1::text[]::text", {strata::store::TextArrayLiteral(values)});
    REQUIRE(r.ok());
    INFO(r->GetString(0, 0));
    CHECK(strata::store::ParseTextArray(r->GetString(0, 0)) == values);
  }
}

TEST_CASE("a cached statement is prepared once per connection and the oldest are dropped") {
  TestDatabase db("store");
  auto conn = db.Connect();
  auto prepared = [&] {
    auto r = conn->Exec("SELECT count(*) FROM pg_prepared_statements");
    REQUIRE(r.ok());
    return r->GetInt(0, 0);
  };
  for (int i = 0; i < 3; ++i) {
    auto s = conn->Transact([](strata::store::Transaction& tx) -> absl::Status {
      auto r = tx.ExecCached("SELECT $1::int + 1", {"41"});
      if (!r.ok()) return r.status();
      REQUIRE(r->GetInt(0, 0) == 42);
      return absl::OkStatus();
    });
    REQUIRE(s.ok());
  }
  CHECK(prepared() == 1);
  const size_t n = strata::store::kMaxCachedStatements + 5;
  for (size_t i = 0; i < n; ++i) {
    REQUIRE(conn->Transact([&](strata::store::Transaction& tx) {
                  return tx.ExecCached("SELECT $1::int + " + std::to_string(i), {"1"}).status();
                })
                .ok());
  }
  CHECK(prepared() == static_cast<int64_t>(strata::store::kMaxCachedStatements));
  // A failing statement reports its error like Exec.
  auto bad = conn->Transact([](strata::store::Transaction& tx) {
    return tx.ExecCached("SELECT * FROM no_such_table WHERE x = $1", {"1"}).status();
  });
  CHECK_FALSE(bad.ok());
}
