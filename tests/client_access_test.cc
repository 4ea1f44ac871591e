// Enrollment tokens, client approval and site systems through stratactl,
// against the admin tests' hierarchy (tests/fixture/admin_hierarchy.h).
#include <catch2/catch.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "bench/clientsim/nudge_fleet.h"
#include "common/base/version.h"
#include "tests/fixture/admin_hierarchy.h"

using namespace strata;
using namespace strata::testing;
using std::chrono::seconds;

namespace {

// The value of "field" in stratactl's JSON output ("" if absent).
std::string JsonField(const std::string& json, const std::string& field) {
  const std::string key = "\"" + field + "\": \"";
  size_t at = json.find(key);
  if (at == std::string::npos) return "";
  at += key.size();
  return json.substr(at, json.find('"', at) - at);
}

// A CSV row of `csv` whose first column is `name` ("" if none).
std::string CsvRow(const std::string& csv, const std::string& name) {
  for (absl::string_view line : absl::StrSplit(csv, '\n', absl::SkipEmpty())) {
    if (absl::StartsWith(line, name + ",")) return std::string(line);
  }
  return "";
}

}  // namespace

TEST_CASE(
    "enrollment tokens, client approval and site systems through stratactl: a token shown "
    "once and used up; an approval at the CAS lets a client register at a secondary; a blocked "
    "client is refused at its MP within seconds",
    "[admin]") {
  AdminHierarchy h;
  const std::string ca = ReadWholeFile(TestPki() + "/ca.pem");

  {  // A token limited to one registration, shown once, stored as its hash.
    CtlRun made =
        h.Ctl("alice", {"create", "enrollment-token", "branch-2026", "--max-uses", "1",
                        "--valid-for", "7d", "--description", "S01 rollout", "-o", "json"});
    INFO(made.err);
    REQUIRE(made.exit_code == 0);
    const std::string token = JsonField(made.out, "token");
    REQUIRE(token.size() >= 32);
    CHECK(h.cas->db().Scalar("SELECT count(*) FROM enrollment_tokens WHERE name = 'branch-2026' "
                             "AND token_sha256 = encode(sha256(convert_to($1, 'UTF8')), 'hex') "
                             "AND expires_at > now() + interval '6 days'",
                             {token}) == "1");
    CHECK(h.cas->db().Scalar("SELECT count(*) FROM enrollment_tokens t WHERE t::text LIKE "
                             "'%' || $1 || '%'",
                             {token}) == "0");  // the token itself is nowhere
    CtlRun listed = h.Ctl("alice", {"get", "enrollment-tokens", "-o", "json"});
    CHECK(listed.out.find(token) == std::string::npos);  // not shown again
    REQUIRE(Eventually(h.s01->db(),
                       "SELECT count(*) FROM enrollment_tokens WHERE name = 'branch-2026'", "1"));
    // One registration at S01 takes its only use; a second machine is refused.
    auto first = sim::SimClient::Register(h.mps["S01"]->address(), ca, token, "hw-tok-1", "tok-1");
    INFO(first.status().ToString());
    REQUIRE(first.ok());
    auto second = sim::SimClient::Register(h.mps["S01"]->address(), ca, token, "hw-tok-2", "tok-2");
    CHECK(second.status().code() == absl::StatusCode::kPermissionDenied);
    CHECK_THAT(std::string(second.status().message()), Catch::Contains("used 1 times"));
    // The same machine registering again takes no new use.
    CHECK(sim::SimClient::Register(h.mps["S01"]->address(), ca, token, "hw-tok-1", "tok-1").ok());
    // The use reaches the CAS (site data, up): the listing says so.
    CtlRun used;
    CHECK(WaitFor(
        [&] {
          used = h.Ctl("alice", {"get", "enrollment-tokens", "-o", "csv"});
          return absl::StrContains(CsvRow(used.out, "branch-2026"), ",used up,1,1,");
        },
        seconds(60)));
    INFO(used.out);
    CHECK(absl::StrContains(CsvRow(used.out, "branch-2026"), "S01 rollout"));
    // A token added before tokens had names is listed by its hash.
    CHECK(used.out.find("sha256:") != std::string::npos);

    // Revoked at the CAS: refused at P02 once the revocation got there.
    made = h.Ctl("alice", {"create", "enrollment-token", "short-lived", "-o", "json"});
    REQUIRE(made.exit_code == 0);
    const std::string revoked = JsonField(made.out, "token");
    REQUIRE(Eventually(h.p02->db(),
                       "SELECT count(*) FROM enrollment_tokens WHERE name = 'short-lived'", "1"));
    CtlRun r = h.Ctl("alice", {"revoke", "enrollment-token", "short-lived"});
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    CHECK(h.Ctl("alice", {"revoke", "enrollment-token", "short-lived"}).exit_code == 1);
    CHECK(h.Ctl("alice", {"revoke", "enrollment-token", "no-such"}).exit_code == 4);
    CHECK(h.Ctl("alice", {"create", "enrollment-token", "bad name!"}).exit_code == 1);
    REQUIRE(Eventually(h.p02->db(),
                       "SELECT count(*) FROM enrollment_tokens WHERE name = 'short-lived' AND "
                       "revoked_at IS NOT NULL",
                       "1"));
    auto late = sim::SimClient::Register(h.mps["P02"]->address(), ca, revoked, "hw-late", "late");
    CHECK(late.status().code() == absl::StatusCode::kPermissionDenied);
    CHECK_THAT(std::string(late.status().message()), Catch::Contains("revoked"));
    CHECK(h.cas->db().Scalar("SELECT string_agg(action, ',' ORDER BY at) FROM audit_log WHERE "
                             "object_type = 'enrollment token' AND outcome = 'ok'") ==
          "create,create,revoke");
  }

  {  // Approval mode manual: a client at S01 waits; approved at the CAS, it registers.
    REQUIRE(h.Ctl("alice", {"update", "client-setting", "Default Client Settings",
                            "--approval-mode", "manual"})
                .exit_code == 0);
    REQUIRE(Eventually(h.s01->db(), "SELECT approval_mode FROM client_settings WHERE builtin",
                       "manual"));
    AgentRun waiting =
        RunAgentOnce(h.dir, "approve-me", h.mps["S01"]->address(), {"--hardware_id=hw-approve-me"});
    INFO(waiting.log);
    CHECK(waiting.exit_code == 1);
    CHECK(waiting.log.find("waiting for an administrator's approval") != std::string::npos);
    const std::string id = AgentClientId(h.dir, "approve-me");
    CtlRun pending;
    REQUIRE(WaitFor(
        [&] {
          pending = h.Ctl("alice", {"get", "approvals", "-o", "csv"});
          return pending.out.find(id) != std::string::npos;
        },
        seconds(60)));
    INFO(pending.out);
    CHECK(pending.out.find(",pending,P01,S01,") != std::string::npos);
    CtlRun r = h.Ctl("alice", {"approve", "device", id});
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    CHECK(h.Ctl("alice", {"approve", "device", id}).exit_code == 1);  // not waiting any more
    REQUIRE(Eventually(h.s01->db(),
                       "SELECT decision FROM client_decisions WHERE device_id = '" + id + "'",
                       "approved"));
    AgentRun approved =
        RunAgentOnce(h.dir, "approve-me", h.mps["S01"]->address(), {"--hardware_id=hw-approve-me"});
    INFO(approved.log);
    CHECK(approved.exit_code == 0);
    CHECK(AgentClientId(h.dir, "approve-me") == id);
  }

  {  // Blocked at the CAS: cut off its MP's nudge channel and refused there
     // within seconds, not at the next recheck (300 s); unblocked, it works
     // again.
    Sim& s1 = h.Find("t-s1");
    REQUIRE(s1.client->Send({s1.client->NextHeartbeat()}).ok());
    sim::NudgeFleet channel(h.mps["S01"]->nudge_address(), {s1.client.get()}, 1);
    channel.OpenAll();
    REQUIRE(WaitFor([&] { return channel.held() == 1; }, seconds(30)));
    CtlRun r = h.Ctl("alice", {"block", "device", "t-s1"});
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    absl::Status refused;
    CHECK(WaitFor(
        [&] {
          refused = s1.client->Send({s1.client->NextHeartbeat()}, 5);
          return refused.code() == absl::StatusCode::kPermissionDenied;
        },
        seconds(30)));
    INFO(refused.ToString() << "\nS01 MP log:\n" << h.mps["S01"]->LogText());
    CHECK(absl::StrContains(refused.message(), "unknown, not approved or revoked"));
    CHECK(h.mps["S01"]->LogText().find("mp.client_access_changed") != std::string::npos);
    CHECK(WaitFor([&] { return channel.held() == 0; }, seconds(30)));
    bool told = false;
    for (const auto& [why, count] : channel.end_reasons()) {
      told = told || absl::StrContains(why, "revoked or blocked");
    }
    CHECK(told);  // the goodbye said why
    channel.CloseAll();
    // Its registration is refused too.
    auto again =
        sim::SimClient::Register(h.mps["S01"]->address(), ca, kAdminTestToken, "hw-t-s1", "t-s1");
    CHECK(again.status().code() == absl::StatusCode::kPermissionDenied);
    CHECK_THAT(std::string(again.status().message()), Catch::Contains("blocked"));
    CtlRun listed = h.Ctl("alice", {"get", "approvals", "-o", "csv"});
    CHECK(absl::StrContains(CsvRow(listed.out, "t-s1"), ",blocked,"));
    CHECK(h.Ctl("alice", {"block", "device", "t-s1"}).exit_code == 1);  // already
    REQUIRE(h.Ctl("alice", {"unblock", "device", "t-s1"}).exit_code == 0);
    CHECK(WaitFor([&] { return s1.client->Send({s1.client->NextHeartbeat()}, 5).ok(); },
                  seconds(30)));
    CHECK(h.cas->db().Scalar("SELECT string_agg(action, ',' ORDER BY at) FROM audit_log WHERE "
                             "object_type = 'device' AND outcome = 'ok'") ==
          "approve,block,unblock");
  }

  {  // Site systems: every site's MPs, with state, version and clients.
    AgentDaemon agent(h.dir, "holder", h.mps["P02"]->address(),
                      {"--token=" + std::string(kAdminTestToken), "--hardware_id=hw-holder"});
    REQUIRE(agent.WaitForLog("agent.nudge_connected") != std::string::npos);
    CtlRun systems;
    CHECK(WaitFor(
        [&] {
          systems = h.Ctl("alice", {"get", "site-systems", "-o", "csv"});
          return absl::StrContains(systems.out, "P02,mp,P02.mp1,online,") &&
                 absl::StrContains(CsvRow(systems.out, "P02"), absl::StrCat(",", kVersion, ",1,"));
        },
        seconds(60)));
    INFO(systems.out);
    CHECK(absl::StrContains(systems.out, "P01,mp,P01.mp1,online,"));
    CHECK(absl::StrContains(systems.out, "S01,mp,S01.mp1,online,"));
    CHECK(agent.Stop() == 0);
    CHECK(h.mps["P02"]->Stop() == 0);
    CHECK(WaitFor(
        [&] {
          systems = h.Ctl("alice", {"get", "site-systems", "-o", "csv"});
          return absl::StrContains(systems.out, "P02,mp,P02.mp1,offline,");
        },
        seconds(60)));
    INFO(systems.out);
    // Reading needs site.read: an analyst has it; an unknown admin is refused.
    REQUIRE(h.Ctl("alice", {"set", "admin", "bob", "--role", "Read-only Analyst"}).exit_code == 0);
    CHECK(h.Ctl("bob", {"get", "site-systems"}).exit_code == 0);
    CHECK(h.Ctl("bob", {"create", "enrollment-token", "nope"}).exit_code == 3);
    CHECK(h.Ctl("bob", {"get", "enrollment-tokens"}).exit_code == 0);
  }
}
