#include "common/store/wal_stream.h"

#include <catch2/catch.hpp>
#include <thread>

#include "absl/synchronization/notification.h"
#include "tests/fixture/testing.h"

using strata::store::Lsn;
using strata::store::PgOutputDecoder;
using strata::store::WalEvent;
using strata::store::WalStream;
using strata::store::WalValue;
using strata::testing::TestDatabase;

namespace {

std::string Text(const WalEvent& e, size_t column) { return e.new_tuple.at(column).text; }

}  // namespace

TEST_CASE("WAL positions read and print as PostgreSQL spells them") {
  auto lsn = strata::store::ParseLsn("16/B374D848");
  REQUIRE(lsn.ok());
  REQUIRE(*lsn == ((0x16ULL << 32) | 0xB374D848ULL));
  REQUIRE(strata::store::LsnToString(*lsn) == "16/B374D848");
  REQUIRE_FALSE(strata::store::ParseLsn("16B374D848").ok());
  REQUIRE_FALSE(strata::store::ParseLsn("x/1").ok());
  REQUIRE_FALSE(strata::store::ParseLsn("1/").ok());
}

TEST_CASE("a slot streams committed changes in commit order, with their origin and keys") {
  TestDatabase db("wal");
  db.Exec("CREATE TABLE t (id int PRIMARY KEY, name text, note text)");
  db.Exec("CREATE PUBLICATION pub FOR TABLE t");
  auto stream = WalStream::Open(db.conninfo());
  REQUIRE(stream.ok());
  auto slot = (*stream)->CreateSlot("s1", false);
  REQUIRE(slot.ok());
  REQUIRE(slot->consistent_point > 0);
  REQUIRE((*stream)->CreateSlot("s1", false).status().code() == absl::StatusCode::kAlreadyExists);

  // A long transaction begun first and committed last: its change comes
  // last, and the ones committed meanwhile are not held back behind it.
  auto slow = db.Connect();
  absl::Notification inserted, release;
  absl::Status slow_status;
  std::thread slow_writer([&] {
    slow_status = slow->Transact([&](strata::store::Transaction& tx) -> absl::Status {
      auto r = tx.Exec("INSERT INTO t VALUES (3, 'late', NULL)");
      inserted.Notify();
      release.WaitForNotification();
      return r.status();
    });
  });
  inserted.WaitForNotification();
  db.Exec("INSERT INTO t VALUES (1, 'one', 'a\"b')");
  db.Exec("UPDATE t SET name = 'uno' WHERE id = 1");
  db.Exec("UPDATE t SET id = 2 WHERE id = 1");
  // A transaction replayed from a peer carries the peer's origin.
  db.Exec("SELECT pg_replication_origin_create('strata_from_p01')");
  auto replay = db.Connect();
  REQUIRE(replay->Exec("SELECT pg_replication_origin_session_setup('strata_from_p01')").ok());
  REQUIRE(replay->Exec("DELETE FROM t WHERE id = 2").ok());
  REQUIRE(replay->Exec("SELECT pg_replication_origin_session_reset()").ok());

  REQUIRE((*stream)->Start("s1", 0, {"pub"}).ok());
  PgOutputDecoder decoder;
  auto events = strata::testing::ReadWalEvents(**stream, decoder, 4);
  std::vector<std::string> seen;
  for (const auto& e : events) {
    switch (e.kind) {
      case WalEvent::kInsert:
        seen.push_back("I " + Text(e, 0) + " " + Text(e, 1) + " " + Text(e, 2));
        break;
      case WalEvent::kUpdate:
        seen.push_back("U " + Text(e, 0) + " " + Text(e, 1) +
                       (e.old_tuple ? " old " + e.old_tuple->at(0).text : ""));
        break;
      case WalEvent::kDelete:
        seen.push_back("D " + e.old_tuple->at(0).text);
        REQUIRE(e.old_tuple->at(1).kind == WalValue::kNull);  // the key only
        break;
      case WalEvent::kOrigin:
        seen.push_back("O " + e.origin);
        break;
      case WalEvent::kCommit:
        seen.push_back("C");
        break;
      case WalEvent::kRelation:
        REQUIRE(e.relation->name == "t");
        REQUIRE(e.relation->columns.size() == 3);
        REQUIRE(e.relation->columns[0].key);
        REQUIRE_FALSE(e.relation->columns[1].key);
        REQUIRE(e.relation->columns[0].type == 23);
        break;
      default:
        break;
    }
  }
  REQUIRE(seen == std::vector<std::string>{"I 1 one a\"b", "C", "U 1 uno", "C", "U 2 uno old 1",
                                           "C", "O strata_from_p01", "D 2", "C"});

  release.Notify();
  slow_writer.join();
  REQUIRE(slow_status.ok());
  events = strata::testing::ReadWalEvents(**stream, decoder, 1);
  REQUIRE(events.front().kind == WalEvent::kBegin);
  REQUIRE(events.front().commit_unix_us > absl::ToUnixMicros(absl::Now() - absl::Minutes(5)));
  REQUIRE(events[events.size() - 2].kind == WalEvent::kInsert);
  REQUIRE(Text(events[events.size() - 2], 1) == "late");
}

