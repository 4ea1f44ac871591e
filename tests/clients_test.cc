// Management points and agents against a real hierarchy: CAS, P01, and S01
// under P01, each with its own database; an MP at P01 and at S01; the real
// agent on this machine and simulated clients, all over mutual TLS.
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "bench/clientsim/sim_client.h"
#include "common/net/pki.h"
#include "common/net/tls.h"
#include "tests/fixture/client_fixture.h"
#include "tests/fixture/site_fixture.h"

using namespace strata;
using namespace strata::testing;
using std::chrono::seconds;

namespace {

// The installed packages as "name version" lines, sorted, from dpkg-query.
std::set<std::string> DpkgInstalled(const std::string& admindir = "/var/lib/dpkg") {
  std::vector<std::string> lines =
      absl::StrSplit(RunCommand(absl::StrCat(
                         "dpkg-query --admindir=", admindir,
                         " -W -f='${db:Status-Abbrev} ${Package} ${Version}\\n' | awk '$1==\"ii\" "
                         "{print $2\" \"$3}'")),
                     '\n', absl::SkipEmpty());
  return {lines.begin(), lines.end()};
}

std::set<std::string> SoftwareAt(const TestDatabase& db, const std::string& id) {
  auto conn = db.Connect();
  auto r =
      conn->Exec("SELECT name || ' ' || version FROM device_software WHERE device_id = $1", {id});
  REQUIRE(r.ok());
  std::set<std::string> out;
  for (size_t i = 0; i < r->size(); ++i) out.insert(r->GetString(i, 0));
  return out;
}

}  // namespace

TEST_CASE("the real agent's inventory reaches P01 and the CAS and matches this machine",
          "[clients]") {
  ClientHierarchy h;
  AgentRun run = RunAgentOnce(h.dir, "host1", h.mp_p01->address(), {"--token", kToken});
  INFO(run.log << "\nMP log:\n" << h.mp_p01->LogText());
  REQUIRE(run.exit_code == 0);
  const std::string id = AgentClientId(h.dir, "host1");
  REQUIRE(id.size() == 36);
  const std::set<std::string> dpkg = DpkgInstalled();
  REQUIRE(dpkg.size() > 50);
  REQUIRE(Eventually(h.p01->db(),
                     "SELECT count(*) FROM device_software WHERE device_id = '" + id + "'",
                     std::to_string(dpkg.size())));
  CHECK(SoftwareAt(h.p01->db(), id) == dpkg);
  // Site data goes up: the same rows at the CAS.
  REQUIRE(Eventually(h.cas->db(),
                     "SELECT count(*) FROM device_software WHERE device_id = '" + id + "'",
                     std::to_string(dpkg.size())));
  CHECK(SoftwareAt(h.cas->db(), id) == dpkg);
  CHECK(h.cas->db().Scalar("SELECT site_code || ' ' || registered_via FROM devices WHERE id = $1",
                           {id}) == "P01 P01");
  // (That the CAS passes no site data on to other primaries is
  // hierarchy_test's "site data goes up only".)

  std::ifstream meminfo("/proc/meminfo");
  std::string key, kb;
  meminfo >> key >> kb;
  CHECK(h.p01->db().Scalar("SELECT total_kb FROM device_memory WHERE device_id = $1", {id}) == kb);
  std::string nics = RunCommand("ls /sys/class/net | sort | paste -sd,");
  nics.erase(nics.find_last_not_of('\n') + 1);
  CHECK(h.cas->db().Scalar("SELECT string_agg(name, ',' ORDER BY name) FROM device_network WHERE "
                           "device_id = $1",
                           {id}) == nics);
  CHECK(h.p01->db().Scalar("SELECT kernel FROM device_os WHERE device_id = $1", {id}) ==
        RunCommand("uname -r").substr(0, RunCommand("uname -r").size() - 1));

  // A second run with nothing changed sends a delta that touches no software row.
  std::string before =
      h.p01->db().Scalar("SELECT max(_hlc) FROM device_software WHERE device_id = $1", {id});
  run = RunAgentOnce(h.dir, "host1", h.mp_p01->address());
  REQUIRE(run.exit_code == 0);
  CHECK(run.log.find("full=false") != std::string::npos);
  std::string seq = h.p01->db().Scalar("SELECT inventory_seq FROM devices WHERE id = $1", {id});
  REQUIRE(Eventually(h.p01->db(),
                     "SELECT inventory_seq > " + seq + " OR last_report_seq > " + seq +
                         " FROM devices WHERE id = '" + id + "'",
                     "t"));
  CHECK(h.p01->db().Scalar("SELECT max(_hlc) FROM device_software WHERE device_id = $1", {id}) ==
        before);
}

