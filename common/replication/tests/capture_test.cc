// Change capture from the WAL against a real PostgreSQL database
// (wal_level = logical): stamping and tombstones in SQL, changes read for a
// peer through its slot (wal_reader.h).
#include <catch2/catch.hpp>
#include <random>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/base/status.h"
#include "common/replication/wal_reader.h"
#include "tests/fixture/testing.h"

using namespace strata;
using replication::WalPosition;
using replication::WalReader;
using testing::TestDatabase;

namespace {

replication::PeerFilter Down(const std::string& peer = "P99") {
  replication::PeerFilter f;
  f.peer = peer;
  f.scopes = {"global", "global_proxy"};
  return f;
}

// A site database and a reader for one peer, streaming from a new slot.
struct Capture {
  TestDatabase db{"capture"};
  std::string site;
  std::unique_ptr<replication::Catalog> catalog;
  replication::TypeMap types;

  explicit Capture(const std::string& site_code, const std::string& extra_sql = "")
      : site(site_code) {
    testing::PrepareSiteDatabase(db, site);
    if (!extra_sql.empty()) db.Exec(extra_sql);
    auto conn = db.Connect();
    REQUIRE(conn->Transact([&](store::Transaction& tx) -> absl::Status {
                  ASSIGN_OR_RETURN(replication::Catalog c, replication::Catalog::Load(tx));
                  catalog = std::make_unique<replication::Catalog>(std::move(c));
                  ASSIGN_OR_RETURN(types, replication::TypeMap::Load(tx));
                  return absl::OkStatus();
                })
                .ok());
  }
  // A reader whose slot is made now (changes before it are the snapshot's).
  std::unique_ptr<WalReader> NewReader(const replication::PeerFilter& filter, WalPosition* start) {
    auto r = WalReader::Open(db.conninfo(), site, filter, *catalog, types);
    REQUIRE(r.ok());
    REQUIRE((*r)->Reinitialize([](const std::string&) { return absl::OkStatus(); }, start).ok());
    REQUIRE((*r)->Start(*start).ok());
    return std::move(*r);
  }
  // A reader of an existing slot, from `after`.
  std::unique_ptr<WalReader> Resume(const replication::PeerFilter& filter,
                                    const WalPosition& after) {
    auto r = WalReader::Open(db.conninfo(), site, filter, *catalog, types);
    REQUIRE(r.ok());
    REQUIRE((*r)->Start(after).ok());
    return std::move(*r);
  }
};

// Reads until `n` changes came (fails after 20 s), in batches of `max`.
std::vector<v1::Change> ReadChanges(WalReader& reader, size_t n, WalPosition* end, int max = 1000) {
  std::vector<v1::Change> out;
  auto deadline = absl::Now() + absl::Seconds(20);
  while (out.size() < n) {
    REQUIRE(absl::Now() < deadline);
    auto b = reader.Read(max, 1 << 20, absl::Milliseconds(200));
    REQUIRE(b.ok());
    for (auto& c : b->changes) out.push_back(std::move(c));
    REQUIRE(*end <= b->end);
    *end = b->end;
  }
  return out;
}

// Nothing more within half a second.
void ExpectNothingMore(WalReader& reader) {
  auto b = reader.Read(1000, 1 << 20, absl::Milliseconds(500));
  REQUIRE(b.ok());
  REQUIRE(b->changes.empty());
}

std::string Describe(const v1::Change& c) {
  return (c.op() == v1::CHANGE_OP_DELETE ? "D " : "U ") + c.key();
}

}  // namespace

