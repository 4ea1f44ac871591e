// Change capture and log reading against a real PostgreSQL database.
#include <catch2/catch.hpp>
#include <random>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/base/status.h"
#include "common/replication/change_log.h"
#include "common/site/site_server.h"
#include "tests/fixture/testing.h"

using namespace strata;
using replication::Position;
using testing::TestDatabase;

namespace {

void Prepare(const TestDatabase& db, const std::string& site) {
  testing::PrepareSiteDatabase(db, site);
}

replication::PeerFilter Down(const std::string& peer = "P99") {
  replication::PeerFilter f;
  f.peer = peer;
  f.scopes = {"global", "global_proxy"};
  return f;
}

replication::LogBatch Read(store::Connection& conn, const Position& after,
                           const replication::PeerFilter& filter, int max) {
  absl::StatusOr<replication::LogBatch> batch;
  REQUIRE(conn.Transact([&](store::Transaction& tx) {
                batch = replication::ReadLog(tx, after, filter, max);
                return batch.status();
              })
              .ok());
  return *batch;
}

}  // namespace

TEST_CASE("a write to a replicated table and its change record commit together") {
  TestDatabase db("capture");
  Prepare(db, "CAS");
  db.Exec("INSERT INTO global_settings (name, value) VALUES ('a', '1')");
  REQUIRE(db.ScalarInt("SELECT count(*) FROM repl_log WHERE tbl = 'global_settings'") == 1);
  REQUIRE(db.Scalar("SELECT _origin FROM global_settings WHERE name = 'a'") == "CAS");
  REQUIRE(db.ScalarInt("SELECT _hlc FROM global_settings WHERE name = 'a'") > 0);

  // A rolled-back write leaves no change behind.
  auto conn = db.Connect();
  auto s = conn->Transact(
      [](store::Transaction& tx) -> absl::Status {
        auto r = tx.Exec("INSERT INTO global_settings (name, value) VALUES ('b', '2')");
        if (!r.ok()) return r.status();
        return absl::AbortedError("give up");
      },
      store::Isolation::kReadCommitted, 1);
  REQUIRE(s.code() == absl::StatusCode::kAborted);
  REQUIRE(db.ScalarInt("SELECT count(*) FROM repl_log") == 1);
}

TEST_CASE("a transaction's changes carry its transaction id; deletes leave tombstones") {
  TestDatabase db("capture");
  Prepare(db, "CAS");
  db.Exec(
      "INSERT INTO global_settings (name, value) SELECT 'k' || g, 'v' FROM generate_series(1, 50) "
      "g");
  db.Exec("UPDATE global_settings SET value = 'w' WHERE name = 'k1'");
  db.Exec("DELETE FROM global_settings WHERE name = 'k2'");
  REQUIRE(db.ScalarInt("SELECT count(DISTINCT xid) FROM repl_log") == 3);
  REQUIRE(db.ScalarInt("SELECT count(*) FROM repl_log") == 52);
  REQUIRE(db.Scalar("SELECT op FROM repl_log ORDER BY id DESC LIMIT 1") == "D");
  REQUIRE(db.ScalarInt("SELECT count(*) FROM repl_tombstone WHERE key = '[\"k2\"]'") == 1);
  // An update stamps a clock value above the row's previous one.
  REQUIRE(db.ScalarInt(
              "SELECT count(*) FROM repl_log a JOIN repl_log b ON a.key = b.key AND a.id < b.id "
              "WHERE a.key = '[\"k1\"]' AND b.hlc > a.hlc") == 1);
}

