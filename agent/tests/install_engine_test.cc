// The install engine and its runner on the real machine: real processes,
// process groups, files and users; the reports go to a list instead of an
// MP (the end-to-end path is tests/deployment_test.cc).

#include "agent/install_engine.h"

#include <pwd.h>
#include <signal.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "agent/runner.h"
#include "common/inventory/report_check.h"

using namespace strata;
using namespace strata::agent;

namespace {

struct Dir {
  std::string path;
  Dir() {
    char t[] = "/tmp/st-engine-XXXXXX";
    path = ::mkdtemp(t);
    std::filesystem::permissions(path, std::filesystem::perms::all);
  }
  ~Dir() { std::filesystem::remove_all(path); }
};

std::string Read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

bool Exists(const std::string& path) { return std::filesystem::exists(path); }

// The states an engine reported, in order.
struct Sink {
  absl::Mutex mu;
  std::vector<v1::DeploymentState> states;
  std::function<absl::Status(v1::ClientReport)> Fn() {
    return [this](v1::ClientReport r) {
      absl::MutexLock lock(&mu);
      states.push_back(r.deployment());
      return absl::OkStatus();
    };
  }
  std::vector<std::string> Names() {
    absl::MutexLock lock(&mu);
    std::vector<std::string> out;
    for (const auto& s : states) {
      std::string n = v1::DeploymentStateKind_Name(s.state());
      out.push_back(n.substr(std::string("DEPLOYMENT_STATE_").size()));
    }
    return out;
  }
  v1::DeploymentState Last() {
    absl::MutexLock lock(&mu);
    return states.empty() ? v1::DeploymentState() : states.back();
  }
};

// A required deployment of an application with one deployment type that
// runs `command` and is detected by `marker` existing ("": none).
v1::DeploymentPolicy Policy(const std::string& name, const std::string& command,
                            const std::string& marker, int retries = 0) {
  v1::DeploymentPolicy d;
  d.set_name(name);
  d.set_action("install");
  d.set_purpose("required");
  d.set_max_retries(retries);
  d.set_retry_seconds(10);
  d.set_revision("r1");
  auto* app = d.mutable_application();
  app->set_name(name + "-app");
  auto* dt = app->add_deployment_types();
  dt->set_name("sh");
  dt->set_install_command(command);
  if (!marker.empty()) dt->mutable_detection()->add_rules()->mutable_file()->set_path(marker);
  return d;
}

EngineOptions Options(const std::string& dir, Sink& sink) {
  EngineOptions o;
  o.state_dir = dir;
  o.report = sink.Fn();
  o.minute = absl::Seconds(1);  // max_run_minutes counts seconds here
  return o;
}

// Starts an engine on `policy`, waits until its job wrote `started`, and
// stops the engine as the job runs (the job goes on, as after the agent's
// death); the states it reported.
std::vector<std::string> StopMidJob(const std::string& dir, const v1::DeploymentPolicy& policy,
                                    const std::string& started) {
  Sink sink;
  InstallEngine engine(Options(dir, sink));
  engine.SetDeployments({policy});
  engine.Start();
  for (int i = 0; i < 100 && !Exists(started); ++i) absl::SleepFor(absl::Milliseconds(50));
  REQUIRE(Exists(started));
  engine.Stop();
  return sink.Names();
}

}  // namespace

TEST_CASE("runner: exit code, output, working folder, and the run-as user") {
  Dir d;
  RunSpec spec;
  spec.command = "pwd; echo out; echo err >&2; exit 7";
  spec.dir = d.path;
  spec.output_path = d.path + "/out.log";
  spec.exit_path = d.path + "/exit";
  auto r = Run(spec, nullptr);
  REQUIRE(r.ok());
  CHECK(r->exited);
  CHECK(r->exit_code == 7);
  CHECK(r->output_tail == d.path + "\nout\nerr\n");

  if (getuid() == 0 && getpwnam("nobody") != nullptr) {
    // In a folder only root may write to, as the engine's run folders are.
    const std::string job = d.path + "/job";
    std::filesystem::create_directories(job + "/work");
    std::filesystem::permissions(
        job, std::filesystem::perms::owner_all | std::filesystem::perms::group_read |
                 std::filesystem::perms::group_exec | std::filesystem::perms::others_read |
                 std::filesystem::perms::others_exec);
    spec.dir = job + "/work";
    spec.output_path = job + "/out.log";
    spec.exit_path = job + "/exit";
    spec.return_code_path = job + "/return_code";
    spec.command = "id -un; echo 3010 > \"$STRATA_RETURN_CODE_FILE\"";
    spec.user = "nobody";
    r = Run(spec, nullptr);
    REQUIRE(r.ok());
    CHECK(r->exited);
    CHECK(r->exit_code == 3010);  // its return code, written as nobody
    CHECK(r->output_tail.find("nobody") != std::string::npos);
  }
  spec.user = "no-such-user-here";
  CHECK(absl::IsFailedPrecondition(Run(spec, nullptr).status()));
}

