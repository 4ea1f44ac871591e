// Runbooks end to end: real site servers, MPs and agents as runbook workers
// (over mutual TLS), admins with their own certificates and roles, jobs
// started and read at the CAS with stratactl.

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
#include "absl/strings/strip.h"
#include "google/protobuf/util/json_util.h"
#include "strata/v1/admin/runbook_jobs.pb.h"
#include "tests/fixture/client_fixture.h"
#include "tests/fixture/content_fixture.h"

using namespace strata;
using namespace strata::testing;
using std::chrono::seconds;

namespace {

// The job as `get job ID -o json` at the CAS shows it (streams of `attempt`,
// 0: the current one).
v1::RunbookJob Job(ContentHierarchy& h, const std::string& id, int attempt = 0) {
  std::vector<std::string> args{"get", "job", id, "-o", "json"};
  CtlRun r = h.Ctl(args);
  v1::RunbookJob j;
  if (r.exit_code == 0) (void)google::protobuf::util::JsonStringToMessage(r.out, &j);
  if (attempt > 0) {
    // stratactl reads the current attempt; an earlier one is read directly.
    j.clear_streams();
    for (const char* stream : {"output", "error", "verbose"}) {
      auto* s = j.add_streams();
      s->set_stream(stream);
      s->set_text(h.cas->db().Scalar(
          "SELECT coalesce(string_agg(text, '' ORDER BY byte_offset), '') FROM "
          "runbook_job_output WHERE job_id = $1::uuid AND attempt = $2 AND stream = $3",
          {id, absl::StrCat(attempt), stream}));
    }
  }
  return j;
}

std::string Stream(const v1::RunbookJob& j, const std::string& name) {
  for (const auto& s : j.streams())
    if (s.stream() == name) return s.text();
  return "";
}

v1::RunbookJob WaitState(ContentHierarchy& h, const std::string& id, const std::string& state,
                         seconds timeout = seconds(90)) {
  v1::RunbookJob j;
  WaitFor(
      [&] {
        j = Job(h, id);
        return j.state() == state;
      },
      timeout);
  return j;
}

// The job id `start runbook` printed ("job <id> queued").
std::string JobId(const CtlRun& r) {
  const std::string& text = r.out.find("job ") != std::string::npos ? r.out : r.err;
  const size_t at = text.find("job ");
  return at == std::string::npos ? "" : text.substr(at + 4, 36);
}

int64_t Denied(SiteProcess& cas, const std::string& admin, const std::string& method,
               const std::string& text) {
  return cas.db().ScalarInt(
      "SELECT count(*) FROM audit_log WHERE outcome = 'denied' AND admin = $1 AND action = $2 "
      "AND strpos(summary, $3) > 0",
      {admin, method, text});
}

struct Workers {
  std::map<std::string, std::unique_ptr<MpProcess>> mps;
  std::map<std::string, std::unique_ptr<AgentDaemon>> daemons;
  void Start(ContentHierarchy& h, const std::string& name, const std::string& site) {
    daemons[name] = std::make_unique<AgentDaemon>(
        h.dir, name, mps[site]->address(),
        std::vector<std::string>{"--token=" + std::string(kToken), "--hardware_id=hw-" + name});
  }
};

// A group of `collection`'s members at `site`, and the collection of the
// devices named `names` (a query).
void MakeGroup(ContentHierarchy& h, const std::string& group, const std::string& site,
               const std::string& query, int members) {
  const std::string coll = "Workers " + group;
  REQUIRE(h.Ctl({"create", "collection", coll, "--query", query}).exit_code == 0);
  REQUIRE(Eventually(
      h.cas->db(),
      absl::StrCat("SELECT count(*) FROM collection_members WHERE collection = '", coll, "'"),
      absl::StrCat(members), seconds(60)));
  CtlRun r = h.Ctl(
      {"create", "worker-group", group, "--site", site, "--collection", coll, "--lease", "10s"});
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
}

}  // namespace