TEST_CASE(
    "a package change sends a delta of exactly those rows; a missing delta forces a full "
    "inventory",
    "[clients]") {
  ClientHierarchy h;
  // A dpkg database of our own, copied from this machine.
  const std::string dpkg_dir = h.dir.path() + "/dpkg";
  std::filesystem::create_directories(dpkg_dir);
  std::filesystem::copy_file("/var/lib/dpkg/status", dpkg_dir + "/status");
  auto run = [&] {
    return RunAgentOnce(h.dir, "host2", h.mp_p01->address(),
                        {"--token", kToken, "--dpkg_dir", dpkg_dir});
  };
  AgentRun first = run();
  INFO(first.log);
  REQUIRE(first.exit_code == 0);
  const std::string id = AgentClientId(h.dir, "host2");
  const auto installed = DpkgInstalled(dpkg_dir);
  REQUIRE(Eventually(h.p01->db(),
                     "SELECT count(*) FROM device_software WHERE device_id = '" + id + "'",
                     std::to_string(installed.size())));
  const std::string hlc_before =
      h.p01->db().Scalar("SELECT max(_hlc) FROM device_software WHERE device_id = $1", {id});

  // Install a package, remove one, upgrade one.
  std::string status = ReadWholeFile(dpkg_dir + "/status");
  std::vector<std::string> stanzas = absl::StrSplit(status, "\n\n", absl::SkipEmpty());
  auto name_of = [](const std::string& stanza) {
    return stanza.substr(9, stanza.find('\n') - 9);  // "Package: x"
  };
  std::string removed = name_of(stanzas[0]);
  std::string upgraded = name_of(stanzas[1]);
  stanzas.erase(stanzas.begin());
  size_t v = stanzas[0].find("\nVersion: ");
  REQUIRE(v != std::string::npos);
  stanzas[0].replace(v, stanzas[0].find('\n', v + 1) - v, "\nVersion: 99.0-strata1");
  stanzas.push_back(
      "Package: strata-test-package\nStatus: install ok installed\nArchitecture: all\nVersion: "
      "1.2.3-1\nDescription: a package the test installs");
  std::ofstream(dpkg_dir + "/status", std::ios::trunc) << absl::StrJoin(stanzas, "\n\n") << "\n";

  AgentRun second = run();
  INFO(second.log);
  REQUIRE(second.exit_code == 0);
  CHECK(second.log.find("full=false software=" + std::to_string(installed.size()) +
                        " changed=2 removed=1") != std::string::npos);
  REQUIRE(Eventually(h.p01->db(),
                     "SELECT count(*) FROM device_software WHERE device_id = '" + id +
                         "' AND name = 'strata-test-package' AND version = '1.2.3-1'",
                     "1"));
  CHECK(SoftwareAt(h.p01->db(), id) == DpkgInstalled(dpkg_dir));
  // Exactly the two written rows changed (the removed one is gone).
  CHECK(h.p01->db().Scalar(
            "SELECT string_agg(name, ',' ORDER BY name) FROM device_software WHERE device_id = $1 "
            "AND _hlc > $2",
            {id, hlc_before}) == (upgraded < "strata-test-package"
                                      ? upgraded + ",strata-test-package"
                                      : "strata-test-package," + upgraded));
  CHECK(h.p01->db().ScalarInt(
            "SELECT count(*) FROM device_software WHERE device_id = $1 AND name = $2",
            {id, removed}) == 0);

  // A delta the site cannot place (its base is not what the site holds, as
  // when a report was lost): not applied, and the site asks for a full one.
  h.p01->db().Exec("UPDATE devices SET inventory_seq = inventory_seq - 1 WHERE id = $1", {id});
  std::ofstream(dpkg_dir + "/status", std::ios::app)
      << "\nPackage: strata-second-package\nStatus: install ok installed\nArchitecture: all\n"
         "Version: 2.0\n";
  AgentRun third = run();
  REQUIRE(third.exit_code == 0);
  REQUIRE(Eventually(h.p01->db(),
                     "SELECT needs_full_inventory FROM devices WHERE id = '" + id + "'", "t"));
  CHECK(h.p01->db().ScalarInt("SELECT count(*) FROM device_software WHERE name = "
                              "'strata-second-package'") == 0);
  REQUIRE(WaitFor(
      [&] {
        return h.p01->LogText().find("full_inventory_requested client=" + id) != std::string::npos;
      },
      seconds(10)));
  AgentRun fourth = run();
  INFO(fourth.log);
  REQUIRE(fourth.exit_code == 0);
  CHECK(fourth.log.find("full=true") != std::string::npos);
  REQUIRE(Eventually(h.p01->db(),
                     "SELECT needs_full_inventory FROM devices WHERE id = '" + id + "'", "f"));
  CHECK(SoftwareAt(h.p01->db(), id) == DpkgInstalled(dpkg_dir));
}