TEST_CASE("a committed write reaches the peer's stream with its stamps; a rolled-back one never") {
  Capture cap("CAS");
  WalPosition pos;
  auto reader = cap.NewReader(Down(), &pos);
  cap.db.Exec("INSERT INTO global_settings (name, value) VALUES ('a', '1')");
  auto conn = cap.db.Connect();
  auto s = conn->Transact(
      [](store::Transaction& tx) -> absl::Status {
        auto r = tx.Exec("INSERT INTO global_settings (name, value) VALUES ('b', '2')");
        if (!r.ok()) return r.status();
        return absl::AbortedError("give up");
      },
      store::Isolation::kReadCommitted, 1);
  REQUIRE(s.code() == absl::StatusCode::kAborted);
  auto changes = ReadChanges(*reader, 1, &pos);
  REQUIRE(changes.size() == 1);
  REQUIRE(changes[0].key() == "[\"a\"]");
  REQUIRE(changes[0].origin_site() == "CAS");
  REQUIRE(changes[0].hlc() ==
          cap.db.ScalarInt("SELECT _hlc FROM global_settings WHERE name = 'a'"));
  REQUIRE(cap.db.Scalar("SELECT to_jsonb(g) = $1::jsonb FROM global_settings g WHERE name = 'a'",
                        {changes[0].row_json()}) == "t");
  ExpectNothingMore(*reader);
  // No trigger log is written any more.
  REQUIRE(cap.db.ScalarInt("SELECT count(*) FROM repl_log") == 0);
}

TEST_CASE("deletes travel as their tombstones; an update stamps a clock above the row's") {
  Capture cap("CAS");
  WalPosition pos;
  auto reader = cap.NewReader(Down(), &pos);
  cap.db.Exec(
      "INSERT INTO global_settings (name, value) SELECT 'k' || g, 'v' FROM generate_series(1, 50) "
      "g");
  cap.db.Exec("UPDATE global_settings SET value = 'w' WHERE name = 'k1'");
  cap.db.Exec("DELETE FROM global_settings WHERE name = 'k2'");
  auto changes = ReadChanges(*reader, 52, &pos);
  REQUIRE(changes.size() == 52);
  REQUIRE(Describe(changes[50]) == "U [\"k1\"]");
  REQUIRE(changes[50].hlc() > changes[0].hlc());
  REQUIRE(Describe(changes[51]) == "D [\"k2\"]");
  REQUIRE(changes[51].hlc() ==
          cap.db.ScalarInt("SELECT hlc FROM repl_tombstone WHERE key = '[\"k2\"]'"));
  REQUIRE(changes[51].origin_site() == "CAS");
}

TEST_CASE(
    "eight concurrent writers committing out of order: the reader skips nothing and repeats "
    "nothing") {
  Capture cap("CAS");
  WalPosition pos;
  auto reader = cap.NewReader(Down(), &pos);
  constexpr int kWriters = 8;
  constexpr int kPerWriter = 60;
  std::atomic<int> writers_done{0};
  std::vector<std::thread> writers;
  std::vector<absl::Status> results(kWriters);  // checked after join: no asserts in threads
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      auto conn = store::Connection::Open(cap.db.conninfo());
      results[w] = conn.status();
      std::mt19937 rng(w);
      for (int i = 0; i < kPerWriter && results[w].ok(); ++i) {
        // Insert first, then hold the transaction open a random while:
        // writes start in one order and commit in another.
        std::string sleep = absl::StrCat(std::uniform_int_distribution<int>(0, 8)(rng) / 1000.0);
        results[w] = (*conn)->Transact([&](store::Transaction& tx) -> absl::Status {
          auto r = tx.Exec("INSERT INTO global_settings (name, value) VALUES ($1, 'x')",
                           {absl::StrCat("w", w, "-", i)});
          if (!r.ok()) return r.status();
          return tx.Exec("SELECT pg_sleep($1::float8)", {sleep}).status();
        });
      }
      writers_done++;  // also on failure, so the reader below stops
    });
  }
  // The reader runs while the writers commit, in batches of 7, until every
  // change came (or 30 s passed), then half a second more: nothing repeats.
  std::multiset<std::string> seen;
  int reads = 0;
  const size_t total = kWriters * kPerWriter;
  auto deadline = absl::Now() + absl::Seconds(30);
  absl::Time quiet_until = absl::InfiniteFuture();
  while (absl::Now() < std::min(deadline, quiet_until)) {
    auto batch = reader->Read(7, 1 << 20, absl::Milliseconds(100));
    REQUIRE(batch.ok());
    ++reads;
    for (const auto& c : batch->changes) seen.insert(c.key());
    REQUIRE(pos <= batch->end);
    pos = batch->end;
    if (seen.size() >= total && quiet_until == absl::InfiniteFuture()) {
      quiet_until = absl::Now() + absl::Milliseconds(500);
    }
  }
  for (auto& t : writers) t.join();
  REQUIRE(writers_done.load() == kWriters);
  for (const auto& r : results) REQUIRE(r.ok());
  REQUIRE(reads > 10);
  REQUIRE(seen.size() == total);
  for (int w = 0; w < kWriters; ++w) {
    for (int i = 0; i < kPerWriter; ++i) {
      REQUIRE(seen.count(absl::StrCat("[\"w", w, "-", i, "\"]")) == 1);
    }
  }
}

