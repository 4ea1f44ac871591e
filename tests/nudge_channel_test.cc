// The nudge channel end to end: the real MP and agent processes, simulated
// agents (bench/clientsim's NudgeFleet) where many are needed, a real
// hierarchy (CAS, P01, S01) over mutual TLS. The server's protocol checks
// (refusals, malformed frames, isolation between clients) have their unit
// tests in mp/tests/nudge_server_test.cc.

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <fstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "bench/clientsim/nudge_fleet.h"
#include "bench/clientsim/sim_client.h"
#include "common/base/hlc.h"
#include "tests/fixture/client_fixture.h"

using namespace strata;
using namespace strata::testing;
using std::chrono::seconds;

namespace {

// The wall-clock time (unix ms) of the first log line at or after `from`
// containing `text` ("2026-11-29T19:39:17.946Z agent INFO ..."), or -1.
int64_t LogTimeMs(const std::string& log, const std::string& text, size_t from = 0) {
  size_t at = log.find(text, from);
  if (at == std::string::npos) return -1;
  size_t line = log.rfind('\n', at);
  line = line == std::string::npos ? 0 : line + 1;
  absl::Time t;
  std::string err;
  if (!absl::ParseTime("%Y-%m-%dT%H:%M:%E3SZ", log.substr(line, 24), &t, &err)) return -1;
  return absl::ToUnixMillis(t);
}

int64_t RssKb(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string key;
  int64_t value = 0;
  while (in >> key) {
    if (key == "VmRSS:") {
      in >> value;
      return value;
    }
    in.ignore(1 << 16, '\n');
  }
  return -1;
}

// Connects to a unix socket and closes at once.
void ConnectAndDrop(const std::string& address) {
  const std::string path = address.substr(5);  // "unix:"
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::copy(path.begin(), path.end(), sa.sun_path);
  (void)connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa));
  close(fd);
}

std::vector<std::unique_ptr<sim::SimClient>> RegisterSims(ClientHierarchy& h, MpProcess& mp, int n,
                                                          const std::string& prefix) {
  std::vector<std::unique_ptr<sim::SimClient>> out;
  for (int i = 0; i < n; ++i) {
    auto c = sim::SimClient::Register(mp.address(), h.CaPem(), kToken,
                                      absl::StrCat("hw-", prefix, i), absl::StrCat(prefix, i));
    REQUIRE(c.ok());
    out.push_back(std::move(*c));
  }
  return out;
}

std::vector<sim::SimClient*> Pointers(const std::vector<std::unique_ptr<sim::SimClient>>& v) {
  std::vector<sim::SimClient*> out;
  for (const auto& c : v) out.push_back(c.get());
  return out;
}

}  // namespace

TEST_CASE(
    "the real agent is told of a policy change over the nudge channel; with the channel "
    "blocked it gets the change by polling",
    "[clients][nudge]") {
  ClientHierarchy h;
  SetDefault(h.p01->db(), "policy_poll_seconds", 3600);  // a change can only come by nudge
  SetDefault(h.p01->db(), "splay_seconds", 0);
  AgentDaemon agent(h.dir, "nudged", h.mp_p01->address(),
                    {"--token=" + std::string(kToken), "--hardware_id=hw-nudged"});
  size_t at = agent.WaitForLog("agent.nudge_connected mp=" + h.mp_p01->address());
  INFO(agent.LogText());
  REQUIRE(at != std::string::npos);
  CHECK(agent.LogText().find("nudge=" + h.mp_p01->nudge_address()) != std::string::npos);
  REQUIRE(agent.WaitForLog("poll_s=3600") != std::string::npos);

  const int64_t changed_ms = WallClockMs();
  SetDefault(h.p01->db(), "policy_poll_seconds", 1800);
  at = agent.WaitForLog("agent.nudged kind=POLICY_CHANGED", at);
  REQUIRE(at != std::string::npos);
  at = agent.WaitForLog("poll_s=1800", at);
  REQUIRE(at != std::string::npos);
  // Polled hourly, the agent can only have it this soon from the nudge.
  const int64_t applied_ms = LogTimeMs(agent.LogText(), "poll_s=1800");
  REQUIRE(applied_ms > 0);
  WARN("policy change at P01 to applied at the agent, over the nudge channel: "
       << applied_ms - changed_ms << " ms");
  CHECK(applied_ms - changed_ms < 60 * 1000);

  // An MP whose nudge channel agents cannot reach (a firewall, say): its
  // agent polls instead, at least every fallback_poll_seconds.
  MpProcess blocked("P01.mp2", h.dir, h.p01->address());
  blocked.add_config(
      absl::StrCat("nudge_public_address: \"unix:", h.dir.path(), "/nowhere.sock\""));
  blocked.Start();
  AgentDaemon polling(
      h.dir, "polling", blocked.address(),
      {"--token=" + std::string(kToken), "--hardware_id=hw-polling", "--fallback_poll_seconds=2"});
  size_t pat = polling.WaitForLog("poll_s=1800");
  INFO(polling.LogText());
  REQUIRE(pat != std::string::npos);
  REQUIRE(polling.WaitForLog("agent.nudge_channel_ended", pat) != std::string::npos);
  SetDefault(h.p01->db(), "policy_poll_seconds", 1200);
  REQUIRE(polling.WaitForLog("poll_s=1200", pat, seconds(60)) != std::string::npos);
  CHECK(polling.LogText().find("agent.nudge_connected") == std::string::npos);
  CHECK(polling.LogText().find("agent.nudged") == std::string::npos);
  CHECK(polling.Stop() == 0);
  CHECK(agent.Stop() == 0);
}

