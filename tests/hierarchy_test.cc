// A whole hierarchy as real processes: CAS, two primaries, a secondary under
// P01, each with its own database, linked by mutual-TLS gRPC streams over
// unix sockets.
#include <signal.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/net/tls.h"
#include "common/site/site_server.h"
#include "common/store/database.h"
#include "strata/v1/site_link.grpc.pb.h"
#include "tests/fixture/site_fixture.h"
#include "tests/hierarchy_helpers.h"

using namespace strata;
using namespace strata::testing;

using std::chrono::seconds;

namespace {

std::string RunCommand(const std::string& cmd, int* exit_code) {
  std::string out;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int rc = pclose(p);
  *exit_code = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  return out;
}

}  // namespace

TEST_CASE("global data reaches every site, site data goes up only, origins are kept") {
  Hierarchy h;
  RecordWrites(h.p01->db());
  h.cas->db().Exec("INSERT INTO global_settings (name, value) VALUES ('from-cas', 'c')");
  h.p01->db().Exec("INSERT INTO global_settings (name, value) VALUES ('from-p01', 'p1')");
  h.p02->db().Exec("INSERT INTO global_settings (name, value) VALUES ('from-p02', 'p2')");
  h.p01->db().Exec(
      "INSERT INTO devices (id, name, site_code) VALUES ('00000000-0000-0000-0000-0000000000a1', "
      "'p01-laptop', 'P01')");
  h.s01->db().Exec(
      "INSERT INTO devices (id, name, site_code) VALUES ('00000000-0000-0000-0000-0000000000b1', "
      "'branch-pc', 'P01')");

  const std::string all_three = CountOf("name IN ('from-cas', 'from-p01', 'from-p02')");
  for (SiteProcess* site : {h.cas.get(), h.p01.get(), h.p02.get(), h.s01.get()}) {
    INFO("site " << site->code());
    REQUIRE(Eventually(site->db(), all_three, "3"));
    // Three hops (P02 -> CAS -> P01 -> S01) and the origin is still P02.
    REQUIRE(site->db().Scalar("SELECT _origin FROM global_settings WHERE name = 'from-p02'") ==
            "P02");
    REQUIRE(Eventually(site->db(),
                       "SELECT string_agg(code || ':' || type || ':' || coalesce(parent, '-'), ' ' "
                       "ORDER BY code) FROM sites",
                       "CAS:cas:- P01:primary:CAS P02:primary:CAS S01:secondary:P01"));
  }
  // Site data: P01's device and the branch office's reach the CAS ...
  REQUIRE(Eventually(h.cas->db(), "SELECT string_agg(name, ',' ORDER BY name) FROM devices",
                     "branch-pc,p01-laptop"));
  REQUIRE(Eventually(h.p01->db(), "SELECT string_agg(name, ',' ORDER BY name) FROM devices",
                     "branch-pc,p01-laptop"));
  // ... and nowhere else: once a later global marker has reached P02 and S01,
  // the devices still have not.
  h.cas->db().Exec("INSERT INTO global_settings (name, value) VALUES ('marker', 'm')");
  REQUIRE(Eventually(h.p02->db(), CountOf("name = 'marker'"), "1"));
  REQUIRE(Eventually(h.s01->db(), CountOf("name = 'marker'"), "1"));
  REQUIRE(h.p02->db().ScalarInt("SELECT count(*) FROM devices") == 0);
  REQUIRE(h.s01->db().ScalarInt("SELECT count(*) FROM devices WHERE name = 'p01-laptop'") == 0);
  // Each change was applied once at P01 (which forwards it to S01).
  REQUIRE(WritesOf(h.p01->db(), "from-cas") == "1/1");

  // Link health, through the RPC and through the status command.
  auto status = h.cas->Status();
  REQUIRE(status.links_size() == 2);
  for (const auto& l : status.links()) {
    REQUIRE(l.state() == v1::LINK_STATE_ACTIVE);
    REQUIRE(l.role() == "child");
    REQUIRE(l.last_contact_unix_ms() > 0);
  }
  REQUIRE(WaitFor(
      [&] {
        auto l = h.s01->Link("P01");
        return l && l->lag_changes() == 0;
      },
      seconds(30)));
  int rc = 0;
  std::string out = RunCommand(
      BinaryFor(v1::SITE_TYPE_PRIMARY) + " status --config " + h.p01->config_path(), &rc);
  INFO(out);
  REQUIRE(rc == 0);
  REQUIRE_THAT(out, Catch::Contains("site P01 (primary site)"));
  REQUIRE_THAT(out, Catch::Matches("(.|\n)*CAS +parent +active +yes(.|\n)*"));
  REQUIRE_THAT(out, Catch::Matches("(.|\n)*S01 +child +active +yes(.|\n)*"));
}