TEST_CASE(
    "eight concurrent writers committing out of order: the reader skips nothing and repeats "
    "nothing") {
  TestDatabase db("capture");
  Prepare(db, "CAS");
  constexpr int kWriters = 8;
  constexpr int kPerWriter = 60;
  db.Exec("CREATE TABLE committed (seq bigserial, name text)");
  std::atomic<int> writers_done{0};
  std::vector<std::thread> writers;
  std::vector<absl::Status> results(kWriters);  // checked after join: no asserts in threads
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      auto conn = store::Connection::Open(db.conninfo());
      results[w] = conn.status();
      std::mt19937 rng(w);
      for (int i = 0; i < kPerWriter && results[w].ok(); ++i) {
        // Insert first, then hold the transaction open a random while, so
        // log ids are handed out in one order and commits land in another.
        std::string sleep = absl::StrCat(std::uniform_int_distribution<int>(0, 8)(rng) / 1000.0);
        results[w] = (*conn)->Transact([&](store::Transaction& tx) -> absl::Status {
          auto r = tx.Exec("INSERT INTO global_settings (name, value) VALUES ($1, 'x')",
                           {absl::StrCat("w", w, "-", i)});
          if (!r.ok()) return r.status();
          return tx.Exec("SELECT pg_sleep($1::float8)", {sleep}).status();
        });
        // Commit order, as seen right after each commit.
        if (results[w].ok()) {
          results[w] =
              (*conn)
                  ->Exec("INSERT INTO committed (name) VALUES ($1)", {absl::StrCat("w", w, "-", i)})
                  .status();
        }
      }
      writers_done++;  // also on failure, so the reader below stops
    });
  }
  // The reader runs while the writers commit.
  auto reader = db.Connect();
  std::multiset<std::string> seen;
  Position pos{0, replication::kWholeTransaction};
  int reads = 0;
  while (true) {
    bool finished = writers_done.load() == kWriters;
    auto batch = Read(*reader, pos, Down(), 7);
    ++reads;
    for (const auto& c : batch.changes) seen.insert(c.key());
    REQUIRE(pos <= batch.end);
    pos = batch.end;
    if (finished && batch.changes.empty()) break;
  }
  for (auto& t : writers) t.join();
  for (const auto& r : results) REQUIRE(r.ok());
  REQUIRE(reads > 10);
  REQUIRE(seen.size() == kWriters * kPerWriter);
  for (int w = 0; w < kWriters; ++w) {
    for (int i = 0; i < kPerWriter; ++i) {
      REQUIRE(seen.count(absl::StrCat("[\"w", w, "-", i, "\"]")) == 1);
    }
  }
  // And log rows really were committed out of the order they were written in.
  REQUIRE(
      db.ScalarInt("SELECT count(*) FROM (SELECT c.seq, lag(c.seq) OVER (ORDER BY l.id) AS prev "
                   "FROM repl_log l JOIN committed c ON l.key = '[\"' || c.name || '\"]') x "
                   "WHERE seq < prev") > 0);
}