TEST_CASE("a confirmed position is where the slot resumes") {
  TestDatabase db("wal");
  db.Exec("CREATE TABLE t (id int PRIMARY KEY)");
  db.Exec("CREATE PUBLICATION pub FOR TABLE t");
  Lsn after_first = 0;
  {
    auto stream = WalStream::Open(db.conninfo());
    REQUIRE(stream.ok());
    REQUIRE((*stream)->CreateSlot("s2", false).ok());
    db.Exec("INSERT INTO t VALUES (1)");
    db.Exec("INSERT INTO t VALUES (2)");
    REQUIRE((*stream)->Start("s2", 0, {"pub"}).ok());
    PgOutputDecoder decoder;
    auto events = strata::testing::ReadWalEvents(**stream, decoder, 1);
    after_first = events.back().lsn;
    REQUIRE((*stream)->Confirm(after_first).ok());
    strata::testing::ReadWalEvents(**stream, decoder, 1);  // read, never confirmed
  }
  // The server records the confirmation; a new session starts after it.
  const std::string want = strata::store::LsnToString(after_first);
  REQUIRE(strata::testing::WaitFor(
      [&] {
        return db.Scalar(
                   "SELECT confirmed_flush_lsn::text FROM pg_replication_slots "
                   "WHERE slot_name = 's2' AND NOT active") == want;
      },
      std::chrono::seconds(10)));
  auto stream = WalStream::Open(db.conninfo());
  REQUIRE(stream.ok());
  REQUIRE((*stream)->Start("s2", 0, {"pub"}).ok());
  PgOutputDecoder decoder;
  auto events = strata::testing::ReadWalEvents(**stream, decoder, 1);
  int inserts = 0;
  for (const auto& e : events) {
    if (e.kind != WalEvent::kInsert) continue;
    ++inserts;
    REQUIRE(Text(e, 0) == "2");
  }
  REQUIRE(inserts == 1);
}