TEST_CASE(
    "8 concurrent writers committing out of order at the CAS: every row arrives exactly once") {
  Hierarchy h({}, false);
  RecordWrites(h.p01->db());
  constexpr int kWriters = 8, kEach = 100;
  std::vector<std::thread> writers;
  std::vector<absl::Status> results(kWriters);  // checked after join: no asserts in threads
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      auto conn = store::Connection::Open(h.cas->db().conninfo());
      if (!conn.ok()) {
        results[w] = conn.status();
        return;
      }
      std::mt19937 rng(w);
      for (int i = 0; i < kEach && results[w].ok(); ++i) {
        std::string pause = absl::StrCat(std::uniform_int_distribution<int>(0, 5)(rng) / 1000.0);
        results[w] = (*conn)->Transact([&](store::Transaction& tx) -> absl::Status {
          auto r = tx.Exec("INSERT INTO global_settings (name, value) VALUES ($1, $2)",
                           {absl::StrCat("cw-", w, "-", i), std::to_string(i)});
          if (!r.ok()) return r.status();
          return tx.Exec("SELECT pg_sleep($1::float8)", {pause}).status();
        });
      }
    });
  }
  for (auto& t : writers) t.join();
  for (const auto& r : results) REQUIRE(r.ok());
  const std::string total = std::to_string(kWriters * kEach);
  REQUIRE(Eventually(h.s01->db(), CountOf("name LIKE 'cw-%'"), total, seconds(60)));
  REQUIRE(Eventually(h.p01->db(), CountOf("name LIKE 'cw-%'"), total));
  // P01 applied each CAS change once.
  REQUIRE(WritesOf(h.p01->db(), "cw-%") == total + "/" + total);
  REQUIRE(h.s01->db().ScalarInt("SELECT count(*) FROM global_settings WHERE name LIKE 'cw-%' AND "
                                "value <> split_part(name, '-', 3)") == 0);
}