TEST_CASE("set-based capture: keys, moved keys, re-inserted keys, one entry per row") {
  TestDatabase db("capture");
  Prepare(db, "P01");
  db.Exec(
      "CREATE TABLE t_multi (a uuid, b text, n integer, v text, PRIMARY KEY (a, b, n)); "
      "SELECT repl_enable('t_multi', 'site')");
  const std::string a = "00000000-0000-4000-8000-00000000000a";
  db.Exec("INSERT INTO t_multi SELECT $1::uuid, 'x' || g, g, 'v' FROM generate_series(1, 300) g",
          {a});
  // One entry per row of the statement, keyed as the apply path keys rows.
  REQUIRE(db.ScalarInt("SELECT count(*) FROM repl_log WHERE tbl = 't_multi'") == 300);
  REQUIRE(db.ScalarInt("SELECT count(*) FROM repl_log l JOIN t_multi t ON l.key = "
                       "repl_key(to_jsonb(t), ARRAY['a', 'b', 'n']) AND l.hlc = t._hlc AND "
                       "l.origin = 'P01' AND (l.row_data ->> 'v') = t.v") == 300);
  // An update that moves a row to another key deletes the old key.
  db.Exec("UPDATE t_multi SET n = 1000 WHERE b = 'x1'");
  REQUIRE(db.Scalar(
              "SELECT string_agg(op::text || ' ' || key, ',' ORDER BY op) FROM repl_log WHERE id > "
              "(SELECT max(id) - 2 FROM repl_log)") ==
          absl::StrCat("D [\"", a, "\", \"x1\", 1],U [\"", a, "\", \"x1\", 1000]"));
  REQUIRE(db.ScalarInt("SELECT count(*) FROM repl_tombstone WHERE tbl = 't_multi'") == 1);
  // A plain update logs the new row image only: no delete, no tombstone.
  const int64_t deletes = db.ScalarInt("SELECT count(*) FROM repl_log WHERE op = 'D'");
  db.Exec("UPDATE t_multi SET v = 'w' WHERE n <= 10");
  REQUIRE(db.ScalarInt("SELECT count(*) FROM repl_log WHERE op = 'D'") == deletes);
  REQUIRE(db.ScalarInt("SELECT count(*) FROM repl_tombstone WHERE tbl = 't_multi'") == 1);
  REQUIRE(db.ScalarInt("SELECT count(*) FROM repl_log WHERE op = 'U' AND row_data ->> 'v' = 'w'") ==
          9);
  // A key deleted and written again in the same transaction (the same
  // millisecond, most likely) comes back with a clock above its tombstone,
  // in the row and in the log; other rows of the statement are untouched.
  auto conn = db.Connect();
  REQUIRE(conn->Transact([&](store::Transaction& tx) -> absl::Status {
                RETURN_IF_ERROR(tx.Exec("DELETE FROM t_multi WHERE n = 5").status());
                return tx
                    .Exec(
                        "INSERT INTO t_multi VALUES ($1::uuid, 'x5', 5, 'again'), "
                        "($1::uuid, 'new', 7, 'n')",
                        {a})
                    .status();
              })
              .ok());
  REQUIRE(db.ScalarInt("SELECT count(*) FROM t_multi t JOIN repl_tombstone tb ON tb.key = "
                       "repl_key(to_jsonb(t), ARRAY['a', 'b', 'n']) WHERE t._hlc > tb.hlc") == 1);
  REQUIRE(db.ScalarInt(
              "SELECT count(*) FROM repl_log l JOIN t_multi t ON l.key = repl_key(to_jsonb(t), "
              "ARRAY['a', 'b', 'n']) WHERE t.b IN ('x5', 'new') AND l.op = 'U' AND l.hlc = t._hlc "
              "AND (l.row_data ->> '_hlc')::bigint = t._hlc") == 2);
  // Deterministically: a tombstone ahead of the clock (a peer's delete from
  // a site whose clock runs fast) makes the insert take a clock above it.
  db.Exec(
      "INSERT INTO repl_tombstone (tbl, key, hlc, origin) SELECT 't_multi', "
      "jsonb_build_array($1::uuid, 'ahead', 1)::text, repl_hlc_now() + (3600000::bigint << 16), "
      "'P02'",
      {a});
  db.Exec("INSERT INTO t_multi VALUES ($1::uuid, 'ahead', 1, 'v'), ($1::uuid, 'plain', 1, 'v')",
          {a});
  REQUIRE(db.ScalarInt("SELECT count(*) FROM t_multi t JOIN repl_tombstone tb ON tb.key = "
                       "repl_key(to_jsonb(t), ARRAY['a', 'b', 'n']) WHERE t.b = 'ahead' AND "
                       "t._hlc = tb.hlc + 1") == 1);
  REQUIRE(db.ScalarInt("SELECT count(*) FROM t_multi WHERE b = 'plain' AND _hlc < "
                       "repl_hlc_now() + (60000::bigint << 16)") == 1);
  REQUIRE(
      db.ScalarInt("SELECT count(*) FROM repl_log l JOIN t_multi t ON l.key = "
                   "repl_key(to_jsonb(t), ARRAY['a', 'b', 'n']) WHERE t.b IN ('ahead', 'plain') "
                   "AND l.hlc = t._hlc AND (l.row_data ->> '_hlc')::bigint = t._hlc") == 2);
  // An upsert that updates (ON CONFLICT DO UPDATE) logs the new image.
  db.Exec(
      "INSERT INTO t_multi VALUES ($1::uuid, 'plain', 1, 'upserted') ON CONFLICT (a, b, n) DO "
      "UPDATE SET v = EXCLUDED.v",
      {a});
  REQUIRE(db.ScalarInt("SELECT count(*) FROM repl_log WHERE row_data ->> 'v' = 'upserted'") == 1);
  // A statement that touches nothing logs nothing.
  const int64_t before = db.ScalarInt("SELECT count(*) FROM repl_log");
  db.Exec("UPDATE t_multi SET v = 'z' WHERE false");
  db.Exec("DELETE FROM t_multi WHERE false");
  REQUIRE(db.ScalarInt("SELECT count(*) FROM repl_log") == before);
}

