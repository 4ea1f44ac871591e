// Applications deployed from the CAS to a collection, end to end: real site
// servers, MPs, DPs and agents (over mutual TLS), a real .deb built here and
// installed into each agent's own dpkg root, status read at the CAS with
// stratactl.

#include <sys/stat.h>

#include <csignal>

#include <catch2/catch.hpp>
#include <filesystem>
#include <map>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/content/hash.h"
#include "google/protobuf/util/json_util.h"
#include "strata/v1/admin/deployments.pb.h"
#include "tests/fixture/client_fixture.h"
#include "tests/fixture/content_fixture.h"

using namespace strata;
using namespace strata::testing;
using std::chrono::seconds;

namespace {

// A .deb of package `name` `version` with one file, built with dpkg-deb.
std::string BuildDeb(const std::string& dir, const std::string& name, const std::string& version) {
  const std::string root = absl::StrCat(dir, "/deb-", name);
  WriteFile(root + "/DEBIAN/control",
            absl::StrCat("Package: ", name, "\nVersion: ", version,
                         "\nArchitecture: all\nMaintainer: Strata tests "
                         "<tests@strata.invalid>\nDescription: a package of the tests\n"));
  WriteFile(absl::StrCat(root, "/usr/share/", name, "/greeting"), "hello\n");
  const std::string deb = absl::StrCat(dir, "/", name, ".deb");
  REQUIRE(std::system(absl::StrCat("dpkg-deb --root-owner-group -b ", root, " ", deb, " >/dev/null")
                          .c_str()) == 0);
  return deb;
}

// An empty dpkg database under `root` (the agent's --dpkg_dir).
std::string DpkgRoot(const std::string& root) {
  WriteFile(root + "/var/lib/dpkg/status", "");
  std::filesystem::create_directories(root + "/var/lib/dpkg/info");
  std::filesystem::create_directories(root + "/var/lib/dpkg/updates");
  return root + "/var/lib/dpkg";
}

v1::DeploymentStatus Status(ContentHierarchy& h, const std::string& deployment) {
  CtlRun r = h.Ctl({"get", "deployment-status", deployment, "-o", "json"});
  v1::DeploymentStatus s;
  if (r.exit_code == 0) (void)google::protobuf::util::JsonStringToMessage(r.out, &s);
  return s;
}

int64_t Count(const v1::DeploymentStatus& s, const std::string& state) {
  for (const auto& c : s.counts())
    if (c.state() == state) return c.devices();
  return 0;
}

// Waits until the CAS counts `n` devices of `deployment` in `state`.
v1::DeploymentStatus WaitState(ContentHierarchy& h, const std::string& deployment,
                               const std::string& state, int64_t n) {
  v1::DeploymentStatus s;
  WaitFor(
      [&] {
        s = Status(h, deployment);
        return Count(s, state) == n;
      },
      seconds(90));
  return s;
}

std::string Dump(const v1::DeploymentStatus& s) {
  std::string out;
  for (const auto& d : s.devices())
    absl::StrAppend(&out, d.device_name(), " ", d.state(), " exit=", d.exit_code(), " ", d.detail(),
                    "\n");
  return out;
}

}  // namespace