TEST_CASE("kill -9 of a primary mid-stream, then restart: nothing lost, nothing duplicated") {
  Hierarchy h({}, false);
  RecordWrites(h.p01->db());
  constexpr int kRows = 1500;
  absl::Status written;
  std::thread writer([&] {
    written = WriteSettings(h.cas->db().conninfo(), "kill-", kRows, std::chrono::milliseconds(3));
  });
  // P01 also authors site data while it dies.
  std::thread device_writer([&] {
    for (int i = 0; i < 300; ++i) {
      auto conn = store::Connection::Open(h.p01->db().conninfo());
      if (!conn.ok()) continue;
      (void)(*conn)->Exec(
          absl::StrCat("INSERT INTO devices (id, name, site_code) VALUES (gen_random_uuid(), 'dev-",
                       i, "', 'P01')"));
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  });
  REQUIRE(Eventually(h.p01->db(),
                     "SELECT count(*) > 100 FROM global_settings WHERE name LIKE 'kill-%'", "t"));
  h.p01->Kill9();
  std::this_thread::sleep_for(std::chrono::milliseconds(800));
  h.p01->Start();
  writer.join();
  device_writer.join();
  REQUIRE(written.ok());
  const std::string total = std::to_string(kRows);
  REQUIRE(Eventually(h.p01->db(), CountOf("name LIKE 'kill-%'"), total, seconds(60)));
  REQUIRE(Eventually(h.s01->db(), CountOf("name LIKE 'kill-%'"), total, seconds(60)));
  REQUIRE(WritesOf(h.p01->db(), "kill-%") == total + "/" + total);
  // The CAS holds exactly P01's devices: same rows, none missing, none extra.
  const std::string fingerprint =
      "SELECT count(*) || ':' || md5(coalesce(string_agg(id || '/' || name, ',' ORDER BY id), '')) "
      "FROM devices";
  const std::string at_p01 = h.p01->db().Scalar(fingerprint);
  REQUIRE(at_p01.rfind("0:", 0) != 0);  // P01 did record devices while it died
  REQUIRE(Eventually(h.cas->db(), fingerprint, at_p01, seconds(60)));
}

TEST_CASE("a link cut for a while shows as failed, then drains its backlog when restored") {
  Hierarchy h;
  REQUIRE(h.cas->Stop() == 0);
  for (int i = 0; i < 400; ++i) {
    h.p01->db().Exec("INSERT INTO global_settings (name, value) VALUES ($1, 'b')",
                     {absl::StrCat("cut-", i)});
  }
  h.p01->db().Exec(
      "INSERT INTO devices (id, name, site_code) SELECT gen_random_uuid(), 'cut-dev-' || g, 'P01' "
      "FROM generate_series(1, 200) g");
  // While the parent is away P01 reports the link failed, with the reason.
  REQUIRE(WaitFor(
      [&] {
        auto l = h.p01->Link("CAS");
        return l && !l->connected() && l->state() == v1::LINK_STATE_FAILED &&
               !l->last_error().empty();
      },
      seconds(30)));
  // The backlog the slot holds (decoded up to the flushed WAL: commits in
  // tests are asynchronous, so the last may take a moment to count).
  REQUIRE(WaitFor(
      [&] {
        auto l = h.p01->Link("CAS");
        return l && l->lag_changes() >= 600 && l->lag_seconds() > 0;
      },
      seconds(10)));
  h.cas->Start();
  REQUIRE(Eventually(h.cas->db(), CountOf("name LIKE 'cut-%'"), "400", seconds(60)));
  REQUIRE(
      Eventually(h.cas->db(), "SELECT count(*) FROM devices WHERE name LIKE 'cut-dev-%'", "200"));
  REQUIRE(Eventually(h.p02->db(), CountOf("name LIKE 'cut-%'"), "400", seconds(60)));
  REQUIRE(WaitFor(
      [&] {
        auto l = h.p01->Link("CAS");
        return l && l->connected() && l->lag_changes() == 0 && l->state() == v1::LINK_STATE_ACTIVE;
      },
      seconds(30)));
}

TEST_CASE("a conflicting edit of the same global row at two sites ends the same everywhere") {
  Hierarchy h;
  for (int round = 0; round < 5; ++round) {
    const std::string name = absl::StrCat("conflict-", round);
    // Both sites edit the row at once (an upsert: whichever sees the other's
    // version first updates it).
    // Each site's own stamp, as its write returned it.
    auto edit = [&](SiteProcess& site, absl::Status* out, int64_t* hlc) {
      auto conn = store::Connection::Open(site.db().conninfo());
      if (!conn.ok()) {
        *out = conn.status();
        return;
      }
      auto r = (*conn)->Exec(
          "INSERT INTO global_settings (name, value) VALUES ($1, $2) ON CONFLICT "
          "(name) DO UPDATE SET value = EXCLUDED.value RETURNING _hlc",
          {name, site.code() + " wins"});
      *out = r.status();
      if (r.ok()) *hlc = r->GetInt(0, 0);
    };
    absl::Status sa, sb;
    int64_t ha = 0, hb = 0;
    std::thread a([&] { edit(*h.p01, &sa, &ha); });
    std::thread b([&] { edit(*h.p02, &sb, &hb); });
    a.join();
    b.join();
    REQUIRE(sa.ok());
    REQUIRE(sb.ok());
    // Each site stamped its own version; the higher (hlc, site code) must win everywhere.
    auto winner = std::max(std::make_pair(ha, h.p01->code()), std::make_pair(hb, h.p02->code()));
    const std::string expected = winner.second + " wins";
    for (SiteProcess* site : {h.cas.get(), h.p01.get(), h.p02.get(), h.s01.get()}) {
      INFO("site " << site->code() << " round " << round);
      REQUIRE(Eventually(
          site->db(), absl::StrCat("SELECT value FROM global_settings WHERE name = '", name, "'"),
          expected));
      REQUIRE(site->db().Scalar("SELECT _origin FROM global_settings WHERE name = $1", {name}) ==
              winner.second);
    }
  }
}

TEST_CASE("children that break the hierarchy's rules are refused with a clear error and exit") {
  TempDir dir;
  SiteProcess cas("CAS", v1::SITE_TYPE_CAS, dir, "");
  cas.Start();
  SiteProcess p01("P01", v1::SITE_TYPE_PRIMARY, dir, cas.address());
  p01.Start();
  REQUIRE(WaitFor([&] { return cas.LinkActive("P01"); }, seconds(30)));
  cas.db().Exec("INSERT INTO global_settings (name, value) VALUES ('before', 'x')");

  struct Case {
    std::string code;
    v1::SiteType type;
    std::string parent;
    std::string cert;
    std::string message;
  };
  std::vector<Case> cases = {
      {"S01", v1::SITE_TYPE_SECONDARY, cas.address(), "S01",
       "a secondary site's parent must be a primary site"},
      {"P03", v1::SITE_TYPE_PRIMARY, cas.address(), "P01",
       "certificate names site P01, but the child claims to be P03"},
      {"CAS", v1::SITE_TYPE_SECONDARY, p01.address(), "CAS",
       "site code CAS is already used in this hierarchy"},
      {"P02", v1::SITE_TYPE_PRIMARY, p01.address(), "P02",
       "a primary site's parent must be a central administration site"},
  };
  for (const auto& c : cases) {
    INFO(c.code << " -> " << c.parent);
    SiteProcess child(c.code, c.type, dir, c.parent, SiteOptions{c.cert});
    child.StartNoWait();
    REQUIRE(child.WaitExit(seconds(60)) == 3);
    REQUIRE_THAT(child.LogText(), Catch::Contains(c.message));
    REQUIRE_THAT(child.LogText(), Catch::Contains("site.refused_by_parent"));
  }
  // Nothing was recorded for them.
  REQUIRE(cas.db().Scalar("SELECT string_agg(code, ',' ORDER BY code) FROM sites") == "CAS,P01");
  REQUIRE(p01.db().ScalarInt("SELECT count(*) FROM sites WHERE parent = 'P01'") == 0);

  // A malformed site code never gets as far as the parent.
  SiteProcess bad("P01", v1::SITE_TYPE_PRIMARY, dir, cas.address());
  int rc = 0;
  std::string out = RunCommand(
      BinaryFor(v1::SITE_TYPE_PRIMARY) + " --config " + bad.config_path() + " --site_code p-1",
      &rc);
  REQUIRE(rc == 2);
  REQUIRE_THAT(out, Catch::Contains("site code \"p-1\" is invalid"));
}

namespace {

// A hand-made client holding a real site certificate, for sending what a
// correct site server never would.
struct RawLink {
  explicit RawLink(const std::string& address, const std::string& cert) {
    v1::TlsConfig tls;
    tls.set_ca_file(TestPki() + "/ca.pem");
    if (!cert.empty()) {
      tls.set_cert_file(absl::StrCat(TestPki(), "/site-", cert, ".pem"));
      tls.set_key_file(absl::StrCat(TestPki(), "/site-", cert, ".key"));
    }
    auto channel = MakeChannel(address, tls);
    REQUIRE(channel.ok());
    stub = v1::SiteLink::NewStub(*channel);
  }
  grpc::Status Attach(const std::string& code, v1::SiteType type) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + seconds(10));
    v1::AttachRequest req;
    req.set_site_code(code);
    req.set_site_type(type);
    req.set_version("test");
    v1::AttachResponse resp;
    return stub->Attach(&ctx, req, &resp);
  }
  // Opens a stream, exchanges hellos, sends `messages`, returns the final status.
  grpc::Status Send(const std::string& code, const std::vector<v1::LinkMessage>& messages) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + seconds(20));
    auto rw = stub->Replicate(&ctx);
    v1::LinkMessage hello;
    hello.mutable_hello()->set_site_code(code);
    hello.mutable_hello()->set_log_epoch("00000000-0000-0000-0000-00000000e90c");
    rw->Write(hello);
    v1::LinkMessage m;
    rw->Read(&m);
    for (const auto& msg : messages) {
      if (!rw->Write(msg)) break;
    }
    rw->WritesDone();
    // The reason comes in-band (LinkError) and, when the server could end
    // the call itself, as the call's status too.
    std::optional<grpc::Status> in_band;
    while (rw->Read(&m)) {
      if (m.has_error()) {
        in_band =
            grpc::Status(static_cast<grpc::StatusCode>(m.error().code()), m.error().message());
      }
    }
    grpc::Status final_status = rw->Finish();
    if (in_band && !final_status.ok() && final_status.error_code() != grpc::StatusCode::CANCELLED) {
      REQUIRE(final_status.error_code() == in_band->error_code());
    }
    return in_band ? *in_band : final_status;
  }
  std::unique_ptr<v1::SiteLink::Stub> stub;
};