TEST_CASE("runner: a job past its time is killed with every process of its group") {
  Dir d;
  RunSpec spec;
  // A child in the background and one in the foreground, each recording its pid.
  spec.command = "sleep 60 & echo $! > bg.pid; sh -c 'echo $$ > fg.pid; exec sleep 60'";
  spec.dir = d.path;
  spec.output_path = d.path + "/out.log";
  spec.exit_path = d.path + "/exit";
  spec.timeout = absl::Seconds(1);
  auto r = Run(spec, nullptr);
  REQUIRE(r.ok());
  CHECK(r->timed_out);
  CHECK_FALSE(r->exited);
  for (const char* f : {"/bg.pid", "/fg.pid"}) {
    const pid_t pid = std::stoi(Read(d.path + f));
    CHECK(ProcessStartTicks(pid) == 0);  // gone
  }
}

TEST_CASE("runner: output beyond the bound is cut to its tail") {
  Dir d;
  RunSpec spec;
  spec.command =
      "i=0; while [ $i -lt 40000 ]; do echo line-$i-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; "
      "i=$((i+1)); done";
  spec.dir = d.path;
  spec.output_path = d.path + "/out.log";
  spec.exit_path = d.path + "/exit";
  auto r = Run(spec, nullptr);
  REQUIRE(r.ok());
  CHECK(r->exit_code == 0);
  CHECK(r->output_tail.size() <= static_cast<size_t>(kMaxOutputBytes));
  CHECK(r->output_tail.find("line-39999-") != std::string::npos);
  CHECK(std::filesystem::file_size(spec.output_path) < 2 * 1024 * 1024);
}

TEST_CASE("engine: detected as installed, nothing runs; else it runs and is detected after") {
  Dir d;
  Sink sink;
  const std::string marker = d.path + "/installed";
  std::ofstream(marker) << "1";
  InstallEngine engine(Options(d.path, sink));
  engine.SetDeployments({Policy("already", "touch " + d.path + "/ran", marker)});
  engine.RunPass();
  CHECK(sink.Names() == std::vector<std::string>{"INSTALLED"});
  CHECK_THAT(sink.Last().detail(), Catch::Contains("nothing ran"));
  CHECK_FALSE(Exists(d.path + "/ran"));

  Sink sink2;
  Dir d2;
  InstallEngine engine2(Options(d2.path, sink2));
  const std::string marker2 = d2.path + "/m";
  engine2.SetDeployments({Policy("fresh", "echo hello; touch " + marker2, marker2)});
  engine2.RunPass();
  CHECK(sink2.Names() == std::vector<std::string>{"INSTALLING", "INSTALLED"});
  CHECK(Exists(marker2));
  // Settled: another pass does nothing.
  engine2.RunPass();
  CHECK(sink2.Names().size() == 2);
}

TEST_CASE("engine: exit codes: 1 fails with the code, 3010 reboot pending, a retry waits") {
  Dir d;
  Sink sink;
  InstallEngine engine(Options(d.path, sink));
  engine.SetDeployments({Policy("fails", "echo broken >&2; exit 1", "")});
  engine.RunPass();
  REQUIRE(sink.Names() == std::vector<std::string>{"INSTALLING", "FAILED"});
  CHECK(sink.Last().exit_code() == 1);
  CHECK_THAT(sink.Last().detail(), Catch::Contains("exit code 1"));
  CHECK_THAT(sink.Last().detail(), Catch::Contains("broken"));

  Dir d2;
  Sink sink2;
  InstallEngine engine2(Options(d2.path, sink2));
  engine2.SetDeployments({Policy("reboot", "echo 3010 > \"$STRATA_RETURN_CODE_FILE\"", "")});
  engine2.RunPass();
  CHECK(sink2.Names() == std::vector<std::string>{"INSTALLING", "REBOOT_PENDING"});
  CHECK(sink2.Last().exit_code() == 3010);
  CHECK(Exists(d2.path + "/reboot_pending"));

  Dir d3;
  Sink sink3;
  InstallEngine engine3(Options(d3.path, sink3));
  engine3.SetDeployments({Policy("retries", "exit 1", "", /*retries=*/2)});
  const absl::Time next = engine3.RunPass();
  CHECK(sink3.Names() == std::vector<std::string>{"INSTALLING", "RETRYING"});
  CHECK(next > absl::Now() + absl::Seconds(5));  // retry_seconds 10
  engine3.RunPass();                             // not yet due: nothing runs
  CHECK(sink3.Names().size() == 2);
}

