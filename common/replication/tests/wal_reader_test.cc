// Reading a site's changes for a peer from the WAL, against a real
// PostgreSQL database with wal_level = logical.
#include "common/replication/wal_reader.h"

#include <catch2/catch.hpp>

#include "tests/fixture/testing.h"

using namespace strata;
using replication::WalBatch;
using replication::WalPosition;
using replication::WalReader;
using testing::TestDatabase;

namespace {

// A site database whose replicated tables are in their scopes' publications.
void Prepare(const TestDatabase& db, const std::string& site) {
  testing::PrepareSiteDatabase(db, site);
  db.Exec(
      "CREATE TABLE wal_site_data (id int PRIMARY KEY); SELECT repl_enable('wal_site_data', "
      "'site')");
  for (const char* scope : {"global", "global_proxy", "site", "site_proxy"}) {
    db.Exec("CREATE PUBLICATION " + replication::PublicationName(scope) +
            " WITH (publish = 'insert, update')");
    db.Exec("DO $$ DECLARE t text; BEGIN FOR t IN SELECT tbl FROM repl_scope WHERE scope = '" +
            std::string(scope) + "' LOOP EXECUTE format('ALTER PUBLICATION " +
            replication::PublicationName(scope) + " ADD TABLE %I', t); END LOOP; END $$");
  }
  db.Exec(std::string("CREATE PUBLICATION ") + replication::kTombstonePublication +
          " FOR TABLE repl_tombstone WITH (publish = 'insert, update')");
}

replication::PeerFilter Down(const std::string& peer) {
  replication::PeerFilter f;
  f.peer = peer;
  f.scopes = {"global", "global_proxy"};
  return f;
}

replication::Catalog LoadCatalog(const TestDatabase& db, replication::TypeMap* types) {
  auto conn = db.Connect();
  std::optional<replication::Catalog> catalog;
  REQUIRE(conn->Transact([&](store::Transaction& tx) -> absl::Status {
                auto c = replication::Catalog::Load(tx);
                if (!c.ok()) return c.status();
                catalog = std::move(*c);
                auto t = replication::TypeMap::Load(tx);
                if (!t.ok()) return t.status();
                *types = std::move(*t);
                return absl::OkStatus();
              })
              .ok());
  return std::move(*catalog);
}

// Reads until `n` changes came (the test fails after 20 s without them).
std::vector<v1::Change> ReadChanges(WalReader& reader, size_t n, WalPosition* end) {
  std::vector<v1::Change> out;
  auto deadline = absl::Now() + absl::Seconds(20);
  while (out.size() < n) {
    REQUIRE(absl::Now() < deadline);
    auto b = reader.Read(1000, 1 << 20, absl::Milliseconds(200));
    REQUIRE(b.ok());
    for (auto& c : b->changes) out.push_back(std::move(c));
    *end = b->end;
  }
  return out;
}

std::string Describe(const v1::Change& c) {
  return c.table() + (c.op() == v1::CHANGE_OP_DELETE ? " D " : " U ") + c.key();
}

}  // namespace

TEST_CASE("the WAL gives a peer the changes the trigger log gave it, in commit order") {
  TestDatabase db("walread");
  testing::SlotsDropper slots{db};
  Prepare(db, "CAS");
  replication::TypeMap types;
  replication::Catalog catalog = LoadCatalog(db, &types);
  auto reader = WalReader::Open(db.conninfo(), Down("P01"), catalog, types);
  REQUIRE(reader.ok());
  WalPosition start;
  REQUIRE((*reader)
              ->Reinitialize(
                  [](const std::string& snapshot) {
                    REQUIRE_FALSE(snapshot.empty());
                    return absl::OkStatus();
                  },
                  &start)
              .ok());
  REQUIRE((*reader)->Start(start).ok());

  db.Exec("INSERT INTO global_settings (name, value) VALUES ('a', '1'), ('b', '2')");
  db.Exec("UPDATE global_settings SET value = '3' WHERE name = 'a'");
  db.Exec("DELETE FROM global_settings WHERE name = 'b'");
  // Not for this peer: site data, and what was applied from the peer itself.
  db.Exec("INSERT INTO wal_site_data VALUES (1)");
  db.Exec("SELECT pg_replication_origin_create('" + replication::OriginName("P01") + "')");
  db.Exec("SELECT pg_replication_origin_session_setup('" + replication::OriginName("P01") +
          "'); SET strata.applying = on; INSERT INTO global_settings (name, value, _hlc, "
          "_origin) VALUES ('from-p01', 'x', 1, 'P01')");
  db.Exec("INSERT INTO global_settings (name, value) VALUES ('c', '4')");

  WalPosition end;
  auto changes = ReadChanges(**reader, 5, &end);
  std::vector<std::string> seen;
  for (const auto& c : changes) seen.push_back(Describe(c));
  REQUIRE(seen == std::vector<std::string>{"global_settings U [\"a\"]", "global_settings U [\"b\"]",
                                           "global_settings U [\"a\"]", "global_settings D [\"b\"]",
                                           "global_settings U [\"c\"]"});
  // Each change carries the row and stamps as the trigger log recorded them.
  for (const auto& c : changes) {
    const std::string key = c.key();
    REQUIRE(c.origin_site() == "CAS");
    REQUIRE(c.hlc() > 0);
    if (c.op() == v1::CHANGE_OP_DELETE) {
      REQUIRE(db.ScalarInt("SELECT hlc FROM repl_tombstone WHERE key = '" + key + "'") == c.hlc());
      continue;
    }
    const std::string logged =
        db.Scalar("SELECT row_data::jsonb = $1::jsonb FROM repl_log WHERE key = $2 AND hlc = $3",
                  {c.row_json(), key, std::to_string(c.hlc())});
    REQUIRE(logged == "t");
  }
}