TEST_CASE("refusals: enrollment tokens, approval, another client's id, size and malformed data",
          "[clients]") {
  ClientHierarchy h;
  SECTION("no token and a bad token are refused; nothing is stored") {
    AgentRun none = RunAgentOnce(h.dir, "h-none", h.mp_p01->address());
    CHECK(none.exit_code == 3);
    CHECK(none.log.find("an enrollment token is required") != std::string::npos);
    AgentRun bad = RunAgentOnce(h.dir, "h-bad", h.mp_p01->address(), {"--token", "wrong"});
    CHECK(bad.exit_code == 3);
    CHECK(bad.log.find("not recognized") != std::string::npos);
    CHECK(h.p01->db().ScalarInt("SELECT count(*) FROM devices") == 0);
  }
  SECTION("approval mode: a client without a token waits, then works once approved") {
    h.cas->db().Exec(
        "UPDATE client_settings SET approval_mode = 'manual' WHERE name = 'Default Client "
        "Settings'");
    REQUIRE(Eventually(h.p01->db(),
                       "SELECT approval_mode FROM client_settings WHERE name = 'Default Client "
                       "Settings'",
                       "manual"));
    AgentRun pending = RunAgentOnce(h.dir, "h-wait", h.mp_p01->address());
    CHECK(pending.exit_code == 1);
    CHECK(pending.log.find("waiting for an administrator's approval") != std::string::npos);
    const std::string id = AgentClientId(h.dir, "h-wait");
    CHECK(h.p01->db().Scalar("SELECT approved FROM devices WHERE id = $1", {id}) == "f");
    CHECK_FALSE(std::filesystem::exists(AgentStateDir(h.dir, "h-wait") + "/client.pem"));
    CHECK(h.p01->db().ScalarInt("SELECT count(*) FROM device_software") == 0);
    h.p01->db().Exec("UPDATE devices SET approved = true WHERE id = $1", {id});
    AgentRun approved = RunAgentOnce(h.dir, "h-wait", h.mp_p01->address());
    INFO(approved.log);
    CHECK(approved.exit_code == 0);
    CHECK(AgentClientId(h.dir, "h-wait") == id);  // re-registration keeps the id
    CHECK(Eventually(h.p01->db(),
                     "SELECT count(*) > 0 FROM device_software WHERE device_id = '" + id + "'",
                     "t"));
  }
  SECTION("simulated clients: another client's id, an unknown certificate, size, malformed") {
    auto a = sim::SimClient::Register(h.mp_p01->address(), h.CaPem(), kToken, "hw-a", "sim-a");
    auto b = sim::SimClient::Register(h.mp_p01->address(), h.CaPem(), kToken, "hw-b", "sim-b");
    REQUIRE(a.ok());
    REQUIRE(b.ok());
    sim::PackageUniverse universe(500);
    std::mt19937_64 rng(7);
    v1::ClientReport full = (*a)->NextFull(universe, rng, 20);
    full.set_client_id((*b)->id());
    absl::Status s = (*a)->Send({full});
    CHECK(s.code() == absl::StatusCode::kPermissionDenied);
    CHECK(std::string(s.message()).find("reports only for itself") != std::string::npos);

    v1::ClientReport negative = (*a)->NextFull(universe, rng, 5);
    negative.mutable_inventory()->mutable_hardware()->mutable_disks(0)->set_size_bytes(-1);
    s = (*a)->Send({negative});
    CHECK(s.code() == absl::StatusCode::kInvalidArgument);
    CHECK(std::string(s.message()).find("disk.size_bytes") != std::string::npos);

    v1::ClientReport bad_utf8 = (*a)->NextFull(universe, rng, 5);
    bad_utf8.mutable_inventory()->mutable_software(0)->set_name("bad\xC3\x28name");
    CHECK_FALSE((*a)->Send({bad_utf8}).ok());

    v1::ClientReport absurd = (*a)->NextFull(universe, rng, 5);
    for (int i = 0; i < 2000; ++i) absurd.mutable_inventory()->mutable_hardware()->add_disks();
    s = (*a)->Send({absurd});
    CHECK(s.code() == absl::StatusCode::kInvalidArgument);

    v1::ClientReport huge = (*a)->NextHeartbeat();
    huge.mutable_heartbeat()->set_hostname(std::string(9 << 20, 'x'));
    s = (*a)->Send({huge});
    CHECK(s.code() == absl::StatusCode::kResourceExhausted);

    // A certificate from the site's issuing CA for a client the site never
    // registered is refused.
    auto ca = IssuingCa::Load(TestPki() + "/issuing-P01.pem", TestPki() + "/issuing-P01.key");
    REQUIRE(ca.ok());
    auto key = MakeKeyAndCsr("forged");
    REQUIRE(key.ok());
    auto cert = (*ca)->Sign(key->csr_pem, "agent", "00000000-0000-4000-8000-000000000001", 1);
    REQUIRE(cert.ok());
    auto stub = v1::ManagementPoint::NewStub(
        MakeChannel(h.mp_p01->address(), ChannelPem{h.CaPem(), cert->chain_pem, key->key_pem},
                    sim::AgentChannelOptions()));
    grpc::ClientContext ctx;
    v1::PolicyResponse resp;
    auto g = stub->GetPolicy(&ctx, v1::PolicyRequest(), &resp);
    CHECK(g.error_code() == grpc::StatusCode::PERMISSION_DENIED);
    CHECK(g.error_message().find("unknown, not approved or revoked") != std::string::npos);

    // Nothing of any of these reached the site.
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    CHECK(h.p01->db().ScalarInt("SELECT count(*) FROM device_software") == 0);
    CHECK(h.p01->db().ScalarInt("SELECT max(last_report_seq) FROM devices") == 0);
  }
}