TEST_CASE("engine: a run past its maximum time is killed with its children and reported") {
  Dir d;
  Sink sink;
  InstallEngine engine(Options(d.path, sink));
  auto policy = Policy("slow", "sleep 60 & echo $! > " + d.path + "/bg.pid; sleep 60", "");
  policy.mutable_application()->mutable_deployment_types(0)->set_max_run_minutes(1);  // 1 s here
  engine.SetDeployments({policy});
  engine.RunPass();
  REQUIRE(sink.Names() == std::vector<std::string>{"INSTALLING", "FAILED"});
  CHECK_THAT(sink.Last().detail(), Catch::Contains("killed with its children"));
  CHECK(ProcessStartTicks(std::stoi(Read(d.path + "/bg.pid"))) == 0);
}

TEST_CASE("engine: requirements choose the deployment type, or none") {
  Dir d;
  Sink sink;
  EngineOptions o = Options(d.path, sink);
  o.inventory = [] {
    v1::InventoryReport inv;
    inv.mutable_hardware()->mutable_os()->set_id("debian");
    inv.mutable_hardware()->mutable_system()->set_memory_total_kb(1024 * 1024);
    return inv;
  };
  InstallEngine engine(o);
  auto policy = Policy("req", "exit 0", "");
  policy.mutable_application()->mutable_deployment_types(0)->set_requirements(
      "memory.total_mb >= 4096");
  engine.SetDeployments({policy});
  engine.RunPass();
  CHECK(sink.Names() == std::vector<std::string>{"REQUIREMENTS_NOT_MET"});
  CHECK_THAT(sink.Last().detail(), Catch::Contains("memory.total_mb >= 4096"));
}

TEST_CASE("engine: killed mid-install and restarted: one install, one final state") {
  Dir d;
  const std::string marker = d.path + "/done";
  const std::string runs = d.path + "/runs.txt";
  auto policy = Policy("restart", "echo run >> " + runs + "; sleep 2; touch " + marker, marker);
  CHECK(StopMidJob(d.path, policy, runs) == std::vector<std::string>{"INSTALLING"});
  CHECK_FALSE(Exists(marker));
  Sink second;
  InstallEngine restarted(Options(d.path, second));
  restarted.SetDeployments({policy});
  restarted.RunPass();  // adopts the job, waits for it, judges it
  CHECK(second.Names() == std::vector<std::string>{"INSTALLED"});
  CHECK(Read(runs) == "run\n");  // it ran once
  restarted.RunPass();
  CHECK(second.Names().size() == 1);
}

TEST_CASE("engine: an install interrupted with no exit code is not run again by default") {
  Dir d;
  const std::string runs = d.path + "/runs.txt";
  auto policy = Policy("cut", "echo run >> " + runs + "; sleep 30", "");
  StopMidJob(d.path, policy, runs);
  // The machine "went down" with the job: kill its whole group.
  v1::InstallRecord rec;
  for (const auto& e : std::filesystem::directory_iterator(d.path + "/deployments"))
    REQUIRE(rec.ParseFromString(Read(e.path())));
  REQUIRE(rec.running());
  kill(-static_cast<pid_t>(rec.pid()), SIGKILL);
  for (int i = 0; i < 100 && ProcessStartTicks(rec.pid()) != 0; ++i)
    absl::SleepFor(absl::Milliseconds(20));
  Sink second;
  InstallEngine restarted(Options(d.path, second));
  restarted.SetDeployments({policy});
  restarted.RunPass();
  CHECK(second.Names() == std::vector<std::string>{"FAILED"});
  CHECK_THAT(second.Last().detail(), Catch::Contains("not run again"));
  CHECK(Read(runs) == "run\n");
}