TEST_CASE("a reader resumes after the acknowledged position, inside a transaction too") {
  TestDatabase db("walread");
  testing::SlotsDropper slots{db};
  Prepare(db, "CAS");
  replication::TypeMap types;
  replication::Catalog catalog = LoadCatalog(db, &types);
  WalPosition start;
  WalPosition cut;
  {
    auto reader = WalReader::Open(db.conninfo(), Down("P01"), catalog, types);
    REQUIRE(reader.ok());
    REQUIRE(
        (*reader)->Reinitialize([](const std::string&) { return absl::OkStatus(); }, &start).ok());
    REQUIRE((*reader)->Start(start).ok());
    db.Exec(
        "INSERT INTO global_settings (name, value) SELECT 'k' || g, 'v' FROM "
        "generate_series(1, 10) g");
    db.Exec("INSERT INTO global_settings (name, value) VALUES ('last', 'v')");
    // Four changes at a time: the first transaction is cut.
    std::vector<v1::Change> got;
    auto deadline = absl::Now() + absl::Seconds(20);
    while (got.empty()) {
      REQUIRE(absl::Now() < deadline);
      auto b = (*reader)->Read(4, 1 << 20, absl::Milliseconds(200));
      REQUIRE(b.ok());
      got = b->changes;
      cut = b->end;
    }
    REQUIRE(got.size() == 4);
    REQUIRE(cut.index == 4);
    REQUIRE((*reader)->Confirm(cut).ok());
  }
  // A new session (the peer applied through `cut`) gets the rest once.
  auto reader = WalReader::Open(db.conninfo(), Down("P01"), catalog, types);
  REQUIRE(reader.ok());
  REQUIRE((*reader)->Start(cut).ok());
  WalPosition end;
  auto rest = ReadChanges(**reader, 7, &end);
  REQUIRE(rest.size() == 7);
  REQUIRE(rest.front().key() == "[\"k5\"]");
  REQUIRE(rest.back().key() == "[\"last\"]");
  // Nothing more comes; the position an idle read reaches loses nothing:
  // a session started there gets the next change, once.
  auto idle = (*reader)->Read(100, 1 << 20, absl::Seconds(1));
  REQUIRE(idle.ok());
  REQUIRE(idle->changes.empty());
  REQUIRE(end <= idle->end);
  REQUIRE(idle->end.index == replication::kWholeTransaction);
  REQUIRE((*reader)->Confirm(idle->end).ok());
  reader->reset();
  db.Exec("INSERT INTO global_settings (name, value) VALUES ('after-idle', 'v')");
  auto again = WalReader::Open(db.conninfo(), Down("P01"), catalog, types);
  REQUIRE(again.ok());
  REQUIRE((*again)->Start(idle->end).ok());
  auto next = ReadChanges(**again, 1, &end);
  REQUIRE(next.size() == 1);
  REQUIRE(next[0].key() == "[\"after-idle\"]");
  auto none = (*again)->Read(100, 1 << 20, absl::Milliseconds(500));
  REQUIRE(none.ok());
  REQUIRE(none->changes.empty());
}

TEST_CASE("an update that left a large value out of the WAL sends the whole row") {
  TestDatabase db("walread");
  testing::SlotsDropper slots{db};
  Prepare(db, "CAS");
  replication::TypeMap types;
  replication::Catalog catalog = LoadCatalog(db, &types);
  auto reader = WalReader::Open(db.conninfo(), Down("P01"), catalog, types);
  REQUIRE(reader.ok());
  WalPosition start;
  REQUIRE(
      (*reader)->Reinitialize([](const std::string&) { return absl::OkStatus(); }, &start).ok());
  REQUIRE((*reader)->Start(start).ok());
  db.Exec("ALTER TABLE global_settings ALTER COLUMN value SET STORAGE EXTERNAL");
  db.Exec("INSERT INTO global_settings (name, value) VALUES ('big', repeat('x', 50000))");
  db.Exec("UPDATE global_settings SET updated_at = now() WHERE name = 'big'");
  WalPosition end;
  auto changes = ReadChanges(**reader, 2, &end);
  REQUIRE(changes.size() == 2);
  for (const auto& c : changes) {
    REQUIRE(db.Scalar("SELECT length($1::jsonb ->> 'value')", {c.row_json()}) == "50000");
  }
  REQUIRE(changes[1].hlc() > changes[0].hlc());
}
