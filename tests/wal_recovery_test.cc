// The links' recovery from what happens to PostgreSQL itself: a slot that
// lost its WAL, a crash mid-stream, and a site upgraded from the trigger log.
#include <signal.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/store/database.h"
#include "tests/fixture/site_fixture.h"
#include "tests/hierarchy_helpers.h"

using namespace strata;
using namespace strata::testing;

using std::chrono::seconds;

namespace {

// Runs one statement on the test server's maintenance database, outside
// any transaction (ALTER SYSTEM).
void AdminExec(const std::string& sql) {
  const std::string cmd = absl::StrCat("psql -X -q -v ON_ERROR_STOP=1 \"", AdminConninfo(),
                                       "\" -c \"", sql, "\" >/dev/null");
  INFO(cmd);
  REQUIRE(std::system(cmd.c_str()) == 0);
}

}  // namespace

TEST_CASE("a peer whose slot lost its WAL is re-initialized from a snapshot: nothing lost") {
  Hierarchy h;
  h.cas->db().Exec("INSERT INTO global_settings (name, value) VALUES ('doomed', 'x')");
  REQUIRE(Eventually(h.p02->db(), CountOf("name = 'doomed'"), "1"));
  REQUIRE(h.p02->Stop() == 0);
  // The server keeps at most 1 MB of WAL for a slot; P02's falls behind by
  // far more while it is away, and a checkpoint invalidates it.
  AdminExec("ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'");
  AdminExec("SELECT pg_reload_conf()");
  struct Restore {
    ~Restore() {
      AdminExec("ALTER SYSTEM RESET max_slot_wal_keep_size");
      AdminExec("SELECT pg_reload_conf()");
    }
  } restore;
  h.cas->db().Exec("DELETE FROM global_settings WHERE name = 'doomed'");
  bool lost = WaitFor(
      [&] {
        h.cas->db().Exec(
            "INSERT INTO global_settings (name, value) SELECT 'away-' || g || '-' || "
            "gen_random_uuid(), repeat('w', 2000) FROM generate_series(1, 500) g");
        AdminExec("SELECT pg_switch_wal()");
        AdminExec("CHECKPOINT");
        return h.cas->db().Scalar(
                   "SELECT wal_status FROM pg_replication_slots WHERE slot_name "
                   "= 'strata_cas_to_p02'") == "lost";
      },
      seconds(60));
  REQUIRE(lost);
  const std::string away = h.cas->db().Scalar(CountOf("name LIKE 'away-%'"));
  h.p02->Start();
  REQUIRE(Eventually(h.p02->db(), CountOf("name LIKE 'away-%'"), away, seconds(60)));
  // The delete made while away reached P02 too: the snapshot removed the row.
  REQUIRE(Eventually(h.p02->db(), CountOf("name = 'doomed'"), "0"));
  REQUIRE_THAT(h.cas->LogText(), Catch::Contains("the peer's slot lost its WAL"));
  // And the link goes on from its new slot.
  h.cas->db().Exec("INSERT INTO global_settings (name, value) VALUES ('after-lost', 'x')");
  REQUIRE(Eventually(h.p02->db(), CountOf("name = 'after-lost'"), "1"));
}