TEST_CASE(
    "engine: a required install waits for a maintenance window it fits in, unless told not to") {
  Dir d;
  Sink sink;
  InstallEngine engine(Options(d.path, sink));
  // A daily window opening 3 s from now (UTC, to the second), 5 minutes long.
  const absl::Time opens = absl::Now() + absl::Seconds(3);
  v1::MaintenanceWindow w;
  w.set_name("soon");
  w.set_start(absl::FormatTime("%Y-%m-%dT%H:%M:%S", opens, absl::UTCTimeZone()));
  w.set_utc(true);
  w.set_duration_minutes(5);
  w.set_recurrence("daily");
  auto waits = Policy("windowed", "date +%s > " + d.path + "/ran-at", "");
  waits.mutable_application()->mutable_deployment_types(0)->set_max_run_minutes(60);  // 60 s here
  auto ignores = Policy("urgent", "true", "");
  ignores.set_ignore_maintenance_windows(true);
  engine.SetDeployments({waits, ignores}, {w});
  const absl::Time next = engine.RunPass();
  CHECK(sink.Names() == std::vector<std::string>{"WAITING", "INSTALLING", "INSTALLED"});
  CHECK_THAT(sink.states[0].detail(), Catch::Contains("for a maintenance window at"));
  CHECK(sink.states[2].deployment() == "urgent");
  CHECK(next <= opens + absl::Seconds(1));
  CHECK_FALSE(Exists(d.path + "/ran-at"));
  absl::SleepFor(next - absl::Now() + absl::Milliseconds(200));
  engine.RunPass();
  CHECK(sink.Names().size() == 5);
  CHECK(sink.Last().state() == v1::DEPLOYMENT_STATE_INSTALLED);
  REQUIRE(Exists(d.path + "/ran-at"));
  CHECK(std::stoll(Read(d.path + "/ran-at")) >= absl::ToUnixSeconds(opens) - 1);

  // Longer than the window: it waits for one that fits (none here).
  Dir d2;
  Sink sink2;
  InstallEngine engine2(Options(d2.path, sink2));
  auto long_one = Policy("long", "true", "");
  long_one.mutable_application()->mutable_deployment_types(0)->set_max_run_minutes(600);
  engine2.SetDeployments({long_one}, {w});
  CHECK(engine2.RunPass() == absl::InfiniteFuture());
  CHECK(sink2.Names() == std::vector<std::string>{"WAITING"});
  CHECK_THAT(sink2.Last().detail(), Catch::Contains("no maintenance window of 600 minutes"));
}

TEST_CASE("engine: a device that learns of a deployment after its deadline waits its grace") {
  Dir d;
  Sink sink;
  InstallEngine engine(Options(d.path, sink));
  auto late = Policy("late", "true", "");
  late.set_deadline_unix(absl::ToUnixSeconds(absl::Now()) - 3600);  // an hour ago
  late.set_grace_minutes(2);                                        // 2 s here
  engine.SetDeployments({late});
  const absl::Time next = engine.RunPass();
  REQUIRE(sink.Names() == std::vector<std::string>{"WAITING"});
  CHECK_THAT(sink.Last().detail(), Catch::Contains("grace period after the deadline"));
  CHECK(next > absl::Now() + absl::Seconds(1));
  absl::SleepFor(next - absl::Now() + absl::Milliseconds(100));
  engine.RunPass();
  CHECK(sink.Names() == std::vector<std::string>{"WAITING", "INSTALLING", "INSTALLED"});
}

TEST_CASE("engine: an install runs as a named user, in its folder, from a private state folder") {
  if (getuid() != 0 || getpwnam("nobody") == nullptr) return;  // root and nobody needed
  Dir d;
  std::filesystem::permissions(d.path, std::filesystem::perms::owner_all |
                                           std::filesystem::perms::group_exec |
                                           std::filesystem::perms::others_exec);  // as the agent's
  Sink sink;
  InstallEngine engine(Options(d.path, sink));
  auto policy =
      Policy("as-nobody", "id -un; touch here; echo 0 > \"$STRATA_RETURN_CODE_FILE\"", "");
  policy.mutable_application()->mutable_deployment_types(0)->set_run_as("nobody");
  engine.SetDeployments({policy});
  engine.RunPass();
  REQUIRE(sink.Names() == std::vector<std::string>{"INSTALLING", "INSTALLED"});
  CHECK_THAT(sink.Last().detail(), Catch::Contains("nobody"));
  // Nothing else of the state folder is the user's to read.
  CHECK((std::filesystem::status(d.path + "/deployments").permissions() &
         std::filesystem::perms::others_read) == std::filesystem::perms::none);
}

TEST_CASE("engine: output that is not text is made fit to report (else the MP refuses it)") {
  Dir d;
  Sink sink;
  InstallEngine engine(Options(d.path, sink));
  engine.SetDeployments({Policy("binary", "printf 'caf\\351 \\000 \\377done'; exit 1", "")});
  engine.RunPass();
  REQUIRE(sink.Names() == std::vector<std::string>{"INSTALLING", "FAILED"});
  const std::string detail = sink.Last().detail();
  CHECK(inventory::IsCleanText(detail));
  CHECK_THAT(detail, Catch::Contains("caf? ? ?done"));
}