v1::LinkMessage SnapshotBatch(std::vector<v1::Change> changes, bool end) {
  v1::LinkMessage m;
  m.mutable_batch()->set_snapshot_begin(true);
  m.mutable_batch()->set_snapshot_end(end);
  for (auto& c : changes) *m.mutable_batch()->add_changes() = c;
  m.mutable_batch()->mutable_end()->set_epoch("00000000-0000-0000-0000-00000000e90c");
  return m;
}

v1::Change SettingChange(const std::string& name, const std::string& origin,
                         const std::string& row) {
  v1::Change c;
  c.set_table("global_settings");
  c.set_op(v1::CHANGE_OP_UPSERT);
  c.set_key(absl::StrCat("[\"", name, "\"]"));
  c.set_row_json(row);
  c.set_hlc(1);
  c.set_origin_site(origin);
  return c;
}

}  // namespace

TEST_CASE(
    "no client certificate, malformed, forged or oversized batches: refused, nothing applied") {
  TempDir dir;
  SiteProcess cas("CAS", v1::SITE_TYPE_CAS, dir, "");
  cas.Start();
  SiteProcess p01("P01", v1::SITE_TYPE_PRIMARY, dir, cas.address(),
                  SiteOptions{"", 0, 1024 * 1024, 0});
  p01.Start();

  cas.db().Exec("INSERT INTO global_settings (name, value) VALUES ('from-cas', 'x')");
  REQUIRE(Eventually(p01.db(), CountOf("name = 'from-cas'"), "1"));

  // No client certificate: refused at the TLS handshake, before any service
  // (the call never reaches the server: Unavailable).
  RawLink anonymous(p01.address(), "");
  grpc::Status s = anonymous.Attach("S02", v1::SITE_TYPE_SECONDARY);
  REQUIRE(s.error_code() == grpc::StatusCode::UNAVAILABLE);
  CHECK(p01.db().Scalar("SELECT count(*) FROM sites WHERE code = 'S02'") == "0");

  // A secondary S02 that attaches correctly but then misbehaves.
  RawLink s02(p01.address(), "S02");
  REQUIRE(s02.Attach("S02", v1::SITE_TYPE_SECONDARY).ok());
  auto row = [](const std::string& origin, const std::string& updated_at) {
    return absl::StrCat(R"({"name": "evil", "value": "x", "updated_at": ")", updated_at,
                        R"(", "_hlc": 1, "_origin": ")", origin, R"("})");
  };
  const std::string good_row = row("S02", "2026-01-01T00:00:00Z");

  s = s02.Send("S02", {SnapshotBatch(
                          {SettingChange("evil", "S02", R"({"name": "evil", "value": )")}, true)});
  REQUIRE(s.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  REQUIRE_THAT(s.error_message(), Catch::Contains("malformed row"));

  s = s02.Send("S02",
               {SnapshotBatch({SettingChange("evil", "P02", row("P02", "2026-01-01"))}, true)});
  REQUIRE(s.error_code() == grpc::StatusCode::PERMISSION_DENIED);
  REQUIRE_THAT(s.error_message(), Catch::Contains("S02 may not send changes made at P02"));

  // A row whose stamps are not its change's (the change says S02, the row P02).
  s = s02.Send("S02",
               {SnapshotBatch({SettingChange("evil", "S02", row("P02", "2026-01-01"))}, true)});
  REQUIRE(s.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  REQUIRE_THAT(s.error_message(), Catch::Contains("is not the change's"));

  v1::Change unknown = SettingChange("evil", "S02", good_row);
  unknown.set_table("pg_authid");
  s = s02.Send("S02", {SnapshotBatch({unknown}, true)});
  REQUIRE(s.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  REQUIRE_THAT(s.error_message(), Catch::Contains("unknown table"));

  // Oversized: one message over the site's 1 MiB limit.
  std::string huge =
      absl::StrCat(R"({"name": "evil", "value": ")", std::string(1536 * 1024, 'x'), R"("})");
  s = s02.Send("S02", {SnapshotBatch({SettingChange("evil", "S02", huge)}, true)});
  REQUIRE(s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED);

  // Too many changes in one batch.
  std::vector<v1::Change> many(10001, SettingChange("evil", "S02", "{}"));
  s = s02.Send("S02", {SnapshotBatch(many, true)});
  REQUIRE(s.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  REQUIRE_THAT(s.error_message(), Catch::Contains("more than the limit"));

  // A regular batch (after a valid, empty snapshot) whose row only the
  // database can refuse: rejected by the applier thread, reason sent in-band.
  v1::LinkMessage regular;
  *regular.mutable_batch()->add_changes() = SettingChange("evil", "S02", row("S02", "not a time"));
  regular.mutable_batch()->mutable_end()->set_epoch("00000000-0000-0000-0000-00000000e90c");
  regular.mutable_batch()->mutable_end()->set_xid(10);
  regular.mutable_batch()->mutable_end()->set_log_id(INT64_MAX);
  s = s02.Send("S02", {SnapshotBatch({}, true), regular});
  REQUIRE(s.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  REQUIRE_THAT(s.error_message(), Catch::Contains("batch rejected"));
  REQUIRE_THAT(s.error_message(), Catch::Contains("timestamp"));

  // An empty snapshot from S02 "for" global_settings and sites speaks only
  // for S02's own rows: nothing of the CAS's or P01's is deleted.
  v1::LinkMessage wipe = SnapshotBatch({}, true);
  wipe.mutable_batch()->add_snapshot_tables("global_settings");
  wipe.mutable_batch()->add_snapshot_tables("sites");
  REQUIRE(s02.Send("S02", {wipe}).ok());
  REQUIRE(p01.db().ScalarInt("SELECT count(*) FROM global_settings WHERE name = 'from-cas'") == 1);
  REQUIRE(p01.db().Scalar("SELECT string_agg(code, ',' ORDER BY code) FROM sites") ==
          "CAS,P01,S02");

  // A stream from a site that never attached.
  RawLink p02(p01.address(), "P02");
  s = p02.Send("P02", {});
  REQUIRE(s.error_code() == grpc::StatusCode::FAILED_PRECONDITION);

  // A hello that names another site than the certificate.
  s = s02.Send("S01", {});
  REQUIRE(s.error_code() == grpc::StatusCode::PERMISSION_DENIED);

  // Nothing of it was applied, and P01 still serves its real parent.
  REQUIRE(p01.db().ScalarInt("SELECT count(*) FROM global_settings WHERE name = 'evil'") == 0);
  // Only the empty snapshot was recorded; the rejected batch moved nothing.
  REQUIRE(p01.db().ScalarInt("SELECT count(*) FROM repl_inbound WHERE peer = 'S02' AND xid < 10") ==
          1);
  cas.db().Exec("INSERT INTO global_settings (name, value) VALUES ('still-fine', 'x')");
  REQUIRE(Eventually(p01.db(), CountOf("name = 'still-fine'"), "1"));
}

TEST_CASE(
    "a new child, and one away past the retention window, are re-initialized from a snapshot") {
  TempDir dir;
  SiteProcess cas("CAS", v1::SITE_TYPE_CAS, dir, "", SiteOptions{"", 2});
  cas.Start();
  for (int i = 0; i < 50; ++i) {
    cas.db().Exec("INSERT INTO global_settings (name, value) VALUES ($1, 'early')",
                  {absl::StrCat("early-", i)});
  }
  cas.db().Exec("INSERT INTO global_settings (name, value) VALUES ('doomed', 'x')");
  // New child: written before P01 existed, the rows arrive by snapshot.
  SiteProcess p01("P01", v1::SITE_TYPE_PRIMARY, dir, cas.address());
  p01.Start();
  REQUIRE(Eventually(p01.db(), CountOf("name LIKE 'early-%' OR name = 'doomed'"), "51"));
  REQUIRE_THAT(p01.LogText(), Catch::Contains("link.snapshot_applied"));

  REQUIRE(p01.Stop() == 0);
  for (int i = 0; i < 50; ++i) {
    cas.db().Exec("INSERT INTO global_settings (name, value) VALUES ($1, 'late')",
                  {absl::StrCat("late-", i)});
  }
  cas.db().Exec("DELETE FROM global_settings WHERE name = 'doomed'");
  // Past retention the CAS drops P01's slot: the WAL P01 never
  // acknowledged is no longer kept for it.
  REQUIRE(Eventually(cas.db(),
                     "SELECT count(*) FROM pg_replication_slots WHERE slot_name = "
                     "'strata_cas_to_p01'",
                     "0", seconds(30)));
  p01.Start();
  REQUIRE(Eventually(p01.db(), CountOf("name LIKE 'late-%'"), "50"));
  // The delete's log entry is gone, yet the snapshot removed the row.
  REQUIRE(Eventually(p01.db(), CountOf("name = 'doomed'"), "0"));
  REQUIRE(WaitFor(
      [&] {
        auto l = p01.Link("CAS");
        return l && l->snapshots_applied() == 1;
      },
      seconds(10)));
}

TEST_CASE(
    "a primary started before its CAS shows the link failed, then links when the CAS comes up") {
  TempDir dir;
  SiteProcess cas("CAS", v1::SITE_TYPE_CAS, dir, "");
  SiteProcess p01("P01", v1::SITE_TYPE_PRIMARY, dir, cas.address());
  p01.Start();  // nothing listens at the CAS's address yet
  REQUIRE(WaitFor(
      [&] {
        auto l = p01.Link("parent");
        return l && !l->connected() && l->role() == "parent" && !l->last_error().empty() &&
               l->state() == v1::LINK_STATE_FAILED;
      },
      seconds(30)));
  cas.Start();
  REQUIRE(WaitFor([&] { return p01.LinkActive("CAS"); }, seconds(60)));
  // The placeholder for the not-yet-reached parent is gone: one link, to the CAS.
  auto status = p01.Status();
  REQUIRE(status.links_size() == 1);
  REQUIRE(status.links(0).peer_site_code() == "CAS");
  REQUIRE(status.parent_site_code() == "CAS");
}

TEST_CASE("a site's database dropping every connection mid-stream loses and duplicates nothing") {
  Hierarchy h({}, false);
  RecordWrites(h.p01->db());
  constexpr int kRows = 1200;
  absl::Status written;
  std::thread writer([&] {
    written = WriteSettings(h.cas->db().conninfo(), "dbgone-", kRows, std::chrono::milliseconds(2));
  });
  REQUIRE(Eventually(h.p01->db(),
                     "SELECT count(*) > 100 FROM global_settings WHERE name LIKE 'dbgone-%'", "t"));
  // Every connection P01's site server holds to its database goes, twice.
  for (int round = 0; round < 2; ++round) {
    auto admin = store::Connection::Open(AdminConninfo());
    REQUIRE(admin.ok());
    auto killed = (*admin)->Exec(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1 AND pid "
        "<> pg_backend_pid()",
        {h.p01->db().name()});
    REQUIRE(killed.ok());
    REQUIRE(killed->GetInt(0, 0) > 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
  }
  writer.join();
  REQUIRE(written.ok());
  const std::string total = std::to_string(kRows);
  REQUIRE(Eventually(h.p01->db(), CountOf("name LIKE 'dbgone-%'"), total, seconds(60)));
  REQUIRE(Eventually(h.s01->db(), CountOf("name LIKE 'dbgone-%'"), total, seconds(60)));
  REQUIRE(WritesOf(h.p01->db(), "dbgone-%") == total + "/" + total);
  // The site server kept running and its links came back.
  REQUIRE(h.p01->running());
  REQUIRE(
      WaitFor([&] { return h.p01->LinkActive("CAS") && h.p01->LinkActive("S01"); }, seconds(30)));
}