TEST_CASE(
    "kill -9 of the MP: agents come back spread over time, and what changed meanwhile is "
    "not lost",
    "[clients][nudge]") {
  ClientHierarchy h;
  SetDefault(h.p01->db(), "policy_poll_seconds", 3600);
  SetDefault(h.p01->db(), "splay_seconds", 0);
  AgentDaemon agent(h.dir, "survivor", h.mp_p01->address(),
                    {"--token=" + std::string(kToken), "--hardware_id=hw-survivor"});
  size_t at = agent.WaitForLog("agent.nudge_connected");
  INFO(agent.LogText());
  REQUIRE(at != std::string::npos);
  REQUIRE(agent.WaitForLog("poll_s=3600") != std::string::npos);

  const int kFleet = 150;
  auto sims = RegisterSims(h, *h.mp_p01, kFleet, "fleet-");
  sim::NudgeFleet fleet(h.mp_p01->nudge_address(), Pointers(sims), 32);
  fleet.OpenAll();
  REQUIRE(WaitFor([&] { return fleet.held() == kFleet; }, seconds(60)));

  h.mp_p01->Kill9();
  REQUIRE(WaitFor([&] { return fleet.held() == 0; }, seconds(30)));
  // Changed while the agents hold no channel.
  SetDefault(h.p01->db(), "policy_poll_seconds", 1700);
  absl::SleepFor(absl::Seconds(1));
  const int64_t restarted_ms = WallClockMs();
  h.mp_p01->Start();
  REQUIRE(WaitFor([&] { return fleet.held() == kFleet; }, seconds(90)));
  std::vector<int64_t> back;
  for (const auto& t : fleet.times()) back.push_back(t.welcomed_ms - restarted_ms);
  std::sort(back.begin(), back.end());
  const int64_t p10 = back[kFleet / 10], p90 = back[kFleet * 9 / 10];
  WARN("after the MP restarted, " << kFleet << " clients were back within " << back.back()
                                  << " ms: p10 " << p10 << " ms, p90 " << p90 << " ms");
  // Not a thundering herd: the middle 80 % spread over seconds, not all at once.
  CHECK(p90 - p10 > 3000);

  // The real agent learns of the change from its welcome and fetches it.
  at = agent.WaitForLog("agent.policy_changed_meanwhile", at, seconds(60));
  REQUIRE(at != std::string::npos);
  REQUIRE(agent.WaitForLog("poll_s=1700", at) != std::string::npos);
  CHECK(agent.Stop() == 0);
}

TEST_CASE(
    "1,000 connections opened and dropped and garbage on the nudge socket: the MP stays up, "
    "held clients keep their channel, memory returns to its level",
    "[clients][nudge]") {
  ClientHierarchy h;
  const int kHeld = 40;
  auto sims = RegisterSims(h, *h.mp_p01, kHeld, "held-");
  sim::NudgeFleet fleet(h.mp_p01->nudge_address(), Pointers(sims), 16);
  fleet.OpenAll();
  REQUIRE(WaitFor([&] { return fleet.held() == kHeld; }, seconds(60)));
  const int64_t welcomes = fleet.welcomes();
  // A first round warms the allocator; the level is measured after it.
  for (int i = 0; i < 1000; ++i) ConnectAndDrop(h.mp_p01->nudge_address());
  absl::SleepFor(absl::Seconds(1));
  const int64_t rss_before = RssKb(h.mp_p01->pid());
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 1000; ++i) ConnectAndDrop(h.mp_p01->nudge_address());
  }
#if defined(__SANITIZE_ADDRESS__)
  // AddressSanitizer's allocator keeps freed memory in quarantine (256 MB)
  // and malloc_trim does not reach it: the resident set says nothing here.
  WARN("memory level not checked under the sanitizers");
  (void)rss_before;
#else
  // The MP gives freed handshake memory back within seconds (malloc_trim
  // after a burst of closed connections); a leak of 3 KB or more a
  // connection would stay above the bound.
  int64_t rss_after = 0;
  CHECK(WaitFor(
      [&] {
        rss_after = RssKb(h.mp_p01->pid());
        return rss_after - rss_before < 9 * 1024;
      },
      seconds(20)));
  WARN("MP resident set around 3,000 connections dropped: " << rss_before << " KB, then "
                                                            << rss_after << " KB");
#endif
  CHECK(fleet.held() == kHeld);
  CHECK(fleet.welcomes() == welcomes);  // nobody was dropped and redialled
  CHECK(h.mp_p01->LogText().find("mp.nudge_accept_failed") == std::string::npos);
}

TEST_CASE("registration is rate-limited per source with a clear RESOURCE_EXHAUSTED and retry hint",
          "[clients][nudge]") {
  ClientHierarchy h;
  MpProcess limited("P01.mp2", h.dir, h.p01->address());
  limited.add_config("register_per_source_per_minute: 3");
  limited.Start();
  for (int i = 0; i < 3; ++i) {
    auto c = sim::SimClient::Register(limited.address(), h.CaPem(), kToken,
                                      absl::StrCat("hw-rl-", i), absl::StrCat("rl-", i));
    REQUIRE(c.ok());
  }
  auto refused = sim::SimClient::Register(limited.address(), h.CaPem(), kToken, "hw-rl-x", "rl-x");
  REQUIRE(refused.status().code() == absl::StatusCode::kResourceExhausted);
  // One token every 20 s: the wait said is at most that.
  CHECK_THAT(std::string(refused.status().message()),
             Catch::Matches(".*retry in (20|1[0-9]|[1-9]) s.*"));
  // The site was not asked: the three registered are devices there, the
  // refused one is not.
  CHECK(h.p01->db().ScalarInt("SELECT count(*) FROM devices WHERE name LIKE 'rl-%'") == 3);
  CHECK(h.p01->db().ScalarInt("SELECT count(*) FROM devices WHERE name = 'rl-x'") == 0);
}