TEST_CASE("a long write transaction holds back no other transaction's changes") {
  Capture cap("CAS");
  WalPosition pos;
  auto reader = cap.NewReader(Down(), &pos);
  absl::Notification inserted, release;
  absl::Status slow_status;
  auto slow = cap.db.Connect();
  std::thread slow_writer([&] {
    slow_status = slow->Transact([&](store::Transaction& tx) -> absl::Status {
      auto r = tx.Exec("INSERT INTO global_settings (name, value) VALUES ('slow', 'v')");
      inserted.Notify();
      release.WaitForNotification();
      return r.status();
    });
  });
  inserted.WaitForNotification();
  cap.db.Exec("INSERT INTO global_settings (name, value) VALUES ('quick', 'v')");
  auto first = ReadChanges(*reader, 1, &pos);
  REQUIRE(first[0].key() == "[\"quick\"]");
  release.Notify();
  slow_writer.join();
  REQUIRE(slow_status.ok());
  auto second = ReadChanges(*reader, 1, &pos);
  REQUIRE(second[0].key() == "[\"slow\"]");
}

TEST_CASE("set-based capture: keys, moved keys, re-inserted keys, one change per row") {
  const std::string a = "00000000-0000-4000-8000-00000000000a";
  Capture cap("P01",
              "CREATE TABLE t_multi (a uuid, b text, n integer, v text, PRIMARY KEY (a, b, n)); "
              "SELECT repl_enable('t_multi', 'site')");
  auto& db = cap.db;
  WalPosition pos;
  replication::PeerFilter up{"CAS", {"global", "global_proxy", "site", "site_proxy"}, {}, false};
  auto reader = cap.NewReader(up, &pos);
  db.Exec("INSERT INTO t_multi SELECT $1::uuid, 'x' || g, g, 'v' FROM generate_series(1, 300) g",
          {a});
  // One change per row of the statement, keyed as the apply path keys rows.
  auto inserted = ReadChanges(*reader, 300, &pos);
  REQUIRE(inserted.size() == 300);
  for (const auto& c : inserted) {
    REQUIRE(c.table() == "t_multi");
    REQUIRE(db.ScalarInt("SELECT count(*) FROM t_multi t WHERE repl_key(to_jsonb(t), ARRAY['a', "
                         "'b', 'n']) = $1 AND t._hlc = $2 AND t._origin = 'P01' AND to_jsonb(t) "
                         "= $3::jsonb",
                         {c.key(), std::to_string(c.hlc()), c.row_json()}) == 1);
  }
  // An update that moves a row to another key deletes the old key.
  db.Exec("UPDATE t_multi SET n = 1000 WHERE b = 'x1'");
  auto moved = ReadChanges(*reader, 2, &pos);
  std::set<std::string> got = {Describe(moved[0]), Describe(moved[1])};
  REQUIRE(got == std::set<std::string>{absl::StrCat("D [\"", a, "\", \"x1\", 1]"),
                                       absl::StrCat("U [\"", a, "\", \"x1\", 1000]")});
  REQUIRE(db.ScalarInt("SELECT count(*) FROM repl_tombstone WHERE tbl = 't_multi'") == 1);
  // A plain update sends the new row only: no delete, no tombstone.
  db.Exec("UPDATE t_multi SET v = 'w' WHERE n <= 10");
  auto updated = ReadChanges(*reader, 9, &pos);
  for (const auto& c : updated) {
    REQUIRE(c.op() == v1::CHANGE_OP_UPSERT);
    REQUIRE(db.Scalar("SELECT $1::jsonb ->> 'v'", {c.row_json()}) == "w");
  }
  REQUIRE(db.ScalarInt("SELECT count(*) FROM repl_tombstone WHERE tbl = 't_multi'") == 1);
  // A key deleted and written again in the same transaction (the same
  // millisecond, most likely) comes back with a clock above its tombstone;
  // the last change of the key the peer gets carries it.
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
  std::map<std::string, int64_t> last_hlc;
  for (const auto& c : ReadChanges(*reader, 3, &pos)) last_hlc[c.key()] = c.hlc();
  REQUIRE(db.ScalarInt("SELECT count(*) FROM t_multi t WHERE t.b IN ('x5', 'new') AND t._hlc = "
                       "ANY($1::bigint[])",
                       {absl::StrCat("{", last_hlc[absl::StrCat("[\"", a, "\", \"x5\", 5]")], ",",
                                     last_hlc[absl::StrCat("[\"", a, "\", \"new\", 7]")], "}")}) ==
          2);
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
  // The tombstone written above (a D), the two inserts, the bump (an update).
  last_hlc.clear();
  for (const auto& c : ReadChanges(*reader, 4, &pos)) last_hlc[c.key()] = c.hlc();
  REQUIRE(last_hlc[absl::StrCat("[\"", a, "\", \"ahead\", 1]")] ==
          db.ScalarInt("SELECT _hlc FROM t_multi WHERE b = 'ahead'"));
  REQUIRE(last_hlc[absl::StrCat("[\"", a, "\", \"plain\", 1]")] ==
          db.ScalarInt("SELECT _hlc FROM t_multi WHERE b = 'plain'"));
  // An upsert that updates (ON CONFLICT DO UPDATE) sends the new row.
  db.Exec(
      "INSERT INTO t_multi VALUES ($1::uuid, 'plain', 1, 'upserted') ON CONFLICT (a, b, n) DO "
      "UPDATE SET v = EXCLUDED.v",
      {a});
  auto upserted = ReadChanges(*reader, 1, &pos);
  REQUIRE(db.Scalar("SELECT $1::jsonb ->> 'v'", {upserted[0].row_json()}) == "upserted");
  // A statement that touches nothing sends nothing.
  db.Exec("UPDATE t_multi SET v = 'z' WHERE false");
  db.Exec("DELETE FROM t_multi WHERE false");
  ExpectNothingMore(*reader);
}

