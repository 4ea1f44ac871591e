// Scripts run on devices from the CAS, end to end: real site servers, MPs
// and agents (over mutual TLS), admins with their own certificates and
// roles, results read at the CAS with stratactl.

#include <signal.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/util/json_util.h"
#include "strata/v1/admin/script_runs.pb.h"
#include "strata/v1/admin/scripts.pb.h"
#include "tests/fixture/client_fixture.h"
#include "tests/fixture/content_fixture.h"

using namespace strata;
using namespace strata::testing;
using std::chrono::seconds;

namespace {

v1::ScriptRunStatus Status(ContentHierarchy& h, const std::string& id) {
  CtlRun r = h.Ctl({"get", "script-run", id, "-o", "json"});
  v1::ScriptRunStatus s;
  if (r.exit_code == 0) (void)google::protobuf::util::JsonStringToMessage(r.out, &s);
  return s;
}

int64_t Count(const v1::ScriptRunStatus& s, const std::string& state) {
  for (const auto& c : s.counts())
    if (c.state() == state) return c.devices();
  return 0;
}

// Waits until the CAS counts `n` devices of run `id` in `state`.
v1::ScriptRunStatus WaitState(ContentHierarchy& h, const std::string& id, const std::string& state,
                              int64_t n) {
  v1::ScriptRunStatus s;
  WaitFor(
      [&] {
        s = Status(h, id);
        return Count(s, state) == n;
      },
      seconds(90));
  return s;
}

const v1::DeviceScriptResult* Device(const v1::ScriptRunStatus& s, const std::string& name) {
  for (const auto& d : s.devices())
    if (d.device_name() == name) return &d;
  return nullptr;
}

std::string Dump(const v1::ScriptRunStatus& s) {
  std::string out;
  for (const auto& d : s.devices())
    absl::StrAppend(&out, d.device_name(), " ", d.state(), " exit=", d.exit_code(), " ", d.detail(),
                    "\n");
  return out;
}

// The run id `run script` printed ("script run <id>: ...").
std::string RunId(const CtlRun& r) {
  const size_t at = r.out.find("script run ");
  if (at == std::string::npos) return "";
  return r.out.substr(at + 11, 36);
}

// How many times each agent ran a script that appends its working folder
// (under the agent's state folder) to `marks`.
std::map<std::string, int> Marks(const std::string& marks, const std::string& run) {
  std::map<std::string, int> out;
  std::ifstream in(marks);
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> f = absl::StrSplit(line, ' ');
    if (f.size() == 2 && f[1] == run) ++out[f[0]];
  }
  return out;
}

int64_t Denied(SiteProcess& cas, const std::string& admin, const std::string& method,
               const std::string& text) {
  return cas.db().ScalarInt(
      "SELECT count(*) FROM audit_log WHERE outcome = 'denied' AND admin = $1 AND action = $2 "
      "AND object_name <> '' AND strpos(summary, $3) > 0",
      {admin, method, text});
}

}  // namespace