TEST_CASE("an exported snapshot and the stream after it together hold every change once") {
  TestDatabase db("wal");
  db.Exec("CREATE TABLE t (id int PRIMARY KEY)");
  db.Exec("CREATE PUBLICATION pub FOR TABLE t");
  db.Exec("INSERT INTO t SELECT generate_series(1, 5)");
  auto stream = WalStream::Open(db.conninfo());
  REQUIRE(stream.ok());
  auto slot = (*stream)->CreateSlot("s3", true);
  REQUIRE(slot.ok());
  REQUIRE_FALSE(slot->snapshot.empty());
  db.Exec("INSERT INTO t VALUES (6)");  // after the consistent point
  auto reader = db.Connect();
  std::string in_snapshot;
  REQUIRE(reader
              ->Transact(
                  [&](strata::store::Transaction& tx) -> absl::Status {
                    auto s = tx.Exec("SET TRANSACTION SNAPSHOT " +
                                     strata::store::QuoteLiteral(slot->snapshot));
                    if (!s.ok()) return s.status();
                    auto r = tx.Exec("SELECT string_agg(id::text, ',' ORDER BY id) FROM t");
                    if (!r.ok()) return r.status();
                    in_snapshot = r->GetString(0, 0);
                    return absl::OkStatus();
                  },
                  strata::store::Isolation::kRepeatableRead)
              .ok());
  REQUIRE(in_snapshot == "1,2,3,4,5");
  REQUIRE((*stream)->Start("s3", slot->consistent_point, {"pub"}).ok());
  PgOutputDecoder decoder;
  auto events = strata::testing::ReadWalEvents(**stream, decoder, 1);
  std::vector<std::string> inserted;
  for (const auto& e : events) {
    if (e.kind == WalEvent::kInsert) inserted.push_back(Text(e, 0));
  }
  REQUIRE(inserted == std::vector<std::string>{"6"});
}

TEST_CASE("an update leaving a large value alone marks it unchanged, not empty") {
  TestDatabase db("wal");
  db.Exec("CREATE TABLE t (id int PRIMARY KEY, big text, n int)");
  db.Exec("ALTER TABLE t ALTER COLUMN big SET STORAGE EXTERNAL");  // stored out of line
  db.Exec("CREATE PUBLICATION pub FOR TABLE t");
  auto stream = WalStream::Open(db.conninfo());
  REQUIRE(stream.ok());
  REQUIRE((*stream)->CreateSlot("s4", false).ok());
  db.Exec("INSERT INTO t VALUES (1, repeat('x', 100000), 1)");
  db.Exec("UPDATE t SET n = 2");
  REQUIRE((*stream)->Start("s4", 0, {"pub"}).ok());
  PgOutputDecoder decoder;
  auto events = strata::testing::ReadWalEvents(**stream, decoder, 2);
  std::vector<const WalEvent*> changes;
  for (const auto& e : events) {
    if (e.kind == WalEvent::kInsert || e.kind == WalEvent::kUpdate) changes.push_back(&e);
  }
  REQUIRE(changes.size() == 2);
  REQUIRE(changes[0]->new_tuple[1].text.size() == 100000);  // an insert carries it whole
  REQUIRE(changes[1]->new_tuple[1].kind == WalValue::kUnchangedToast);
  REQUIRE(changes[1]->new_tuple[2].text == "2");
}

TEST_CASE("malformed pgoutput messages are InvalidArgument") {
  PgOutputDecoder decoder;
  REQUIRE(decoder.Decode(std::string("B\0\0", 3)).status().code() ==
          absl::StatusCode::kInvalidArgument);
  // An insert naming a relation never described.
  REQUIRE(decoder.Decode(std::string("I\0\0\0\x07N\0\0", 8)).status().code() ==
          absl::StatusCode::kInvalidArgument);
  // A relation, then an insert whose value claims more bytes than it has.
  std::string rel("R\0\0\0\x07public\0t\0d\0\x01\x01id\0\0\0\0\x17\xff\xff\xff\xff", 29);
  REQUIRE(decoder.Decode(rel).ok());
  REQUIRE(decoder.Find(7) != nullptr);
  REQUIRE(decoder
              .Decode(std::string("I\0\0\0\x07N\0\x01t\0\0\0\x09"
                                  "12",
                                  15))
              .status()
              .code() == absl::StatusCode::kInvalidArgument);
  auto ok =
      decoder.Decode(std::string("I\0\0\0\x07N\0\x01t\0\0\0\x02"
                                 "12",
                                 15));
  REQUIRE(ok.ok());
  REQUIRE(ok->new_tuple[0].text == "12");
}