TEST_CASE("a replicated table written before the database has a site code is refused") {
  TestDatabase db("capture");
  testing::PrepareSiteDatabase(db, "P01");
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
  Capture cap("CAS");
  WalPosition pos;
  WalPosition cut;
  {
    auto reader = cap.NewReader(Down("P01"), &pos);
    cap.db.Exec(
        "INSERT INTO global_settings (name, value) SELECT 'k' || g, 'v' FROM "
        "generate_series(1, 25) g");
    cap.db.Exec("INSERT INTO global_settings (name, value) VALUES ('after', 'v')");
    auto b1 = ReadChanges(*reader, 10, &pos, 10);
    REQUIRE(b1.size() == 10);
    REQUIRE(pos.index == 10);
    auto b2 = ReadChanges(*reader, 10, &pos, 10);
    REQUIRE(b2.size() == 10);
    REQUIRE(pos.index == 20);
    cut = pos;
    REQUIRE(reader->Confirm(cut).ok());
  }
  // A new session (the peer applied through `cut`) gets the rest, once:
  // the rest of the big transaction and the next one.
  auto reader = cap.Resume(Down("P01"), cut);
  WalPosition end = cut;
  auto rest = ReadChanges(*reader, 6, &end, 10);
  REQUIRE(rest.size() == 6);
  REQUIRE(rest[0].key() == "[\"k21\"]");
  REQUIRE(rest[5].key() == "[\"after\"]");
  REQUIRE(end.index == replication::kWholeTransaction);
  // An idle read moves the position on, and a session started there gets
  // the next change, once.
  auto idle = reader->Read(100, 1 << 20, absl::Milliseconds(500));
  REQUIRE(idle.ok());
  REQUIRE(idle->changes.empty());
  REQUIRE(end <= idle->end);
  REQUIRE(reader->Confirm(idle->end).ok());
  reader.reset();
  cap.db.Exec("INSERT INTO global_settings (name, value) VALUES ('after-idle', 'v')");
  auto again = cap.Resume(Down("P01"), idle->end);
  auto next = ReadChanges(*again, 1, &end);
  REQUIRE(next.size() == 1);
  REQUIRE(next[0].key() == "[\"after-idle\"]");
  ExpectNothingMore(*again);
}