TEST_CASE("a client under the secondary reports through S01 up to P01 and the CAS", "[clients]") {
  ClientHierarchy h;
  AgentRun run = RunAgentOnce(h.dir, "branch1", h.mp_s01->address(), {"--token", kToken});
  INFO(run.log << "\nS01 MP log:\n" << h.mp_s01->LogText());
  REQUIRE(run.exit_code == 0);
  CHECK(run.log.find("agent.policy") != std::string::npos);  // policy from S01's MP
  const std::string id = AgentClientId(h.dir, "branch1");
  const auto dpkg = DpkgInstalled();
  for (auto* site : {h.p01.get(), h.cas.get()}) {
    REQUIRE(Eventually(site->db(),
                       "SELECT count(*) FROM device_software WHERE device_id = '" + id + "'",
                       std::to_string(dpkg.size())));
    CHECK(SoftwareAt(site->db(), id) == dpkg);
    // The client belongs to the primary; the secondary registered it.
    CHECK(site->db().Scalar("SELECT site_code || ' ' || registered_via FROM devices WHERE id = $1",
                            {id}) == "P01 S01");
  }
}

// A global setting written at `db`'s site (global data: it reaches the MPs'
// bundles, which then change version).
void SetSetting(const TestDatabase& db, const std::string& name, const std::string& value) {
  db.Exec(
      "INSERT INTO global_settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET "
      "value = EXCLUDED.value",
      {name, value});
}