TEST_CASE(
    "an approved script runs once on every targeted agent across the hierarchy, its output "
    "reaches the CAS, and whatever is not approved, in scope or intact never runs",
    "[scripts]") {
  ContentHierarchy h;
  std::map<std::string, std::unique_ptr<MpProcess>> mps = StartMps(h);
  // Targets (by name) at each site with MPs; one untargeted; one that will
  // be off during a run and come back; one off until its run expired.
  const std::vector<std::pair<std::string, std::string>> agents = {
      {"target-p01", "P01"},  {"target-p02", "P02"}, {"target-s01", "S01"},
      {"target-late", "P01"}, {"other-p01", "P01"},  {"gone-p02", "P02"}};
  std::map<std::string, std::unique_ptr<AgentDaemon>> daemons;
  auto start = [&](const std::string& name, const std::string& site) {
    daemons[name] = std::make_unique<AgentDaemon>(
        h.dir, name, mps[site]->address(),
        std::vector<std::string>{"--token=" + std::string(kToken), "--hardware_id=hw-" + name});
  };
  for (const auto& [name, site] : agents) start(name, site);
  for (const auto& [name, site] : agents)
    REQUIRE(daemons[name]->WaitForLog("agent.nudge_connected") != std::string::npos);
  REQUIRE(h.Ctl({"create", "collection", "Targets", "--query", "device.name like \"target-%\""})
              .exit_code == 0);
  REQUIRE(Eventually(h.cas->db(),
                     "SELECT count(*) FROM collection_members WHERE collection = 'Targets'", "4",
                     seconds(60)));
  REQUIRE(Eventually(h.cas->db(),
                     "SELECT count(*) FROM collection_members WHERE collection = 'All Systems'",
                     "6", seconds(60)));
  // bob writes scripts, carol approves them, dave runs them on Targets only.
  // bob may approve too, but not what he wrote.
  REQUIRE(h.Ctl({"set", "admin", "bob", "--role", "Script Author", "--role", "Script Approver"})
              .exit_code == 0);
  REQUIRE(h.Ctl({"set", "admin", "carol", "--role", "Script Approver"}).exit_code == 0);
  REQUIRE(h.Ctl({"set", "admin", "dave", "--role", "Script Runner", "--collection", "Targets"})
              .exit_code == 0);
  // The agents that are to miss their runs go away.
  REQUIRE(daemons["target-late"]->Stop() == 0);
  REQUIRE(daemons["gone-p02"]->Stop() == 0);

  const std::string marks = h.dir.path() + "/marks";
  const std::string body_file = h.dir.path() + "/greet.sh";
  WriteFile(body_file,
            absl::StrCat("echo \"$(dirname $(dirname \"$PWD\")) $STRATA_SCRIPT_RUN\" >> ", marks,
                         "\necho \"hello $who\"\n"));
  CtlRun made = h.Ctl({"create", "script", "greet", "--body", body_file, "--param",
                       "who:string:required:regex=^[a-z]+$"},
                      nullptr, "bob");
  INFO(made.out << made.err);
  REQUIRE(made.exit_code == 0);

  {  // not approved, self-approved, changed after approval, a bad parameter, out of scope:
     // refused with a reason, audited, and nothing runs
    CtlRun r = h.Ctl({"run", "script", "greet", "--collection", "Targets", "--param", "who=x"});
    CHECK(r.exit_code != 0);
    CHECK(absl::StrContains(r.err, "is not approved"));
    CHECK(Denied(*h.cas, "alice", "RunScript", "is not approved") == 1);

    r = h.Ctl({"approve", "script", "greet"}, nullptr, "bob");
    CHECK(r.exit_code == 3);  // denied
    CHECK(absl::StrContains(r.err, "may not approve it"));
    CHECK(Denied(*h.cas, "bob", "ApproveScript", "may not approve it") == 1);

    r = h.Ctl({"approve", "script", "greet", "--comment", "read it"}, nullptr, "carol");
    INFO(r.out << r.err);
    REQUIRE(r.exit_code == 0);
    // An edit withdraws the approval.
    WriteFile(body_file + ".2", absl::StrCat("echo \"$(dirname $(dirname \"$PWD\")) "
                                             "$STRATA_SCRIPT_RUN\" >> ",
                                             marks, "\necho \"hello, $who\"\n"));
    REQUIRE(h.Ctl({"update", "script", "greet", "--body", body_file + ".2", "--param",
                   "who:string:required:regex=^[a-z]+$"},
                  nullptr, "bob")
                .exit_code == 0);
    r = h.Ctl({"run", "script", "greet", "--collection", "Targets", "--param", "who=x"});
    CHECK(r.exit_code != 0);
    CHECK(absl::StrContains(r.err, "is not approved"));
    // An approval of what the approver read: refused if the body changed since.
    r = h.Ctl({"approve", "script", "greet", "--sha256", std::string(64, '0')}, nullptr, "carol");
    CHECK(absl::StrContains(r.err, "changed since you read it"));
    REQUIRE(h.Ctl({"approve", "script", "greet"}, nullptr, "carol").exit_code == 0);

    r = h.Ctl({"run", "script", "greet", "--collection", "Targets", "--param",
               "who=world; touch /tmp/pwned"});
    CHECK(r.exit_code != 0);
    CHECK(absl::StrContains(r.err, "does not match ^[a-z]+$"));
    CHECK(Denied(*h.cas, "alice", "RunScript", "does not match") == 1);

    r = h.Ctl({"run", "script", "greet", "--collection", "All Systems", "--param", "who=x"},
              nullptr, "dave");
    CHECK(r.exit_code == 3);
    CHECK(Denied(*h.cas, "dave", "RunScript", "All Systems") == 1);
    r = h.Ctl({"run", "script", "greet", "--device", "other-p01", "--param", "who=x"}, nullptr,
              "dave");
    CHECK(r.exit_code == 3);
    CHECK(h.cas->db().ScalarInt("SELECT count(*) FROM script_runs") == 0);
  }

  // --- a run on Targets, by dave (a runner limited to Targets) --------------
  CtlRun ran = h.Ctl({"run", "script", "greet", "--collection", "Targets", "--param", "who=world"},
                     nullptr, "dave");
  INFO(ran.out << ran.err);
  REQUIRE(ran.exit_code == 0);
  const std::string run = RunId(ran);
  REQUIRE(run.size() == 36);
  {  // audited with the body's hash and the target
    const std::string sha = h.cas->db().Scalar("SELECT sha256 FROM scripts WHERE name = 'greet'");
    CHECK(h.cas->db().ScalarInt(
              "SELECT count(*) FROM audit_log WHERE admin = 'dave' AND action = 'run' AND "
              "outcome = 'ok' AND strpos(summary, $1) > 0 AND strpos(summary, 'collection "
              "\"Targets\"') > 0",
              {sha}) == 1);
  }
  {  // every targeted agent that is on runs it once; the CAS has outputs and exit codes
    v1::ScriptRunStatus s = WaitState(h, run, "succeeded", 3);
    INFO(Dump(s));
    REQUIRE(Count(s, "succeeded") == 3);
    CHECK(Count(s, "pending") == 1);  // target-late is off
    for (const char* name : {"target-p01", "target-p02", "target-s01"}) {
      const auto* d = Device(s, name);
      REQUIRE(d != nullptr);
      CHECK(d->output() == "hello, world\n");
      CHECK(d->exit_code() == 0);
      CHECK_FALSE(d->truncated());
    }
    CHECK(Device(s, "target-s01")->site_code() == "P01");
    CHECK(Device(s, "other-p01") == nullptr);
  }
  {  // back before the expiry: it runs then
    start("target-late", "P01");
    v1::ScriptRunStatus s = WaitState(h, run, "succeeded", 4);
    INFO(Dump(s));
    CHECK(Count(s, "pending") == 0);
  }
  {  // once each, even after an agent restarts; never on the untargeted agent
    REQUIRE(daemons["target-p01"]->Kill() == 128 + SIGKILL);
    start("target-p01", "P01");
    REQUIRE(daemons["target-p01"]->WaitForLog("agent.nudge_connected") != std::string::npos);
    std::this_thread::sleep_for(seconds(3));
    std::map<std::string, int> m = Marks(marks, run);
    CHECK(m.size() == 4);
    for (const auto& [dir, n] : m) {
      INFO(dir);
      CHECK(n == 1);
      CHECK(absl::StrContains(dir, "target-"));
    }
    // The table view: the counts and each device's output.
    CtlRun table = h.Ctl({"get", "script-run", run});
    CHECK(absl::StrContains(table.out, "4/4 done: 4 succeeded"));
    CHECK(absl::StrContains(table.out, "hello, world"));
  }

  // --- gone-p02 is off: one run expires before it is back, another's body is
  // tampered with in P02's database on the way; the agent refuses it -----------
  CtlRun expiring = h.Ctl(
      {"run", "script", "greet", "--device", "gone-p02", "--param", "who=late", "--expires", "60"});
  INFO(expiring.out << expiring.err);
  REQUIRE(expiring.exit_code == 0);
  const std::string expiring_run = RunId(expiring);
  CtlRun tampered = h.Ctl({"run", "script", "greet", "--device", "gone-p02", "--param", "who=x"});
  REQUIRE(tampered.exit_code == 0);
  const std::string tampered_run = RunId(tampered);
  REQUIRE(Eventually(
      h.p02->db(),
      absl::StrCat("SELECT count(*) FROM script_run_assignments WHERE run = '", tampered_run, "'"),
      "1", seconds(60)));
  h.p02->db().Exec(absl::StrCat("UPDATE script_runs SET body = 'touch ", h.dir.path(),
                                "/pwned' WHERE id = '", tampered_run, "'"));

  {  // a timeout kills the script's whole process group; output past 64 KiB is cut, marked
    const std::string noisy = h.dir.path() + "/noisy.sh";
    // It records its process group (field 5 of /proc/self/stat) and a
    // background child's pid.
    WriteFile(noisy, absl::StrCat("cut -d' ' -f5 /proc/$$/stat > ", h.dir.path(),
                                  "/noisy.pgid\nsleep 600 &\necho $! > ", h.dir.path(),
                                  "/noisy.bg\nfor i in $(seq 1 5000); do echo \"line $i of a "
                                  "script that talks a lot\"; done\nsleep 600\n"));
    REQUIRE(h.Ctl({"create", "script", "noisy", "--body", noisy, "--timeout", "3"}, nullptr, "bob")
                .exit_code == 0);
    // Self-approval, once the hierarchy allows it (and a setting that is
    // not one, or a value not of its type, refused).
    CHECK(h.Ctl({"approve", "script", "noisy"}, nullptr, "bob").exit_code == 3);
    CtlRun set = h.Ctl({"set", "hierarchy-setting", "script.allow_self_approval", "yes"});
    CHECK(absl::StrContains(set.err, "true or false"));
    set = h.Ctl({"set", "hierarchy-setting", "script.allow_self_aproval", "true"});
    CHECK(absl::StrContains(set.err, "no hierarchy setting"));
    REQUIRE(h.Ctl({"set", "hierarchy-setting", "script.allow_self_approval", "true"}).exit_code ==
            0);
    REQUIRE(Eventually(h.cas->db(),
                       "SELECT value FROM global_settings WHERE name = "
                       "'script.allow_self_approval'",
                       "true", seconds(10)));
    CtlRun self = h.Ctl({"approve", "script", "noisy"}, nullptr, "bob");
    INFO(self.out << self.err);
    REQUIRE(self.exit_code == 0);
    CHECK(
        absl::StrContains(h.Ctl({"get", "hierarchy-settings"}).out, "script.allow_self_approval"));
    REQUIRE(h.Ctl({"reset", "hierarchy-setting", "script.allow_self_approval"}).exit_code == 0);
    CtlRun r = h.Ctl({"run", "script", "noisy", "--device", "target-p02", "--watch"});
    INFO(r.out << r.err);
    CHECK(r.exit_code == 1);  // watched to its end: it failed
    const std::string id = RunId(r);
    v1::ScriptRunStatus s = WaitState(h, id, "failed", 1);
    INFO(Dump(s));
    const auto* d = Device(s, "target-p02");
    REQUIRE(d != nullptr);
    CHECK(absl::StrContains(d->detail(), "timed out after 3 s"));
    CHECK(d->truncated());
    CHECK(d->output().size() <= 64 * 1024);
    CHECK(absl::StrContains(d->output(), "line 5000 of a script that talks a lot\n"));
    CHECK_FALSE(absl::StrContains(d->output(), "line 1 of"));
    int pgid = 0, bg = 0;
    std::ifstream(h.dir.path() + "/noisy.pgid") >> pgid;
    std::ifstream(h.dir.path() + "/noisy.bg") >> bg;
    REQUIRE(pgid > 1);
    REQUIRE(pgid != getpgrp());  // a group of its own, not the agent's
    REQUIRE(bg > 1);
    // The group, the background sleep included, is gone.
    CHECK(kill(-pgid, 0) == -1);
    CHECK(errno == ESRCH);
    CHECK(kill(bg, 0) == -1);
  }

  {  // gone-p02 comes back after the first run's expiry
    WaitFor([&] { return Count(Status(h, expiring_run), "expired") == 1; }, seconds(90));
    start("gone-p02", "P02");
    v1::ScriptRunStatus s = WaitState(h, tampered_run, "failed", 1);
    INFO(Dump(s));
    const auto* d = Device(s, "gone-p02");
    REQUIRE(d != nullptr);
    CHECK(absl::StrContains(d->detail(), "refused: the body's SHA-256 is"));
    CHECK_FALSE(std::filesystem::exists(h.dir.path() + "/pwned"));
    // The expired run: reported by the agent itself, never run.
    WaitFor(
        [&] {
          return h.cas->db().ScalarInt(
                     absl::StrCat("SELECT count(*) FROM script_results WHERE run = '", expiring_run,
                                  "' AND state = 'expired'")) == 1;
        },
        seconds(60));
    s = Status(h, expiring_run);
    INFO(Dump(s));
    REQUIRE(Device(s, "gone-p02") != nullptr);
    CHECK(absl::StrContains(Device(s, "gone-p02")->detail(), "after its expiry"));
    CHECK(Marks(marks, expiring_run).empty());
  }
}