TEST_CASE("a batch stops at its byte budget and resumes after the last change it took") {
  Capture cap("CAS");
  WalPosition pos;
  auto reader = cap.NewReader(Down(), &pos);
  cap.db.Exec(
      "INSERT INTO global_settings (name, value) SELECT 'big' || g, repeat('x', 1000) FROM "
      "generate_series(1, 10) g");
  absl::StatusOr<replication::WalBatch> b1;
  auto deadline = absl::Now() + absl::Seconds(20);
  do {
    REQUIRE(absl::Now() < deadline);
    b1 = reader->Read(100, 3000, absl::Milliseconds(200));
    REQUIRE(b1.ok());
  } while (b1->changes.empty());
  REQUIRE(b1->changes.size() == 3);  // each change is over 1000 bytes
  REQUIRE(b1->end.index == 3);
  auto b2 = reader->Read(100, 1, absl::Milliseconds(200));
  REQUIRE(b2.ok());
  REQUIRE(b2->changes.size() == 1);  // always at least one
  REQUIRE(b2->changes[0].key() == "[\"big4\"]");
}

TEST_CASE("a peer is not sent what it sent, nor scopes it does not take") {
  Capture cap("P01");
  WalPosition to_cas_pos, to_secondary_pos;
  auto to_cas = cap.NewReader(
      replication::PeerFilter{"CAS", {"global", "global_proxy", "site"}, {}, false}, &to_cas_pos);
  auto to_secondary =
      cap.NewReader(replication::PeerFilter{"S01", {"global_proxy"}, {}, false}, &to_secondary_pos);
  cap.db.Exec("INSERT INTO devices (id, name, site_code) VALUES (gen_random_uuid(), 'pc1', 'P01')");
  cap.db.Exec("INSERT INTO global_settings (name, value) VALUES ('local', 'v')");
  // A change applied from the CAS carries the CAS's replication origin.
  const std::string origin = replication::OriginName("P01", "CAS");
  cap.db.Exec("SELECT pg_replication_origin_create('" + origin + "')");
  cap.db.Exec("SELECT pg_replication_origin_session_setup('" + origin +
              "'); SET strata.applying = on; INSERT INTO global_settings (name, value, _hlc, "
              "_origin) VALUES ('remote', 'r', 1, 'CAS')");
  cap.db.Exec("INSERT INTO global_settings (name, value) VALUES ('marker', 'v')");
  std::vector<std::string> seen;
  for (const auto& c : ReadChanges(*to_cas, 3, &to_cas_pos)) seen.push_back(c.table() + c.key());
  // Device + local setting + marker, not the CAS's own change.
  REQUIRE(seen ==
          std::vector<std::string>{"devices[\"" + cap.db.Scalar("SELECT id FROM devices") + "\"]",
                                   "global_settings[\"local\"]", "global_settings[\"marker\"]"});
  ExpectNothingMore(*to_cas);
  // The secondary takes the settings (the CAS's too, origin kept), no device.
  seen.clear();
  std::string remote_origin;
  for (const auto& c : ReadChanges(*to_secondary, 3, &to_secondary_pos)) {
    seen.push_back(c.key());
    if (c.key() == "[\"remote\"]") remote_origin = c.origin_site();
  }
  REQUIRE(seen == std::vector<std::string>{"[\"local\"]", "[\"remote\"]", "[\"marker\"]"});
  REQUIRE(remote_origin == "CAS");
  ExpectNothingMore(*to_secondary);
}