TEST_CASE(
    "a runbook published at the CAS runs on worker groups at a primary and a secondary, its "
    "streams and end reach the CAS, a draft never runs, and refusals change nothing",
    "[runbooks]") {
  ContentHierarchy h;
  Workers w;
  w.mps = StartMps(h);
  for (auto [name, site] : {std::pair{"w-p01", "P01"}, {"w-s01", "S01"}, {"other-p01", "P01"}})
    w.Start(h, name, site);
  for (const auto& [name, d] : w.daemons)
    REQUIRE(d->WaitForLog("agent.nudge_connected") != std::string::npos);
  MakeGroup(h, "p01", "P01", "device.name = \"w-p01\"", 1);
  MakeGroup(h, "s01", "S01", "device.name = \"w-s01\"", 1);
  // bob writes runbooks, carol publishes and runs them, dave reads only.
  REQUIRE(h.Ctl({"set", "admin", "bob", "--role", "Runbook Author"}).exit_code == 0);
  REQUIRE(h.Ctl({"set", "admin", "carol", "--role", "Runbook Operator", "--scope", "Default"})
              .exit_code == 0);
  REQUIRE(h.Ctl({"set", "admin", "dave", "--role", "Read-only Analyst"}).exit_code == 0);

  const std::string body = h.dir.path() + "/hello.sh";
  WriteFile(body,
            "echo \"hello $who from $STRATA_RUNBOOK\"\necho 'to stderr' >&2\n"
            "echo 'a verbose line' >> \"$STRATA_VERBOSE_FILE\"\n");
  CtlRun made = h.Ctl({"create", "runbook", "hello", "--body", body, "--param",
                       "who:string:required", "--param", "times:int:min=1:max=5", "--tag", "demo"},
                      nullptr, "bob");
  INFO(made.out << made.err);
  REQUIRE(made.exit_code == 0);

  {  // a draft never runs; nor does a runbook for someone without runbook.run, or with a
     // parameter of the wrong type; the author may not publish: refused, audited, nothing made
    CtlRun r = h.Ctl({"start", "runbook", "hello", "--group", "p01", "--param", "who=x"}, nullptr,
                     "carol");
    CHECK(r.exit_code != 0);
    CHECK(absl::StrContains(r.err, "has no published version"));
    CHECK(Denied(*h.cas, "carol", "StartRunbook", "has no published version") == 1);
    r = h.Ctl({"publish", "runbook", "hello"}, nullptr, "bob");
    CHECK(r.exit_code == 3);
    CHECK(Denied(*h.cas, "bob", "PublishRunbook", "runbook.publish") == 1);
    REQUIRE(h.Ctl({"publish", "runbook", "hello"}, nullptr, "carol").exit_code == 0);
    r = h.Ctl({"start", "runbook", "hello", "--group", "p01", "--param", "who=x"}, nullptr, "dave");
    CHECK(r.exit_code == 3);
    CHECK(Denied(*h.cas, "dave", "StartRunbook", "runbook.run") == 1);
    r = h.Ctl({"start", "runbook", "hello", "--group", "p01", "--param", "who=x", "--param",
               "times=many"},
              nullptr, "carol");
    CHECK(r.exit_code == 1);
    CHECK(absl::StrContains(r.err, "\"many\" is not an integer"));
    CHECK(Denied(*h.cas, "carol", "StartRunbook", "is not an integer") == 1);
    r = h.Ctl({"start", "runbook", "hello", "--group", "nowhere", "--param", "who=x"}, nullptr,
              "carol");
    CHECK(r.exit_code == 4);
    CHECK(h.cas->db().ScalarInt("SELECT count(*) FROM runbook_jobs") == 0);
  }

  // --- a job on each group, one watched to its end -------------------------
  CtlRun watched =
      h.Ctl({"start", "runbook", "hello", "--group", "p01", "--param", "who=world", "--watch"},
            nullptr, "carol");
  INFO(watched.out << watched.err);
  CHECK(watched.exit_code == 0);
  CHECK(absl::StrContains(watched.out, "hello world from hello\n"));
  CHECK(absl::StrContains(watched.err, "to stderr"));
  CHECK(absl::StrContains(watched.err, "completed"));
  CtlRun s01 = h.Ctl({"start", "runbook", "hello", "--group", "s01", "--param", "who=remote"},
                     nullptr, "carol");
  REQUIRE(s01.exit_code == 0);
  const std::string s01_job = JobId(s01);
  REQUIRE(s01_job.size() == 36);
  {
    v1::RunbookJob j = WaitState(h, s01_job, "completed");
    INFO(j.DebugString());
    CHECK(j.site() == "S01");
    CHECK(j.worker() == "w-s01");
    CHECK(j.attempt() == 1);
    CHECK(j.exit_code() == 0);
    CHECK(Stream(j, "output") == "hello remote from hello\n");
    CHECK(Stream(j, "error") == "to stderr\n");
    CHECK(Stream(j, "verbose") == "a verbose line\n");
    REQUIRE(j.attempts_size() == 1);
    CHECK(j.attempts(0).outcome() == "completed");
    CHECK(j.attempts(0).worker() == "w-s01");
    CHECK(j.queue_to_start_ms() > 0);
    // Audited with the body's hash and the group.
    const std::string sha =
        h.cas->db().Scalar("SELECT sha256 FROM runbook_versions WHERE runbook = 'hello'");
    CHECK(h.cas->db().ScalarInt("SELECT count(*) FROM audit_log WHERE admin = 'carol' AND "
                                "action = 'start' AND outcome = 'ok' AND strpos(summary, $1) > 0 "
                                "AND strpos(summary, 'worker group \"s01\"') > 0",
                                {sha}) == 1);
  }

  {  // an edit is a draft: jobs keep running the published version until it is published;
     // a rollback runs the earlier one again
    const std::string v2 = h.dir.path() + "/hello2.sh";
    WriteFile(v2, "echo \"v2 says hi to $who\"\n");
    REQUIRE(h.Ctl({"update", "runbook", "hello", "--body", v2, "--param", "who:string:required",
                   "--param", "times:int:min=1:max=5"},
                  nullptr, "bob")
                .exit_code == 0);
    auto run = [&](const std::string& who) {
      CtlRun r = h.Ctl({"start", "runbook", "hello", "--group", "p01", "--param", "who=" + who},
                       nullptr, "carol");
      REQUIRE(r.exit_code == 0);
      v1::RunbookJob j = WaitState(h, JobId(r), "completed");
      INFO(j.DebugString());
      return std::make_pair(j.version(), Stream(j, "output"));
    };
    CHECK(run("a") == std::make_pair(1, std::string("hello a from hello\n")));
    REQUIRE(h.Ctl({"publish", "runbook", "hello"}, nullptr, "carol").exit_code == 0);
    CHECK(run("b") == std::make_pair(2, std::string("v2 says hi to b\n")));
    REQUIRE(h.Ctl({"publish", "runbook", "hello", "--version", "1"}, nullptr, "carol").exit_code ==
            0);
    CHECK(run("c") == std::make_pair(1, std::string("hello c from hello\n")));
    CHECK(h.cas->db().ScalarInt("SELECT count(*) FROM audit_log WHERE action = 'rollback' AND "
                                "object_name = 'hello' AND outcome = 'ok'") == 1);
  }
  {  // a credential reaches the job and is never stored in plain form: not in the asset's
     // row, the job's parameters, its output (masked), the audit log or `get job -o json`;
     // an asset outside the starter's scopes refuses the job
    const std::string secret = "s3cr3t-pa55w0rd";
    WriteFile(h.dir.path() + "/secret", secret + "\n");
    CtlRun made = h.Ctl(
        {"create", "asset", "db", "--user", "svc", "--secret-file", h.dir.path() + "/secret"});
    INFO(made.out << made.err);
    REQUIRE(made.exit_code == 0);
    REQUIRE(h.Ctl({"create", "asset", "greeting", "--value", "bonjour"}).exit_code == 0);
    h.cas->db().Exec("INSERT INTO security_scopes (name) VALUES ('Vault')");
    REQUIRE(h.Ctl({"create", "asset", "hidden", "--value", "x", "--encrypted", "--scope", "Vault"})
                .exit_code == 0);
    const std::string uses = h.dir.path() + "/uses.sh";
    WriteFile(uses,
              "echo \"user $(cat \"$STRATA_ASSET_db/user\") secret $(cat "
              "\"$STRATA_ASSET_db/secret\") $STRATA_ASSET_greeting\"\n");
    REQUIRE(h.Ctl({"create", "runbook", "uses-db", "--body", uses, "--asset", "db", "--asset",
                   "greeting"})
                .exit_code == 0);
    REQUIRE(h.Ctl({"publish", "runbook", "uses-db"}).exit_code == 0);
    CtlRun started = h.Ctl({"start", "runbook", "uses-db", "--group", "s01"}, nullptr, "carol");
    INFO(started.out << started.err);
    REQUIRE(started.exit_code == 0);
    const std::string id = JobId(started);
    v1::RunbookJob j = WaitState(h, id, "completed");
    INFO(j.DebugString());
    CHECK(Stream(j, "output") ==
          absl::StrCat("user svc secret ", std::string(secret.size(), '*'), " bonjour\n"));
    CtlRun json = h.Ctl({"get", "job", id, "-o", "json"});
    CHECK(json.exit_code == 0);
    CHECK_FALSE(absl::StrContains(json.out, secret));
    for (SiteProcess* site : {h.cas.get(), h.p01.get(), h.s01.get()}) {
      INFO(site->code());
      for (const char* sql :
           {"SELECT count(*) FROM runbook_assets WHERE strpos(sealed || value, $1) > 0",
            "SELECT count(*) FROM runbook_jobs WHERE strpos(arguments || body, $1) > 0",
            "SELECT count(*) FROM runbook_job_output WHERE strpos(text, $1) > 0",
            "SELECT count(*) FROM audit_log WHERE strpos(summary, $1) > 0"})
        CHECK(site->db().ScalarInt(sql, {secret}) == 0);
    }
    // The job's folder held it only while it ran.
    CHECK_FALSE(std::filesystem::exists(AgentStateDir(h.dir, "w-s01") + "/runbooks/" + id));
    // carol holds the Default scope only: "hidden" is not hers to hand out.
    WriteFile(uses, "echo \"$STRATA_ASSET_hidden\"\n");
    REQUIRE(h.Ctl({"create", "runbook", "uses-hidden", "--body", uses, "--asset", "hidden"})
                .exit_code == 0);
    REQUIRE(h.Ctl({"publish", "runbook", "uses-hidden"}).exit_code == 0);
    CtlRun refused = h.Ctl({"start", "runbook", "uses-hidden", "--group", "s01"}, nullptr, "carol");
    CHECK(refused.exit_code == 3);
    CHECK(absl::StrContains(refused.err, "hidden"));
    CHECK(Denied(*h.cas, "carol", "StartRunbook", "hidden") == 1);
    CHECK(h.cas->db().ScalarInt("SELECT count(*) FROM runbook_jobs WHERE runbook = "
                                "'uses-hidden'") == 0);
  }

  {  // a schedule made at the CAS fires on time, seconds apart, on the group at S01
    CtlRun made = h.Ctl({"create", "schedule", "often", "--runbook", "hello", "--group", "s01",
                         "--every", "5s", "--param", "who=cron"},
                        nullptr, "carol");
    INFO(made.out << made.err);
    REQUIRE(made.exit_code == 0);
    CHECK(absl::StrContains(made.out, "fired by site CAS"));
    auto fired = [&] {
      return h.cas->db().ScalarInt(
          "SELECT count(*) FROM runbook_jobs j JOIN runbook_job_runs r "
          "ON r.job_id = j.id WHERE j.schedule = 'often' AND r.state = "
          "'completed'");
    };
    REQUIRE(WaitFor([&] { return fired() >= 2; }, seconds(60)));
    REQUIRE(h.Ctl({"delete", "schedule", "often"}, nullptr, "carol").exit_code == 0);
    // Each 5 s after the one before, within the second the site looks in.
    const int64_t gap_ms = h.cas->db().ScalarInt(
        "SELECT (extract(epoch FROM max(created_at) - min(created_at)) * 1000)::bigint FROM "
        "(SELECT created_at FROM runbook_jobs WHERE schedule = 'often' ORDER BY created_at LIMIT "
        "2) x");
    CHECK(gap_ms >= 4000);
    CHECK(gap_ms <= 6500);
    CHECK(h.cas->db().ScalarInt("SELECT count(*) FROM runbook_job_output o JOIN runbook_jobs j ON "
                                "j.id = o.job_id WHERE j.schedule = 'often' AND o.text = 'hello "
                                "cron from hello' || chr(10)") >= 2);
    const int64_t after = h.cas->db().ScalarInt(
        "SELECT count(*) FROM runbook_jobs WHERE schedule "
        "= 'often'");
    std::this_thread::sleep_for(seconds(7));  // deleted: no more
    CHECK(h.cas->db().ScalarInt("SELECT count(*) FROM runbook_jobs WHERE schedule = 'often'") ==
          after);
  }
  // Never on a device outside the groups; jobs ran where their group is.
  CHECK(w.daemons["other-p01"]->LogText().find("agent.runbook_job_started") == std::string::npos);
  CHECK(h.cas->db().ScalarInt("SELECT count(*) FROM runbook_job_runs WHERE state = 'completed' "
                              "AND job_id IN (SELECT id FROM runbook_jobs WHERE schedule = '' AND "
                              "runbook = 'hello')") == 5);
  CHECK(h.cas->db().ScalarInt("SELECT count(DISTINCT site_code) FROM runbook_job_runs") == 2);
}