TEST_CASE("PostgreSQL crashed and restarted mid-stream: nothing lost, nothing duplicated") {
  const char* data = std::getenv("STRATA_TEST_PGDATA");
  INFO("tests/run.sh exports STRATA_TEST_PGDATA, the test server's data directory");
  REQUIRE(data != nullptr);
  Hierarchy h({}, false);
  RecordWrites(h.p01->db());
  RecordWrites(h.s01->db());
  constexpr int kRows = 1500;
  absl::Status written;
  std::thread writer([&] {
    // The writer reconnects and retries through the restart (each row once),
    // its commits durable.
    for (int i = 0; i < kRows; ++i) {
      absl::Status s;
      for (int attempt = 0; attempt < 200; ++attempt) {
        auto conn =
            store::Connection::Open(h.cas->db().conninfo() + " options='-c synchronous_commit=on'");
        s = conn.ok() ? (*conn)
                            ->Exec(
                                "INSERT INTO global_settings (name, value) VALUES ($1, 'w') "
                                "ON CONFLICT (name) DO NOTHING",
                                {absl::StrCat("restart-", i)})
                            .status()
                      : conn.status();
        if (s.ok()) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      if (!s.ok()) {
        written = s;
        return;
      }
      if (i % 10 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  });
  REQUIRE(Eventually(
      h.s01->db(), "SELECT count(*) > 100 FROM global_settings WHERE name LIKE 'restart-%'", "t"));
  // An immediate stop (a crash: recovery on start). The writer's commits
  // are durable; the site servers' are not (the test server runs with
  // synchronous_commit off), so an applied batch may be lost with its
  // watermark and must come again. (A fast shutdown would wait for every
  // walsender's peer to confirm what it was sent, and here those peers'
  // databases are on the same server, going down too.)
  const std::string pg_ctl = absl::StrCat(getuid() == 0 ? "runuser -u postgres -- " : "",
                                          "/usr/lib/postgresql/15/bin/pg_ctl -D ", data, " -l ",
                                          data, "/../server.log -m immediate -t 120 -w restart >",
                                          h.dir.path(), "/pg_ctl.out 2>&1");
  const int restarted = std::system(pg_ctl.c_str());
  writer.join();
  INFO(ReadWholeFile(h.dir.path() + "/pg_ctl.out"));
  REQUIRE(restarted == 0);
  REQUIRE(written.ok());
  const std::string total = std::to_string(kRows);
  REQUIRE(h.cas->db().Scalar(CountOf("name LIKE 'restart-%'")) == total);
  bool all_at_p01 = Eventually(h.p01->db(), CountOf("name LIKE 'restart-%'"), total, seconds(90));
  INFO("missing at P01: " << h.cas->db().Scalar(
           "SELECT string_agg(name || '@' || _hlc, ' ') FROM global_settings WHERE name LIKE "
           "'restart-%' AND name <> ALL($1::text[])",
           {h.p01->db().Scalar("SELECT array_agg(name)::text FROM global_settings")}));
  REQUIRE(all_at_p01);
  REQUIRE(Eventually(h.s01->db(), CountOf("name LIKE 'restart-%'"), total, seconds(90)));
  REQUIRE(WritesOf(h.p01->db(), "restart-%") == total + "/" + total);
  REQUIRE(WritesOf(h.s01->db(), "restart-%") == total + "/" + total);
  REQUIRE(h.cas->running());
  REQUIRE(h.p01->running());
  REQUIRE(
      WaitFor([&] { return h.p01->LinkActive("CAS") && h.s01->LinkActive("P01"); }, seconds(30)));
}

TEST_CASE(
    "a site upgraded from the trigger log (a new log epoch, as migration 0004 starts) "
    "re-initializes its peers once: nothing lost") {
  Hierarchy h({}, false);
  h.p01->db().Exec(
      "INSERT INTO global_settings (name, value) VALUES ('old-p01', 'x'), "
      "('gone-p01', 'x')");
  REQUIRE(Eventually(h.cas->db(), CountOf("name IN ('old-p01', 'gone-p01')"), "2"));
  REQUIRE(h.p01->Stop() == 0);
  // What the upgrade does to P01's database: a new epoch for its changes.
  // Writes made meanwhile are only in the new WAL-era history.
  h.p01->db().Exec("UPDATE repl_identity SET log_epoch = gen_random_uuid()");
  h.p01->db().Exec("INSERT INTO global_settings (name, value) VALUES ('new-p01', 'x')");
  h.p01->db().Exec("DELETE FROM global_settings WHERE name = 'gone-p01'");
  h.p01->Start();
  for (SiteProcess* s : {h.cas.get(), h.s01.get()}) {
    INFO("site " << s->code());
    REQUIRE(Eventually(s->db(), CountOf("name IN ('old-p01', 'new-p01')"), "2", seconds(60)));
    REQUIRE(Eventually(s->db(), CountOf("name = 'gone-p01'"), "0"));
  }
  // P01, the sender, re-initialized both peers of its changes.
  REQUIRE_THAT(h.p01->LogText(), Catch::Contains("peer knows another log epoch"));
}