TEST_CASE("a replicated table written before the database has a site code is refused") {
  TestDatabase db("capture");
  Prepare(db, "P01");
  db.Exec("DELETE FROM repl_identity");
  auto conn = db.Connect();  // a new session: nothing cached
  auto s = conn->Transact([](store::Transaction& tx) {
    return tx.Exec("INSERT INTO global_settings (name, value) VALUES ('a', '1')").status();
  });
  INFO(s.ToString());
  REQUIRE_FALSE(s.ok());
  REQUIRE(std::string(s.message()).find("before this database was given a site code") !=
          std::string::npos);
}

TEST_CASE("a transaction larger than a batch is read in parts and resumed inside") {
  TestDatabase db("capture");
  Prepare(db, "CAS");
  db.Exec(
      "INSERT INTO global_settings (name, value) SELECT 'k' || g, 'v' FROM generate_series(1, 25) "
      "g");
  db.Exec("INSERT INTO global_settings (name, value) VALUES ('after', 'v')");
  auto conn = db.Connect();
  auto b1 = Read(*conn, Position{0, replication::kWholeTransaction}, Down(), 10);
  REQUIRE(b1.changes.size() == 10);
  REQUIRE(b1.end.log_id != replication::kWholeTransaction);
  auto b2 = Read(*conn, b1.end, Down(), 10);
  auto b3 = Read(*conn, b2.end, Down(), 10);
  REQUIRE(b2.changes.size() == 10);
  REQUIRE(b2.end.log_id != replication::kWholeTransaction);
  // The rest of the big transaction and the next one.
  REQUIRE(b3.changes.size() == 6);
  REQUIRE(b3.changes[5].key() == "[\"after\"]");
  REQUIRE(b3.end.log_id == replication::kWholeTransaction);
  auto b4 = Read(*conn, b3.end, Down(), 10);
  REQUIRE(b4.changes.empty());
  REQUIRE_FALSE(b4.end < b3.end);
}

TEST_CASE("a batch stops at its byte budget and resumes after the last change it took") {
  TestDatabase db("capture");
  Prepare(db, "CAS");
  db.Exec(
      "INSERT INTO global_settings (name, value) SELECT 'big' || g, repeat('x', 1000) FROM "
      "generate_series(1, 10) g");
  auto conn = db.Connect();
  absl::StatusOr<replication::LogBatch> b1, b2;
  REQUIRE(conn->Transact([&](store::Transaction& tx) {
                b1 = replication::ReadLog(tx, Position{0, replication::kWholeTransaction}, Down(),
                                          100, 3000);
                return b1.status();
              })
              .ok());
  REQUIRE(b1->changes.size() == 3);  // each change is over 1000 bytes
  REQUIRE(b1->end == b1->positions.back());
  REQUIRE(conn->Transact([&](store::Transaction& tx) {
                b2 = replication::ReadLog(tx, b1->end, Down(), 100, 1);
                return b2.status();
              })
              .ok());
  REQUIRE(b2->changes.size() == 1);  // always at least one
  REQUIRE(b2->changes[0].key() == "[\"big4\"]");
}