TEST_CASE(
    "a worker killed mid-job: its lease lapses, the job fails over to another worker and never "
    "runs on two at once, its output up to the kill is kept; a stopped job is killed",
    "[runbooks]") {
  ContentHierarchy h;
  Workers w;
  w.mps = StartMps(h);
  for (const char* name : {"wa", "wb"}) w.Start(h, name, "P01");
  for (const auto& [name, d] : w.daemons)
    REQUIRE(d->WaitForLog("agent.nudge_connected") != std::string::npos);
  MakeGroup(h, "pair", "P01", "device.name = \"wa\" or device.name = \"wb\"", 2);

  // Each tick is marked with the attempt and the time: the attempts' marks
  // must not interleave.
  const std::string marks = h.dir.path() + "/marks";
  const std::string body = h.dir.path() + "/long.sh";
  WriteFile(body, absl::StrCat("for i in $(seq 1 $ticks); do\n  echo \"tick $i\"\n"
                               "  echo \"$STRATA_JOB_ATTEMPT $(date +%s%N)\" >> ",
                               marks, "\n  sleep 1\ndone\n"));
  REQUIRE(h.Ctl({"create", "runbook", "long", "--body", body, "--param", "ticks:int:required"})
              .exit_code == 0);
  REQUIRE(h.Ctl({"publish", "runbook", "long"}).exit_code == 0);
  CtlRun r = h.Ctl({"start", "runbook", "long", "--group", "pair", "--param", "ticks=15"});
  REQUIRE(r.exit_code == 0);
  const std::string job = JobId(r);
  // Running, and some output at the CAS: then its worker dies.
  v1::RunbookJob j;
  REQUIRE(WaitFor(
      [&] {
        j = Job(h, job);
        return j.state() == "running" && absl::StrContains(Stream(j, "output"), "tick 3");
      },
      seconds(60)));
  const std::string first = j.worker();
  REQUIRE((first == "wa" || first == "wb"));
  const std::string second = first == "wa" ? "wb" : "wa";
  REQUIRE(w.daemons[first]->Kill() == 128 + SIGKILL);

  j = WaitState(h, job, "completed", seconds(120));
  INFO(j.DebugString());
  CHECK(j.attempt() == 2);
  CHECK(j.worker() == second);
  REQUIRE(j.attempts_size() == 2);
  CHECK(j.attempts(0).worker() == first);
  CHECK(j.attempts(0).outcome() == "lost");
  CHECK(absl::StrContains(j.attempts(0).detail(), "stopped renewing its lease"));
  CHECK(j.attempts(1).outcome() == "completed");
  CHECK(absl::StrContains(Stream(j, "output"), "tick 15\n"));
  // What the lost attempt wrote before its worker died is kept.
  CHECK(absl::StrContains(Stream(Job(h, job, 1), "output"), "tick 3\n"));
  {  // the first attempt's job was stopped by its lease before the second began
    std::ifstream in(marks);
    std::string line;
    int64_t last_first = 0, first_second = INT64_MAX, n_first = 0, n_second = 0;
    while (std::getline(in, line)) {
      std::vector<std::string> f = absl::StrSplit(line, ' ');
      int64_t at = 0;
      if (f.size() != 2 || !absl::SimpleAtoi(f[1], &at)) continue;
      if (f[0] == "1") {
        last_first = std::max(last_first, at);
        ++n_first;
      } else {
        first_second = std::min(first_second, at);
        ++n_second;
      }
    }
    CHECK(n_second == 15);
    CHECK(n_first >= 3);
    CHECK(n_first < 15);
    CHECK(last_first < first_second);
  }

  {  // stopped while running: killed by its worker, recorded as stopped
    CtlRun s = h.Ctl({"start", "runbook", "long", "--group", "pair", "--param", "ticks=60"});
    REQUIRE(s.exit_code == 0);
    const std::string id = JobId(s);
    REQUIRE(WaitFor(
        [&] {
          j = Job(h, id);
          return absl::StrContains(Stream(j, "output"), "tick 2");
        },
        seconds(60)));
    CtlRun stop = h.Ctl({"stop", "job", id});
    INFO(stop.out << stop.err);
    REQUIRE(stop.exit_code == 0);
    j = WaitState(h, id, "stopped", seconds(60));
    CHECK(j.worker() == second);
    CHECK(absl::StrContains(j.detail(), "stopped"));
    CHECK_FALSE(absl::StrContains(Stream(j, "output"), "tick 30"));
    CHECK(h.Ctl({"stop", "job", id}).exit_code != 0);  // ended: refused
    CHECK(h.cas->db().ScalarInt("SELECT count(*) FROM audit_log WHERE action = 'stop' AND "
                                "object_name = $1 AND outcome = 'ok'",
                                {id}) == 1);
  }

  {  // a resumable runbook's job suspended mid-run: killed by its worker, it waits with its
     // checkpoint; resumed, its next attempt carries on from the checkpoint, not from the start
    const std::string counter = h.dir.path() + "/counter.sh";
    WriteFile(counter,
              "f=\"$STRATA_CHECKPOINT_FILE\"; d=$(dirname \"$f\")\n"
              "i=$(cat \"$f\" 2>/dev/null); i=${i:-0}\n"
              "echo \"attempt $STRATA_JOB_ATTEMPT from $i\"\n"
              "while [ $i -lt 30 ]; do\n  i=$((i+1)); echo \"count $i\"\n"
              "  echo $i > \"$d/next\"; mv \"$d/next\" \"$f\"; sleep 0.3\ndone\n");
    REQUIRE(h.Ctl({"create", "runbook", "counter", "--body", counter, "--resumable"}).exit_code ==
            0);
    REQUIRE(h.Ctl({"publish", "runbook", "counter"}).exit_code == 0);
    CtlRun s = h.Ctl({"start", "runbook", "counter", "--group", "pair"});
    REQUIRE(s.exit_code == 0);
    const std::string id = JobId(s);
    REQUIRE(WaitFor(
        [&] {
          j = Job(h, id);
          return absl::StrContains(Stream(j, "output"), "count 4\n");
        },
        seconds(60)));
    CtlRun suspend = h.Ctl({"suspend", "job", id});
    INFO(suspend.out << suspend.err);
    REQUIRE(suspend.exit_code == 0);
    j = WaitState(h, id, "suspended", seconds(60));
    INFO(j.DebugString());
    CHECK(j.resumable());
    CHECK(j.suspend_requested());
    CHECK(j.checkpoint_bytes() > 0);
    REQUIRE(j.attempts_size() == 1);
    CHECK(j.attempts(0).outcome() == "suspended");
    const std::string first_output = Stream(Job(h, id, 1), "output");
    CHECK(absl::StartsWith(first_output, "attempt 1 from 0\ncount 1\n"));
    CHECK_FALSE(absl::StrContains(first_output, "count 30\n"));
    // It waits: no new attempt, no new output; a second suspend, and following it, say so.
    CtlRun again = h.Ctl({"suspend", "job", id});
    CHECK(again.exit_code != 0);
    CHECK(absl::StrContains(again.err, "suspended already"));
    CtlRun follow = h.Ctl({"get", "job", id, "--follow"});
    CHECK(follow.exit_code == 1);
    CHECK(absl::StrContains(follow.err, "is suspended: stratactl resume job"));
    std::this_thread::sleep_for(seconds(2));
    CHECK(Job(h, id).attempts_size() == 1);
    CHECK(Stream(Job(h, id, 1), "output") == first_output);

    CtlRun resume = h.Ctl({"resume", "job", id});
    INFO(resume.out << resume.err);
    REQUIRE(resume.exit_code == 0);
    j = WaitState(h, id, "completed", seconds(90));
    CHECK(j.attempt() == 2);
    CHECK(j.attempts(0).outcome() == "suspended");
    CHECK(j.attempts(1).outcome() == "completed");
    // Attempt 2 began where attempt 1's checkpoint left off (the last count it saved).
    const std::string out = Stream(j, "output");
    INFO(first_output << "---\n" << out);
    int64_t from = -1, last_first = 0;
    for (absl::string_view line : absl::StrSplit(first_output, '\n'))
      if (absl::ConsumePrefix(&line, "count ")) (void)absl::SimpleAtoi(line, &last_first);
    REQUIRE(absl::StartsWith(out, "attempt 2 from "));
    (void)absl::SimpleAtoi(out.substr(15, out.find('\n') - 15), &from);
    CHECK(from >= 4);
    CHECK(from <= last_first);
    CHECK(from >= last_first - 1);  // killed between a count and its checkpoint at worst
    CHECK(absl::StrContains(out, absl::StrCat("count ", from + 1, "\n")));
    CHECK_FALSE(absl::StrContains(out, "\ncount 1\n"));
    CHECK(absl::StrContains(out, "count 30\n"));
    for (const char* action : {"suspend", "resume"})
      CHECK(h.cas->db().ScalarInt("SELECT count(*) FROM audit_log WHERE action = $1 AND "
                                  "object_name = $2 AND outcome = 'ok'",
                                  {action, id}) == 1);
    CHECK(h.Ctl({"resume", "job", id}).exit_code != 0);  // ended: refused

    // A runbook that is not resumable: refused, audited, nothing changed.
    CtlRun l = h.Ctl({"start", "runbook", "long", "--group", "pair", "--param", "ticks=60"});
    REQUIRE(l.exit_code == 0);
    const std::string plain = JobId(l);
    CtlRun refused = h.Ctl({"suspend", "job", plain});
    CHECK(refused.exit_code != 0);
    CHECK(absl::StrContains(refused.err, "not resumable"));
    CHECK(h.cas->db().ScalarInt("SELECT count(*) FROM audit_log WHERE outcome = 'denied' AND "
                                "action = 'SuspendRunbookJob' AND strpos(summary, 'not "
                                "resumable') > 0") == 1);
    CHECK(h.cas->db().ScalarInt("SELECT count(*) FROM runbook_jobs WHERE id = $1::uuid AND NOT "
                                "suspend_requested",
                                {plain}) == 1);
    REQUIRE(h.Ctl({"stop", "job", plain}).exit_code == 0);
  }
}