// A field of the Default Client Settings, written at `db`'s site (global
// data: it reaches the MPs' bundles and the agents' policy).

TEST_CASE("agent service: pushed policy and full-inventory request; failover to a second MP",
          "[clients]") {
  ClientHierarchy h;
  MpProcess mp2("P01.mp2", h.dir, h.p01->address());
  mp2.Start();
  // Inventory every 2 s; policy polled hourly, so a prompt policy refresh can
  // only come from a push.
  SetDefault(h.p01->db(), "policy_poll_seconds", 3600);
  SetDefault(h.p01->db(), "inventory_seconds", 2);
  SetDefault(h.p01->db(), "splay_seconds", 0);
  AgentDaemon agent(h.dir, "svc", h.mp_p01->address() + "," + mp2.address(),
                    {"--token=" + std::string(kToken), "--hardware_id=hw-svc", "--verbose"});
  size_t at = agent.WaitForLog("inventory_s=2");
  INFO(agent.LogText());
  REQUIRE(at != std::string::npos);
  const std::string id = AgentClientId(h.dir, "svc");
  REQUIRE(Eventually(h.p01->db(),
                     "SELECT count(*) > 100 FROM device_software WHERE device_id = '" + id + "'",
                     "t"));

  // 1. A policy change reaches the agent by push: it refreshes at once.
  REQUIRE(agent.WaitForLog("agent.nudge_connected mp=" + h.mp_p01->address()) != std::string::npos);
  SetDefault(h.p01->db(), "policy_poll_seconds", 1800);
  at = agent.WaitForLog("kind=POLICY_CHANGED", at);
  REQUIRE(at != std::string::npos);
  at = agent.WaitForLog("poll_s=1800", at);
  REQUIRE(at != std::string::npos);

  // 2. The site loses track of the agent's inventory (its next delta no
  //    longer fits): it asks for a full one, pushed through the MP.
  h.p01->db().Exec("UPDATE devices SET inventory_seq = inventory_seq + 100000 WHERE id = $1", {id});
  at = agent.WaitForLog("kind=FULL_INVENTORY", at);
  REQUIRE(at != std::string::npos);
  REQUIRE(Eventually(h.p01->db(),
                     "SELECT inventory_seq < 100000 AND NOT needs_full_inventory FROM devices "
                     "WHERE id = '" +
                         id + "'",
                     "t", seconds(30)));
  CHECK(h.p01->LogText().find("client.full_inventory_requested client=" + id) != std::string::npos);

  // 3. The first MP dies: reports go to the second, and so does the
  //    notification stream (a policy change still arrives by push).
  const int64_t seq =
      h.p01->db().ScalarInt("SELECT last_report_seq FROM devices WHERE id = $1", {id});
  h.mp_p01->Kill9();
  REQUIRE(Eventually(
      h.p01->db(),
      absl::StrCat("SELECT last_report_seq >= ", seq + 3, " FROM devices WHERE id = '", id, "'"),
      "t", seconds(40)));
  CHECK(agent.LogText().find("agent.mp_unreachable mp=" + h.mp_p01->address()) !=
        std::string::npos);
  at = agent.WaitForLog("agent.nudge_channel_ended mp=" + h.mp_p01->address(), at);
  REQUIRE(at != std::string::npos);
  SetDefault(h.p01->db(), "policy_poll_seconds", 1200);
  at = agent.WaitForLog("poll_s=1200", at);
  REQUIRE(at != std::string::npos);
  CHECK(agent.Stop() == 0);
}