TEST_CASE("a peer resumes from its slot only when the slot holds what it has not applied") {
  using replication::SlotState;
  const std::string epoch = "e1";
  SlotState slot{true, false, 1000, 0};
  REQUIRE(replication::SnapshotReason(slot, epoch, epoch, WalPosition{1000, 3}) == nullptr);
  REQUIRE(replication::SnapshotReason(slot, epoch, epoch, WalPosition{2000, 0}) == nullptr);
  REQUIRE(std::string(replication::SnapshotReason(slot, epoch, epoch, WalPosition{999, 0})) ==
          "peer is behind its slot");
  REQUIRE(std::string(replication::SnapshotReason(slot, "", epoch, WalPosition{})) == "new peer");
  REQUIRE(std::string(replication::SnapshotReason(slot, "e0", epoch, WalPosition{2000, 0})) ==
          "peer knows another log epoch");
  REQUIRE(std::string(replication::SnapshotReason(SlotState{}, epoch, epoch,
                                                  WalPosition{2000, 0})) == "no slot for the peer");
  REQUIRE(std::string(replication::SnapshotReason(SlotState{true, true, 1000, 0}, epoch, epoch,
                                                  WalPosition{2000, 0})) ==
          "the peer's slot lost its WAL");
}

TEST_CASE("slots of peers gone or silent past retention are dropped; pruning empties the old log") {
  Capture cap("CAS");
  WalPosition pos;
  {
    auto p01 = cap.NewReader(Down("P01"), &pos);
    auto p02 = cap.NewReader(Down("P02"), &pos);
    auto p03 = cap.NewReader(Down("P03"), &pos);
    auto p04 = cap.NewReader(Down("P04"), &pos);
    auto p05 = cap.NewReader(Down("P05"), &pos);
  }
  // P01 acknowledged just now, P02 two hours ago; P03 is no longer a peer.
  // P04 and P05 linked and acknowledged nothing (their position is NULL):
  // P04's session ended just now, P05's two hours ago.
  cap.db.Exec(
      "INSERT INTO repl_outbound (peer, xid, log_id, updated_at) VALUES ('P01', 0, 0, now()), "
      "('P02', 0, 0, now() - interval '2 hours'), ('P04', NULL, NULL, now()), "
      "('P05', NULL, NULL, now() - interval '2 hours')");
  // What the trigger log held before an upgrade goes past retention.
  cap.db.Exec(
      "INSERT INTO repl_log (tbl, scope, op, key, hlc, origin, logged_at) VALUES "
      "('global_settings', 'global', 'D', '[\"x\"]', 1, 'CAS', now() - interval '2 hours')");
  auto conn = cap.db.Connect();
  absl::StatusOr<int64_t> dropped;
  REQUIRE(conn->Transact([&](store::Transaction& tx) -> absl::Status {
                const std::vector<std::string> peers = {"P01", "P02", "P04", "P05"};
                RETURN_IF_ERROR(replication::PruneLog(tx, 3600, peers).status());
                dropped = replication::DropLapsedSlots(tx, "CAS", 3600, peers);
                return dropped.status();
              })
              .ok());
  REQUIRE(*dropped == 3);
  REQUIRE(cap.db.Scalar("SELECT string_agg(slot_name, ',' ORDER BY slot_name) FROM "
                        "pg_replication_slots WHERE database = current_database()") ==
          "strata_cas_to_p01,strata_cas_to_p04");
  REQUIRE(cap.db.ScalarInt("SELECT count(*) FROM repl_log") == 0);
}

TEST_CASE("an update that left a large value out of the WAL sends the whole row") {
  Capture cap("CAS");
  auto& db = cap.db;
  WalPosition pos;
  auto reader = cap.NewReader(Down("P01"), &pos);
  db.Exec("ALTER TABLE global_settings ALTER COLUMN value SET STORAGE EXTERNAL");
  db.Exec("INSERT INTO global_settings (name, value) VALUES ('big', repeat('x', 50000))");
  db.Exec("UPDATE global_settings SET updated_at = now() WHERE name = 'big'");
  auto changes = ReadChanges(*reader, 2, &pos);
  REQUIRE(changes.size() == 2);
  for (const auto& c : changes) {
    REQUIRE(db.Scalar("SELECT length($1::jsonb ->> 'value')", {c.row_json()}) == "50000");
  }
  REQUIRE(changes[1].hlc() > changes[0].hlc());
}