TEST_CASE("a peer is not sent what it sent, nor scopes it does not take") {
  TestDatabase db("capture");
  Prepare(db, "P01");
  db.Exec("INSERT INTO devices (id, name, site_code) VALUES (gen_random_uuid(), 'pc1', 'P01')");
  db.Exec("INSERT INTO global_settings (name, value) VALUES ('local', 'v')");
  // A change that came from the CAS.
  db.Exec(
      "INSERT INTO repl_log (tbl, scope, op, key, row_data, hlc, origin, origin_seq, "
      "received_from) VALUES ('global_settings', 'global_proxy', 'U', '[\"remote\"]', "
      "'{\"name\":\"remote\"}', 1, 'CAS', 9, 'CAS')");
  auto conn = db.Connect();
  auto to_cas =
      Read(*conn, Position{0, replication::kWholeTransaction},
           replication::PeerFilter{"CAS", {"global", "global_proxy", "site"}, {}, false}, 100);
  REQUIRE(to_cas.changes.size() == 2);  // device + local setting, not the CAS's own change
  auto to_secondary = Read(*conn, Position{0, replication::kWholeTransaction},
                           replication::PeerFilter{"S01", {"global_proxy"}, {}, false}, 100);
  REQUIRE(to_secondary.changes.size() == 2);  // both settings, no device (site data goes up only)
  for (const auto& c : to_secondary.changes) REQUIRE(c.table() == "global_settings");
  // The forwarded change keeps its origin and origin sequence.
  bool found = false;
  for (const auto& c : to_secondary.changes) {
    if (c.key() == "[\"remote\"]") {
      found = true;
      REQUIRE(c.origin_site() == "CAS");
      REQUIRE(c.origin_seq() == 9);
    }
  }
  REQUIRE(found);
}

TEST_CASE("pruning drops what every peer acknowledged, and a peer behind it needs a snapshot") {
  TestDatabase db("capture");
  Prepare(db, "CAS");
  for (int i = 0; i < 5; ++i)
    db.Exec(absl::StrCat("INSERT INTO global_settings VALUES ('k", i, "', 'v')"));
  auto xid = [&](int i) {
    return db.ScalarInt(
        absl::StrCat("SELECT xid::text::bigint FROM repl_log ORDER BY id OFFSET ", i, " LIMIT 1"));
  };
  const int64_t x2 = xid(1), x3 = xid(2), x4 = xid(3);
  const std::string whole = std::to_string(replication::kWholeTransaction);
  db.Exec("INSERT INTO repl_outbound (peer, xid, log_id) VALUES ('P01', $1, $3), ('P02', $2, $3)",
          {std::to_string(x3), std::to_string(x4), whole});
  auto conn = db.Connect();
  absl::StatusOr<int64_t> pruned;
  absl::StatusOr<replication::LogHead> head;
  REQUIRE(conn->Transact([&](store::Transaction& tx) {
                pruned = replication::PruneLog(tx, 3600, {"P01", "P02"});
                head = replication::ReadLogHead(tx);
                return pruned.status();
              })
              .ok());
  REQUIRE(*pruned == x3 + 1);
  REQUIRE(db.ScalarInt("SELECT count(*) FROM repl_log") == 2);
  REQUIRE_FALSE(
      replication::NeedsSnapshot(*head, head->epoch, Position{x3, replication::kWholeTransaction}));
  REQUIRE(
      replication::NeedsSnapshot(*head, head->epoch, Position{x2, replication::kWholeTransaction}));
  REQUIRE(replication::NeedsSnapshot(*head, "another-epoch",
                                     Position{x4, replication::kWholeTransaction}));
  REQUIRE(replication::NeedsSnapshot(*head, "", Position{0, 0}));

  // Past the retention window everything goes, acknowledged or not.
  db.Exec("UPDATE repl_log SET logged_at = now() - interval '2 hours'");
  REQUIRE(conn->Transact([&](store::Transaction& tx) {
                pruned = replication::PruneLog(tx, 3600, {"P01", "P02"});
                return pruned.status();
              })
              .ok());
  REQUIRE(db.ScalarInt("SELECT count(*) FROM repl_log") == 0);
}