TEST_CASE(
    "an application made and deployed at the CAS installs on every targeted agent across the "
    "hierarchy, and its status reaches the CAS",
    "[deployment]") {
  ContentHierarchy h;
  std::map<std::string, std::unique_ptr<MpProcess>> mps = StartMps(h);
  DpProcess dp_p01("P01.dp1", h.dir, h.p01->address());
  DpProcess dp_p02("P02.dp1", h.dir, h.p02->address());
  DpProcess dp_s01("S01.dp1", h.dir, h.s01->address());
  for (DpProcess* dp : {&dp_p01, &dp_p02, &dp_s01}) dp->Start();
  REQUIRE(h.DpsOnline(3));

  // Three targeted agents (one per site with MPs) and one that is not.
  const std::vector<std::pair<std::string, std::string>> agents = {
      {"target-p01", "P01"}, {"target-p02", "P02"}, {"target-s01", "S01"}, {"other-p01", "P01"}};
  std::map<std::string, std::string> dpkg;  // agent -> its dpkg database
  std::map<std::string, std::unique_ptr<AgentDaemon>> daemons;
  for (const auto& [name, site] : agents) {
    dpkg[name] = DpkgRoot(h.dir.path() + "/root-" + name);
    daemons[name] = std::make_unique<AgentDaemon>(
        h.dir, name, mps[site]->address(),
        std::vector<std::string>{"--token=" + std::string(kToken), "--hardware_id=hw-" + name,
                                 "--dpkg_dir=" + dpkg[name]});
  }
  for (const auto& [name, site] : agents)
    REQUIRE(daemons[name]->WaitForLog("agent.nudge_connected") != std::string::npos);
  REQUIRE(h.Ctl({"create", "collection", "Targets", "--query", "device.name like \"target-%\""})
              .exit_code == 0);
  // Members evaluated at both primaries and replicated to the CAS.
  REQUIRE(Eventually(h.cas->db(),
                     "SELECT count(*) FROM collection_members WHERE collection = 'Targets'", "3",
                     seconds(60)));
  auto agent_dir = [&](const std::string& name) { return AgentStateDir(h.dir, name); };
  auto targets = [&] {
    std::vector<std::string> out;
    for (const auto& [name, site] : agents)
      if (absl::StartsWith(name, "target-")) out.push_back(name);
    return out;
  };

  // --- a package with a real .deb, installed into each agent's dpkg root ------
  const std::string src = h.dir.path() + "/hello-src";
  std::filesystem::create_directories(src);
  std::filesystem::copy_file(BuildDeb(h.dir.path(), "strata-hello", "1.0-1"),
                             src + "/strata-hello.deb");
  WriteFile(src + "/install.sh",
            "#!/bin/sh\nset -e\nroot=$(dirname $(dirname $(dirname \"$STRATA_DPKG_DIR\")))\n"
            "dpkg --admindir=\"$STRATA_DPKG_DIR\" --instdir=\"$root\" --force-script-chrootless "
            "--force-not-root -i strata-hello.deb\n");
  REQUIRE(h.Ctl({"create", "package", "HelloContent", "--source", src}).exit_code == 0);
  REQUIRE(h.Ctl({"distribute", "package", "HelloContent", "--dp", "P01.dp1", "--dp", "P02.dp1",
                 "--dp", "S01.dp1"})
              .exit_code == 0);
  for (const char* dp : {"P01.dp1", "P02.dp1", "S01.dp1"})
    REQUIRE(DpState(*h.cas, dp, "HelloContent", 1, "installed"));
  CtlRun made =
      h.Ctl({"create", "application", "Hello", "--content", "HelloContent", "--install",
             "sh install.sh", "--uninstall",
             "dpkg --admindir=\"$STRATA_DPKG_DIR\" -r "
             "strata-hello",
             "--detect-package", "dpkg:strata-hello>=1.0", "--requirements", "os.name != \"\""});
  INFO(made.out << made.err);
  REQUIRE(made.exit_code == 0);
  CtlRun deployed = h.Ctl({"deploy", "application", "Hello", "--collection", "Targets"});
  INFO(deployed.out << deployed.err);
  REQUIRE(deployed.exit_code == 0);
  CHECK(absl::StrContains(deployed.out, "\"Hello to Targets\""));

  {  // every targeted agent installs it; the untargeted one does not; the CAS shows it
    v1::DeploymentStatus s = WaitState(h, "Hello to Targets", "installed", 3);
    INFO(Dump(s));
    REQUIRE(Count(s, "installed") == 3);
    CHECK(s.targeted() == 3);
    std::map<std::string, int64_t> per_site;
    for (const auto& site : s.sites())
      for (const auto& c : site.counts())
        if (c.state() == "installed") per_site[site.site_code()] = c.devices();
    // The secondary's client belongs to its primary.
    CHECK(per_site == std::map<std::string, int64_t>{{"P01", 2}, {"P02", 1}});
    for (const auto& name : targets()) {
      INFO(name);
      CHECK(std::filesystem::exists(h.dir.path() + "/root-" + name +
                                    "/usr/share/strata-hello/greeting"));
    }
    CHECK_FALSE(std::filesystem::exists(h.dir.path() + "/root-other-p01/usr/share/strata-hello"));
    CHECK(h.cas->db().Scalar("SELECT count(*) FROM deployment_states s JOIN devices d ON d.id = "
                             "s.device_id WHERE d.name = 'other-p01'") == "0");
    // The table view of the same status, with its progress bar.
    CtlRun table = h.Ctl({"get", "deployment-status", "Hello to Targets"});
    CHECK(absl::StrContains(table.out, "3/3 installed"));
  }

  {  // detection, exit codes, reboots, dependencies, supersedence
    // Detected as installed already: nothing runs.
    REQUIRE(h.Ctl({"create", "application", "Already", "--install",
                   "touch \"$STRATA_AGENT_DIR/already-ran\"", "--detect-file", "/bin/sh"})
                .exit_code == 0);
    // Exit code 1, no retries: failed with its code and output.
    REQUIRE(h.Ctl({"create", "application", "Broken", "--install", "echo oops >&2; exit 1"})
                .exit_code == 0);
    // 3010 (through $STRATA_RETURN_CODE_FILE: Linux exit codes stop at 255).
    REQUIRE(h.Ctl({"create", "application", "Reboot", "--install",
                   "echo 3010 > \"$STRATA_RETURN_CODE_FILE\""})
                .exit_code == 0);
    // A chain A -> B -> C, each logging its install and detected by a script.
    for (const char* app : {"C", "B", "A"}) {
      std::vector<std::string> args = {"create",
                                       "application",
                                       app,
                                       "--install",
                                       absl::StrCat("echo ", app,
                                                    " >> \"$STRATA_AGENT_DIR/order.log\"; touch "
                                                    "\"$STRATA_AGENT_DIR/",
                                                    app, ".installed\""),
                                       "--detect-script",
                                       h.dir.path() + "/detect-" + app + ".sh"};
      WriteFile(h.dir.path() + "/detect-" + app + ".sh",
                absl::StrCat("#!/bin/sh\ntest -f \"$STRATA_AGENT_DIR/", app,
                             ".installed\" && echo yes\n"));
      if (std::string(app) != "C") {
        args.push_back("--depends-on");
        args.push_back(std::string(app) == "B" ? "C" : "B");
      }
      CtlRun r = h.Ctl(args);
      INFO(r.out << r.err);
      REQUIRE(r.exit_code == 0);
    }
    for (const char* app : {"Already", "Broken", "Reboot", "A"}) {
      std::vector<std::string> args = {"deploy", "application", app, "--collection", "Targets"};
      if (std::string(app) == "Broken") args.insert(args.end(), {"--max-retries", "0"});
      REQUIRE(h.Ctl(args).exit_code == 0);
    }
    v1::DeploymentStatus already = WaitState(h, "Already to Targets", "installed", 3);
    INFO(Dump(already));
    CHECK(Count(already, "installed") == 3);
    for (const auto& d : already.devices()) CHECK(absl::StrContains(d.detail(), "nothing ran"));
    for (const auto& name : targets())
      CHECK_FALSE(std::filesystem::exists(agent_dir(name) + "/already-ran"));

    v1::DeploymentStatus broken = WaitState(h, "Broken to Targets", "failed", 3);
    INFO(Dump(broken));
    REQUIRE(Count(broken, "failed") == 3);
    for (const auto& d : broken.devices()) {
      CHECK(d.exit_code() == 1);
      CHECK(absl::StrContains(d.detail(), "exit code 1"));
      CHECK(absl::StrContains(d.detail(), "oops"));
    }
    CtlRun failed_only =
        h.Ctl({"get", "deployment-status", "Broken to Targets", "--state", "failed", "-o", "csv"});
    CHECK(absl::StrContains(failed_only.out, "target-p02,P02,failed,1,"));

    v1::DeploymentStatus reboot = WaitState(h, "Reboot to Targets", "reboot_pending", 3);
    INFO(Dump(reboot));
    CHECK(Count(reboot, "reboot_pending") == 3);
    for (const auto& d : reboot.devices()) CHECK(d.exit_code() == 3010);

    v1::DeploymentStatus chain = WaitState(h, "A to Targets", "installed", 3);
    INFO(Dump(chain));
    CHECK(Count(chain, "installed") == 3);
    for (const auto& name : targets()) {
      INFO(name);
      CHECK(ReadWholeFile(agent_dir(name) + "/order.log") == "C\nB\nA\n");
    }
    // A cycle is refused when it is defined, and nothing changes.
    CtlRun cycle = h.Ctl({"update", "application", "C", "--install", "true", "--depends-on", "A"});
    CHECK(cycle.exit_code != 0);
    CHECK(absl::StrContains(cycle.err, "cycle: C -> A -> B -> C"));
    CHECK(h.cas->db().Scalar("SELECT depends_on::text FROM applications WHERE name = 'C'") == "{}");

    // Supersedence: New replaces Old, uninstalling it first.
    WriteFile(h.dir.path() + "/detect-old.sh",
              "#!/bin/sh\ntest -f \"$STRATA_AGENT_DIR/old.installed\" && echo yes\n");
    CtlRun made_old = h.Ctl({"create", "application", "Old", "--install",
                             "touch \"$STRATA_AGENT_DIR/old.installed\"", "--uninstall",
                             "rm \"$STRATA_AGENT_DIR/old.installed\"", "--detect-script",
                             h.dir.path() + "/detect-old.sh"});
    INFO(made_old.out << made_old.err);
    REQUIRE(made_old.exit_code == 0);
    REQUIRE(h.Ctl({"deploy", "application", "Old", "--collection", "Targets"}).exit_code == 0);
    WaitState(h, "Old to Targets", "installed", 3);
    for (const auto& name : targets())
      REQUIRE(std::filesystem::exists(agent_dir(name) + "/old.installed"));
    WriteFile(h.dir.path() + "/detect-new.sh",
              "#!/bin/sh\ntest -f \"$STRATA_AGENT_DIR/new.installed\" && echo yes\n");
    CtlRun made_new = h.Ctl({"create", "application", "New", "--install",
                             "touch \"$STRATA_AGENT_DIR/new.installed\"", "--detect-script",
                             h.dir.path() + "/detect-new.sh", "--supersedes", "Old:uninstall"});
    INFO(made_new.out << made_new.err);
    REQUIRE(made_new.exit_code == 0);
    REQUIRE(h.Ctl({"deploy", "application", "New", "--collection", "Targets"}).exit_code == 0);
    v1::DeploymentStatus replaced = WaitState(h, "New to Targets", "installed", 3);
    INFO(Dump(replaced));
    for (const auto& name : targets()) {
      INFO(name);
      CHECK(std::filesystem::exists(agent_dir(name) + "/new.installed"));
      CHECK_FALSE(std::filesystem::exists(agent_dir(name) + "/old.installed"));
    }
  }

  {  // bad input is refused with a clear error and changes nothing
    CtlRun bad_query = h.Ctl({"create", "application", "BadQuery", "--install", "true",
                              "--requirements", "os.idd = \"debian\""});
    INFO(bad_query.err);
    CHECK(bad_query.exit_code == 1);
    CHECK(
        absl::StrContains(bad_query.err, "requirements: query: character 4: unknown field os.idd"));
    CtlRun long_cmd =
        h.Ctl({"create", "application", "TooLong", "--install", std::string(8193, 'x')});
    CHECK(long_cmd.exit_code == 1);
    CHECK(absl::StrContains(long_cmd.err, "install_command: at most 8192 bytes"));
    CtlRun no_content =
        h.Ctl({"create", "application", "NoContent", "--install", "true", "--content", "Nope"});
    CHECK(no_content.exit_code == 4);
    CHECK(absl::StrContains(no_content.err, "no package \"Nope\""));
    CtlRun early =
        h.Ctl({"deploy", "application", "Hello", "--collection", "Targets", "--name", "Backwards",
               "--available-at", "2026-12-02T00:00:00Z", "--deadline", "2026-12-01T00:00:00Z"});
    INFO(early.err);
    CHECK(early.exit_code == 1);
    CHECK(absl::StrContains(early.err, "deadline 2026-12-01T00:00:00Z is before available_at"));
    // An application in a scope bob does not hold cannot be depended on by him.
    h.cas->db().Exec("INSERT INTO security_scopes (name) VALUES ('Secret')");
    REQUIRE(h.Ctl({"create", "application", "Hidden", "--install", "true", "--scope", "Secret"})
                .exit_code == 0);
    REQUIRE(
        h.Ctl({"set", "admin", "bob", "--role", "Application Administrator", "--scope", "Default"})
            .exit_code == 0);
    CtlRun hidden =
        h.Ctl({"create", "application", "Mine", "--install", "true", "--depends-on", "Hidden"},
              nullptr, "bob");
    CHECK(hidden.exit_code == 3);
    CHECK(absl::StrContains(hidden.err, "application \"Hidden\""));
    CtlRun listed = h.Ctl({"get", "applications", "-o", "csv"});
    for (const char* name : {"BadQuery", "TooLong", "NoContent", "Mine"})
      CHECK_FALSE(absl::StrContains(listed.out, name));
    CHECK_FALSE(absl::StrContains(h.Ctl({"get", "deployments"}).out, "Backwards"));
    // Nothing of that in the audit trail either, but the refusals.
    CHECK(h.cas->db().Scalar("SELECT count(*) FROM applications WHERE name IN ('BadQuery', "
                             "'TooLong', 'NoContent', 'Mine')") == "0");
    // The package an application uses is not deleted under it.
    CtlRun del = h.Ctl({"delete", "package", "HelloContent"});
    CHECK(del.exit_code == 1);
    CHECK(absl::StrContains(del.err, "is the content of application \"Hello\""));
  }

  {  // an available deployment installs when someone on the machine asks for it
    WriteFile(h.dir.path() + "/detect-optional.sh",
              "#!/bin/sh\ntest -f \"$STRATA_AGENT_DIR/optional.installed\" && echo yes\n");
    REQUIRE(h.Ctl({"create", "application", "Optional", "--software-version", "2.1", "--install",
                   "touch \"$STRATA_AGENT_DIR/optional.installed\"", "--detect-script",
                   h.dir.path() + "/detect-optional.sh"})
                .exit_code == 0);
    CtlRun with_deadline = h.Ctl({"deploy", "application", "Optional", "--collection", "Targets",
                                  "--purpose", "available", "--deadline", "2030-01-01T00:00:00Z"});
    CHECK(with_deadline.exit_code == 1);
    CHECK(absl::StrContains(with_deadline.err, "a deadline is for required deployments only"));
    REQUIRE(h.Ctl({"deploy", "application", "Optional", "--collection", "Targets", "--purpose",
                   "available"})
                .exit_code == 0);
    v1::DeploymentStatus offered = WaitState(h, "Optional to Targets", "available", 3);
    INFO(Dump(offered));
    REQUIRE(Count(offered, "available") == 3);
    auto agent_cli = [&](const std::string& name, std::vector<std::string> words) {
      std::vector<std::string> argv = AgentArgv(h.dir, name, mps["P01"]->address());
      argv.insert(argv.end(), words.begin(), words.end());
      static int runs = 0;
      const std::string log = absl::StrCat(h.dir.path(), "/cli-", name, "-", ++runs, ".log");
      ChildProcess p;
      p.Start(argv, log);
      const int code = p.Wait(seconds(120));
      return std::make_pair(code, ReadWholeFile(log));
    };
    auto listed = agent_cli("target-p01", {"list-available"});
    INFO(listed.second);
    CHECK(listed.first == 0);
    CHECK(absl::StrContains(listed.second, "Optional to Targets"));
    CHECK(absl::StrContains(listed.second, "2.1"));
    auto installed = agent_cli("target-p01", {"install", "Optional to Targets"});
    INFO(installed.second);
    CHECK(installed.first == 0);
    CHECK(absl::StrContains(installed.second, "installed"));
    CHECK(std::filesystem::exists(agent_dir("target-p01") + "/optional.installed"));
    CHECK_FALSE(std::filesystem::exists(agent_dir("target-p02") + "/optional.installed"));
    v1::DeploymentStatus after = WaitState(h, "Optional to Targets", "installed", 1);
    CHECK(Count(after, "available") == 2);
    auto unknown = agent_cli("target-p01", {"install", "Nothing like it"});
    CHECK(unknown.first == 1);
    CHECK(absl::StrContains(unknown.second, "no available deployment \"Nothing like it\""));
  }

  {  // an agent killed mid-install and started again: one install, one final state
    WriteFile(h.dir.path() + "/detect-slow.sh",
              "#!/bin/sh\ntest -f \"$STRATA_AGENT_DIR/slow.done\" && echo yes\n");
    REQUIRE(h.Ctl({"create", "application", "Slow", "--install",
                   "echo run >> \"$STRATA_AGENT_DIR/slow.runs\"; sleep 4; touch "
                   "\"$STRATA_AGENT_DIR/slow.done\"",
                   "--detect-script", h.dir.path() + "/detect-slow.sh"})
                .exit_code == 0);
    REQUIRE(h.Ctl({"deploy", "application", "Slow", "--collection", "Targets"}).exit_code == 0);
    const std::string runs = agent_dir("target-p02") + "/slow.runs";
    REQUIRE(WaitFor([&] { return std::filesystem::exists(runs); }, seconds(60)));
    CHECK(daemons["target-p02"]->Kill() == 128 + SIGKILL);
    daemons["target-p02"] =
        std::make_unique<AgentDaemon>(h.dir, "target-p02", mps["P02"]->address(),
                                      std::vector<std::string>{"--hardware_id=hw-target-p02",
                                                               "--dpkg_dir=" + dpkg["target-p02"]});
    v1::DeploymentStatus slow = WaitState(h, "Slow to Targets", "installed", 3);
    INFO(Dump(slow));
    CHECK(Count(slow, "installed") == 3);
    CHECK(ReadWholeFile(runs) == "run\n");  // it ran once
    CHECK(absl::StrContains(daemons["target-p02"]->LogText(), "agent.deployment_resumed"));
  }

  {  // phased rollouts: the next phase only after success; failures past the limit halt it
    REQUIRE(h.Ctl({"create", "collection", "Others", "--query", "device.name like \"other-%\""})
                .exit_code == 0);
    REQUIRE(Eventually(h.cas->db(),
                       "SELECT count(*) FROM collection_members WHERE collection = 'Others'", "1",
                       seconds(60)));
    REQUIRE(h.Ctl({"create", "application", "Flaky", "--install", "exit 1"}).exit_code == 0);
    REQUIRE(h.Ctl({"create", "application", "Good", "--install", "true"}).exit_code == 0);
    for (const char* app : {"Flaky", "Good"}) {
      CtlRun made = h.Ctl({"create", "rollout", std::string(app) + " rollout", "--application", app,
                           "--phase", "Targets", "--phase", "Others", "--success-percent", "100",
                           "--failure-percent", "10", "--max-retries", "0"});
      INFO(made.out << made.err);
      REQUIRE(made.exit_code == 0);
    }
    CtlRun one_phase =
        h.Ctl({"create", "rollout", "Short", "--application", "Good", "--phase", "Targets"});
    CHECK(one_phase.exit_code == 1);
    CHECK(absl::StrContains(one_phase.err, "2 to 10 phases"));
    CtlRun below = h.Ctl({"create", "rollout", "Below", "--application", "Good", "--phase",
                          "Targets", "--phase", "Others"},
                         h.pv_p01.get());
    CHECK(below.exit_code == 1);
    CHECK(absl::StrContains(below.err, "rollouts are made at the top of the hierarchy"));
    auto state_of = [&](const std::string& name) {
      return h.cas->db().Scalar(
          "SELECT state || ' ' || phase || ' ' || reason FROM "
          "deployment_rollouts WHERE name = $1",
          {name});
    };
    REQUIRE(WaitFor([&] { return absl::StartsWith(state_of("Flaky rollout"), "halted"); },
                    seconds(90)));
    // It halts at the first failure past the limit (1 of 3 is 33 %).
    const std::string flaky = state_of("Flaky rollout");
    CHECK(absl::StartsWith(flaky, "halted 1 halted in phase 1 (Targets): "));
    CHECK(absl::StrContains(flaky, " of 3 devices failed ("));
    CHECK(absl::EndsWith(flaky, "above the limit of 10 %; later phases were not started"));
    REQUIRE(WaitFor([&] { return absl::StartsWith(state_of("Good rollout"), "completed"); },
                    seconds(90)));
    CHECK(state_of("Good rollout") ==
          "completed 2 completed: phase 2 (Others): 1 of 1 devices installed (100 %)");
    CHECK(Count(Status(h, "Good rollout (phase 2)"), "installed") == 1);
    CHECK(h.cas->db().Scalar("SELECT count(*) FROM app_deployments WHERE name = 'Flaky rollout "
                             "(phase 2)'") == "0");
    CtlRun listed = h.Ctl({"get", "rollouts"});
    CHECK(absl::StrContains(listed.out, "halted in phase 1 (Targets)"));
  }

  {  // a required deployment waits for its devices' maintenance window, then installs in it
    const absl::Time opens = absl::Now() + absl::Seconds(12);
    CtlRun window =
        h.Ctl({"create", "maintenance-window", "Soon", "--collection", "Targets", "--start",
               absl::FormatTime("%Y-%m-%dT%H:%M:%S", opens, absl::UTCTimeZone()), "--utc",
               "--duration", "5m", "--recurrence", "daily"});
    INFO(window.out << window.err);
    REQUIRE(window.exit_code == 0);
    CtlRun short_window = h.Ctl({"create", "maintenance-window", "Short", "--collection", "Targets",
                                 "--start", "2026-12-01T22:00", "--duration", "4m"});
    CHECK(short_window.exit_code == 1);
    CHECK(absl::StrContains(short_window.err, "duration: 5 minutes to 24 hours"));
    REQUIRE(h.Ctl({"create", "application", "Windowed", "--install",
                   "date +%s > \"$STRATA_AGENT_DIR/windowed-at\"", "--max-run-minutes", "1"})
                .exit_code == 0);
    // Its deadline comes first (the window reaches the agents meanwhile).
    REQUIRE(h.Ctl({"deploy", "application", "Windowed", "--collection", "Targets", "--deadline",
                   absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::Now() + absl::Seconds(4),
                                    absl::UTCTimeZone())})
                .exit_code == 0);
    v1::DeploymentStatus waiting = WaitState(h, "Windowed to Targets", "waiting", 3);
    INFO(Dump(waiting));
    REQUIRE(WaitFor(
        [&] {
          waiting = Status(h, "Windowed to Targets");
          int n = 0;
          for (const auto& d : waiting.devices())
            n += absl::StrContains(d.detail(), "for a maintenance window at") ? 1 : 0;
          return n == 3;
        },
        seconds(30)));
    v1::DeploymentStatus done = WaitState(h, "Windowed to Targets", "installed", 3);
    INFO(Dump(done));
    REQUIRE(Count(done, "installed") == 3);
    for (const auto& name : targets()) {
      INFO(name);
      CHECK(std::stoll(ReadWholeFile(agent_dir(name) + "/windowed-at")) >=
            absl::ToUnixSeconds(opens));
    }
  }

  {  // deleting a deployment reaches the agents: they forget it
    const std::string journal =
        absl::StrCat(agent_dir("target-p01"), "/deployments/",
                     content::Sha256::Of("Broken to Targets").substr(0, 24), ".pb");
    REQUIRE(std::filesystem::exists(journal));
    REQUIRE(h.Ctl({"delete", "deployment", "Broken to Targets"}).exit_code == 0);
    CHECK(WaitFor([&] { return !std::filesystem::exists(journal); }, seconds(60)));
    CHECK(h.Ctl({"get", "deployment-status", "Broken to Targets"}).exit_code == 4);
  }

  {  // a deployment made at a primary: global data, at the CAS too, acted on by the agents
    // (Targets has a 5-minute window now, and Already may run 120 minutes.)
    CtlRun at_p01 = h.Ctl({"deploy", "application", "Already", "--collection", "Targets", "--name",
                           "Made at P01", "--ignore-maintenance-windows"},
                          h.pv_p01.get());
    INFO(at_p01.out << at_p01.err);
    REQUIRE(at_p01.exit_code == 0);
    v1::DeploymentStatus p01 = WaitState(h, "Made at P01", "installed", 3);
    CHECK(Count(p01, "installed") == 3);
  }

  {  // an admin limited to some collections cannot change what runs outside them
    CtlRun carol = h.Ctl({"set", "admin", "carol", "--role", "Application Administrator", "--scope",
                          "Default", "--collection", "Targets"});
    INFO(carol.out << carol.err);
    REQUIRE(carol.exit_code == 0);
    // "Good" reaches Others through its rollout's second phase.
    CtlRun edit =
        h.Ctl({"update", "application", "Good", "--install", "rm -rf /tmp/x"}, nullptr, "carol");
    CHECK(edit.exit_code == 3);
    CHECK(absl::StrContains(edit.err, "collection \"Others\", outside your collections"));
    CHECK(h.Ctl({"update", "application", "Hello", "--content", "HelloContent", "--install",
                 "sh install.sh", "--detect-package", "dpkg:strata-hello>=1.0"},
                nullptr, "carol")
              .exit_code == 0);  // Hello reaches Targets only
  }

  {  // an uninstall deployment removes what an install put there
    CtlRun refused = h.Ctl({"deploy", "application", "Optional", "--action", "uninstall",
                            "--collection", "Targets", "--name", "Remove Optional"});
    CHECK(refused.exit_code == 1);
    CHECK(absl::StrContains(refused.err, "has no uninstall command"));
    WriteFile(h.dir.path() + "/detect-removable.sh",
              "#!/bin/sh\ntest -f \"$STRATA_AGENT_DIR/removable\" && echo yes\n");
    REQUIRE(h.Ctl({"create", "application", "Removable", "--install",
                   "touch \"$STRATA_AGENT_DIR/removable\"", "--uninstall",
                   "rm \"$STRATA_AGENT_DIR/removable\"", "--detect-script",
                   h.dir.path() + "/detect-removable.sh", "--max-run-minutes", "1"})
                .exit_code == 0);
    REQUIRE(h.Ctl({"deploy", "application", "Removable", "--collection", "Targets",
                   "--ignore-maintenance-windows"})
                .exit_code == 0);
    WaitState(h, "Removable to Targets", "installed", 3);
    for (const auto& name : targets())
      REQUIRE(std::filesystem::exists(agent_dir(name) + "/removable"));
    REQUIRE(h.Ctl({"deploy", "application", "Removable", "--action", "uninstall", "--collection",
                   "Targets", "--name", "Remove Removable", "--ignore-maintenance-windows"})
                .exit_code == 0);
    v1::DeploymentStatus removed = WaitState(h, "Remove Removable", "uninstalled", 3);
    INFO(Dump(removed));
    CHECK(Count(removed, "uninstalled") == 3);
    for (const auto& name : targets())
      CHECK_FALSE(std::filesystem::exists(agent_dir(name) + "/removable"));
  }

  {  // the built-in deployment compliance report
    CtlRun all = h.Ctl({"report", "run", "deployment-compliance", "-o", "csv"});
    INFO(all.out << all.err);
    REQUIRE(all.exit_code == 0);
    CHECK(absl::StrContains(all.out, "Hello to Targets,Hello,Targets,3,3,0,0,0,0,100.0"));
    CHECK(absl::StrContains(all.out, "Optional to Targets,Optional,Targets,3,1,0,2,0,0,33.3"));
    CtlRun one = h.Ctl({"report", "run", "deployment-compliance", "--param",
                        "deployment=Hello to Targets", "-o", "csv"});
    INFO(one.out << one.err);
    CHECK(absl::StrContains(one.out, "target-p02,P02,installed,0,"));
  }

  for (auto& [name, d] : daemons) CHECK(d->Stop() == 0);
}