// gRPC 1.51 stops accepting for good after one accept() fails with EMFILE.
// The MP must notice (gRPC logs it) and stop with an error, so that its
// supervisor restarts it; nothing acknowledged is lost meanwhile.
TEST_CASE("an MP whose listener ran out of open files stops with an error; restarted, it serves",
          "[clients]") {
#if defined(__SANITIZE_ADDRESS__)
  // The sanitizers' runtime needs free file descriptors (UBSan probes memory
  // through a pipe): in a process out of them it reports sound objects as
  // bad (seen: "invalid vptr" in std::ios_base and gRPC's message holder).
  WARN("not run under the sanitizers: an MP out of file descriptors trips their runtime");
  return;
#endif
  ClientHierarchy h;
  MpProcess mp("P01.mp2", h.dir, h.p01->address());
  mp.set_open_files(64);
  mp.Start();
  auto client = sim::SimClient::Register(mp.address(), h.CaPem(), kToken, "hw-f", "fd");
  REQUIRE(client.ok());
  sim::PackageUniverse universe(100);
  std::mt19937_64 rng(5);
  REQUIRE((*client)->Send({(*client)->NextFull(universe, rng, 10)}).ok());
  // Connections that never handshake, until the MP's accept() fails.
  const std::string path = mp.address().substr(5);  // unix:/...
  std::vector<int> held;
  for (int i = 0; i < 100; ++i) {
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
    REQUIRE(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    held.push_back(fd);
  }
  int code = mp.Wait(seconds(40));
  for (int fd : held) close(fd);
  INFO(mp.LogText());
  CHECK(mp.LogText().find("Failed accept4") != std::string::npos);
  CHECK(mp.LogText().find("mp.listener_dead") != std::string::npos);
  REQUIRE(code == 1);
  // Restarted (here with the inherited limit): it serves again, and the
  // report acknowledged before is at the site.
  mp.set_open_files(0);
  mp.Start();
  (*client)->Reconnect();
  REQUIRE((*client)->Send({(*client)->NextHeartbeat()}).ok());
  REQUIRE(Eventually(h.p01->db(),
                     "SELECT last_report_seq || ' ' || (SELECT count(*) FROM device_software s "
                     "WHERE s.device_id = d.id) FROM devices d WHERE id = '" +
                         (*client)->id() + "'",
                     "2 10"));
}

TEST_CASE("heartbeats keep a device active; a silent one turns inactive, then is deleted",
          "[clients]") {
  ClientHierarchy h;
  SetSetting(h.p01->db(), "client.inactive_after_seconds", "3");
  SetSetting(h.p01->db(), "client.delete_after_seconds", "12");
  auto live = sim::SimClient::Register(h.mp_p01->address(), h.CaPem(), kToken, "hw-l", "live");
  auto silent = sim::SimClient::Register(h.mp_p01->address(), h.CaPem(), kToken, "hw-s", "silent");
  REQUIRE(live.ok());
  REQUIRE(silent.ok());
  sim::PackageUniverse universe(200);
  std::mt19937_64 rng(3);
  REQUIRE((*silent)->Send({(*silent)->NextFull(universe, rng, 30)}).ok());
  REQUIRE((*live)->Send({(*live)->NextFull(universe, rng, 30)}).ok());
  const std::string s_id = (*silent)->id(), l_id = (*live)->id();
  REQUIRE(Eventually(
      h.cas->db(), "SELECT count(*) FROM device_software WHERE device_id = '" + s_id + "'", "30"));
  // The live client sends a heartbeat every 500 ms for 5 s.
  auto until = std::chrono::steady_clock::now() + seconds(5);
  while (std::chrono::steady_clock::now() < until) {
    REQUIRE((*live)->Send({(*live)->NextHeartbeat()}).ok());
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  auto active = [&](const std::string& id) {
    return h.p01->db().Scalar("SELECT active FROM devices WHERE id = $1", {id});
  };
  CHECK(active(l_id) == "t");
  CHECK(active(s_id) == "f");
  // Silent past delete_after_seconds: gone with its inventory, at P01 and
  // (the delete replicates) at the CAS.
  const std::string gone = "SELECT (SELECT count(*) FROM devices WHERE id = '" + s_id +
                           "') + (SELECT count(*) FROM device_software WHERE device_id = '" + s_id +
                           "')";
  REQUIRE(Eventually(h.p01->db(), gone, "0", seconds(20)));
  // (the live one, silent since 5 s later, is still there)
  CHECK(h.p01->db().ScalarInt("SELECT count(*) FROM devices WHERE id = $1", {l_id}) == 1);
  REQUIRE(Eventually(h.cas->db(), gone, "0", seconds(20)));
  CHECK(h.p01->LogText().find("client.maintenance") != std::string::npos);
}

TEST_CASE("site server away, then the MP killed mid-report: every report lands exactly once",
          "[clients]") {
  ClientHierarchy h;
  const int kClients = 200;
  sim::PackageUniverse universe(1000);
  std::vector<std::unique_ptr<sim::SimClient>> clients;
  for (int i = 0; i < kClients; ++i) {
    auto c = sim::SimClient::Register(h.mp_p01->address(), h.CaPem(), kToken,
                                      "hw-" + std::to_string(i), "sim-" + std::to_string(i));
    REQUIRE(c.ok());
    clients.push_back(std::move(*c));
  }
  std::vector<int> acked_states(kClients, 0);
  std::vector<int> full_packages(kClients, 0);
  std::atomic<int> acked_total{0};
  std::atomic<bool> retry_until_acked{false};
  std::mutex errors_mu;
  std::vector<std::string> errors;   // checked after the workers joined
  std::vector<std::string> retried;  // failures retried after the kill (first few)
  int retries = 0;
  std::atomic<int> next{0};  // outlives the workers of each round
  // Each client sends (optionally) a full inventory, then state messages,
  // one report per call; a report counts once the MP acknowledged it.
  auto report_round = [&](int states_per_client, bool with_full) {
    next = 0;
    std::vector<std::thread> workers;
    for (int w = 0; w < 8; ++w) {
      // The round's arguments by value: the workers outlive this call.
      workers.emplace_back([&, w, states_per_client, with_full] {
        std::mt19937_64 rng(w);
        for (int i; (i = next++) < kClients;) {
          std::vector<v1::ClientReport> todo;
          if (with_full) {
            todo.push_back(clients[i]->NextFull(universe, rng, 40 + i % 50));
            full_packages[i] = todo.back().inventory().software_size();
          }
          for (int k = 0; k < states_per_client; ++k) {
            v1::ClientReport r = clients[i]->NextHeartbeat();  // the next sequence number
            r.clear_heartbeat();
            r.mutable_state()->set_topic("test.state");
            r.mutable_state()->set_text("state " + std::to_string(r.seq()));
            todo.push_back(r);
          }
          for (const auto& r : todo) {
            // Once the MP may be killed (retry_until_acked), a report that
            // was not acknowledged is sent again, as the agent does, until
            // the restarted MP takes it.
            auto give_up = std::chrono::steady_clock::now() + seconds(90);
            absl::Status s;
            while (!(s = clients[i]->Send({r}, 10)).ok() && retry_until_acked &&
                   std::chrono::steady_clock::now() < give_up) {
              {
                std::lock_guard<std::mutex> lock(errors_mu);
                if (retried.size() < 5 || retried.back() != s.ToString()) {
                  retried.push_back(s.ToString());
                }
                ++retries;
              }
              std::this_thread::sleep_for(std::chrono::milliseconds(200));
              clients[i]->Reconnect();  // the agent dials anew for each attempt
            }
            if (!s.ok()) {
              std::lock_guard<std::mutex> lock(errors_mu);
              errors.push_back(s.ToString());
              return;  // this worker stops at a report it could not deliver
            }
            if (r.has_state()) ++acked_states[i];
            ++acked_total;
          }
        }
      });
    }
    return workers;
  };
  auto count_states = [&](TestDatabase& db) {
    return std::to_string(std::accumulate(acked_states.begin(), acked_states.end(), 0));
  };

  // 1. The site server is away: the MP still acknowledges (spooled), and the
  //    spool drains once the site is back, up to the CAS.
  REQUIRE(h.p01->Stop() == 0);
  auto workers = report_round(3, true);
  for (auto& t : workers) t.join();
  INFO(absl::StrJoin(errors, "\n"));
  REQUIRE(errors.empty());
  REQUIRE(acked_total == kClients * 4);
  CHECK(h.p01->db().ScalarInt("SELECT count(*) FROM status_messages") == 0);
  h.p01->Start();
  REQUIRE(Eventually(h.p01->db(), "SELECT count(*) FROM status_messages WHERE topic = 'test.state'",
                     count_states(h.p01->db()), seconds(60)));
  for (int i = 0; i < kClients; i += 17) {
    CHECK(h.p01->db().ScalarInt("SELECT count(*) FROM device_software WHERE device_id = $1",
                                {clients[i]->id()}) == full_packages[i]);
  }
  REQUIRE(Eventually(h.cas->db(), "SELECT count(*) FROM status_messages WHERE topic = 'test.state'",
                     count_states(h.cas->db()), seconds(60)));

  // 2. kill -9 of the MP while clients report, then a restart: the clients
  //    get through to the new process and resend what was not acknowledged;
  //    every report lands exactly once (acknowledged ones from the spool).
  retry_until_acked = true;
  const int before = acked_total;
  workers = report_round(20, false);
  if (!WaitFor([&] { return acked_total >= before + 300; }, seconds(30))) {
    for (auto& t : workers) t.join();
    FAIL("reports stopped before the kill: " << absl::StrJoin(errors, "\n"));
  }
  h.mp_p01->Kill9();
  const int acked_at_kill = acked_total;
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  h.mp_p01->Start();
  for (auto& t : workers) t.join();
  INFO("MP log:\n" << h.mp_p01->LogText());
  INFO("retried after the kill: " << absl::StrJoin(retried, "\n"));
  INFO("given up: " << absl::StrJoin(errors, "\n"));
  REQUIRE(errors.empty());
  CHECK(acked_at_kill < before + kClients * 20);  // the kill hit mid-stream
  CHECK(retries > 0);
  REQUIRE(acked_total == before + kClients * 20);
  REQUIRE(Eventually(h.p01->db(), "SELECT count(*) FROM status_messages WHERE topic = 'test.state'",
                     count_states(h.p01->db()), seconds(60)));
  std::this_thread::sleep_for(std::chrono::seconds(1));  // anything late would show now
  for (int i = 0; i < kClients; ++i) {
    int64_t stored = h.p01->db().ScalarInt(
        "SELECT count(*) FROM status_messages WHERE device_id = $1", {clients[i]->id()});
    CHECK(stored == acked_states[i]);
  }
  // (device_id, seq) is the key: no report can be applied twice.
  CHECK(h.p01->db().ScalarInt(
            "SELECT count(*) FROM status_messages WHERE text <> 'state ' || seq") == 0);
}
