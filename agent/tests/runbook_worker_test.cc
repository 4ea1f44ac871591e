// The runbook worker on the real machine: real processes, files and
// watchdogs; the site is a fake exchange (the end-to-end path, with the
// site's dispatcher and the hierarchy, is tests/runbook_test.cc).

#include "agent/runbook_worker.h"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/content/hash.h"
#include "common/deploy/runbook.h"

using namespace strata;
using namespace strata::agent;

namespace {

struct Dir {
  std::string path;
  Dir() {
    char t[] = "/tmp/st-runbooks-XXXXXX";
    path = ::mkdtemp(t);
  }
  ~Dir() { std::filesystem::remove_all(path); }
};

int Lines(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) ++n;
  return n;
}

v1::RunbookJobOrder Order(const std::string& job, const std::string& body) {
  v1::RunbookJobOrder o;
  o.set_job(job);
  o.set_attempt(1);
  o.set_runbook("test");
  o.set_version(1);
  o.set_interpreter("sh");
  o.set_body(body);
  o.set_sha256(content::Sha256::Of(body));
  o.set_timeout_seconds(120);
  return o;
}

// The site as the worker sees it: orders handed out until the job ended,
// streams assembled by offset, ends accepted.
struct FakeSite {
  absl::Mutex mu;
  std::vector<v1::RunbookJobOrder> orders;
  std::set<std::string> stop;
  std::map<std::string, v1::RunbookJobProgress> ended;
  std::map<std::string, std::map<int64_t, std::string>> pieces;  // job/stream -> offset -> text
  std::map<std::string, std::vector<std::string>> checkpoints;   // job -> each one received
  std::string every_piece;  // every piece's text as received, sent again or not
  bool fail = false;
  int64_t lease_ms = 30000;
  int exchanges = 0;

  absl::StatusOr<v1::RunbookWorkResponse> Exchange(const v1::RunbookWorkRequest& req) {
    absl::MutexLock lock(&mu);
    if (fail) return absl::UnavailableError("the site is away");
    ++exchanges;
    v1::RunbookWorkResponse resp;
    for (const auto& p : req.jobs()) {
      for (const auto& c : p.output()) {
        pieces[p.job() + "/" + c.stream()][c.offset()] = c.text();
        every_piece += c.text();
      }
      if (p.has_checkpoint()) checkpoints[p.job()].push_back(p.checkpoint());
      if (deploy::IsFinal(p.state())) {
        ended[p.job()] = p;
        resp.add_accepted(p.job());
      } else if (stop.count(p.job())) {
        resp.add_stop(p.job());
      }
    }
    for (const auto& o : orders)
      if (!ended.count(o.job())) *resp.add_start() = o;  // until it ended: a retry never reruns
    resp.set_lease_ms(lease_ms);
    return resp;
  }

  // The stream as the site would show it: pieces in order, each byte once.
  std::string Stream(const std::string& job, const std::string& stream) {
    absl::MutexLock lock(&mu);
    std::string out;
    for (const auto& [off, text] : pieces[job + "/" + stream])
      if (off + static_cast<int64_t>(text.size()) > static_cast<int64_t>(out.size()))
        out.append(text.substr(out.size() - std::min<size_t>(out.size(), off)));
    return out;
  }

  bool Ended(const std::string& job, v1::RunbookJobProgress* out = nullptr) {
    absl::MutexLock lock(&mu);
    auto it = ended.find(job);
    if (it == ended.end()) return false;
    if (out) *out = it->second;
    return true;
  }
};

RunbookWorkerOptions Options(const Dir& dir, FakeSite& site) {
  RunbookWorkerOptions o;
  o.state_dir = dir.path;
  o.exchange = [&site](const v1::RunbookWorkRequest& r) { return site.Exchange(r); };
  o.busy_poll = absl::Milliseconds(200);
  o.idle_poll = absl::Milliseconds(500);
  return o;
}

bool WaitEnded(FakeSite& site, const std::string& job, v1::RunbookJobProgress* out,
               absl::Duration timeout) {
  const absl::Time until = absl::Now() + timeout;
  while (absl::Now() < until) {
    if (site.Ended(job, out)) return true;
    absl::SleepFor(absl::Milliseconds(50));
  }
  return false;
}

// Waits up to 20 s for `fn`.
bool Soon(const std::function<bool()>& fn) {
  const absl::Time until = absl::Now() + absl::Seconds(20);
  while (absl::Now() < until) {
    if (fn()) return true;
    absl::SleepFor(absl::Milliseconds(50));
  }
  return false;
}

constexpr char kJob[] = "00000000-0000-0000-0000-0000000000f1";

}  // namespace

TEST_CASE(
    "a job ordered runs once, however often the order comes; its streams go up in pieces, "
    "each byte once, and its end with them; its record goes once the site accepted it",
    "[runbooks]") {
  Dir dir;
  FakeSite site;
  const std::string marks = dir.path + "/marks";
  site.orders.push_back(Order(kJob, absl::StrCat("echo ran >> ", marks,
                                                 "\nfor i in 1 2 3; do echo \"out $i\"; sleep 0.3; "
                                                 "done\necho err >&2\necho verb >> "
                                                 "\"$STRATA_VERBOSE_FILE\"\nexit 3\n")));
  RunbookWorker worker(Options(dir, site));
  worker.SetGroups({"g"});
  worker.Start();
  v1::RunbookJobProgress end;
  REQUIRE(WaitEnded(site, kJob, &end, absl::Seconds(20)));
  // One more exchange: the record goes after the site accepted the end.
  absl::SleepFor(absl::Seconds(1));
  worker.Stop();
  CHECK(end.state() == v1::RUNBOOK_JOB_STATE_FAILED);
  CHECK(end.exit_code() == 3);
  CHECK(end.detail() == "exited with 3");
  CHECK(site.Stream(kJob, "output") == "out 1\nout 2\nout 3\n");
  CHECK(site.Stream(kJob, "error") == "err\n");
  CHECK(site.Stream(kJob, "verbose") == "verb\n");
  CHECK(Lines(marks) == 1);
  CHECK(site.exchanges > 3);
  CHECK_FALSE(std::filesystem::exists(dir.path + "/runbooks/" + std::string(kJob) + ".pb"));
}

TEST_CASE(
    "a worker cut off from its site stops its job when the lease it could renew ends, and "
    "says why once the site answers again",
    "[runbooks]") {
  Dir dir;
  FakeSite site;
  site.lease_ms = 10000;  // the shortest a group allows
  const std::string marks = dir.path + "/marks";
  site.orders.push_back(
      Order(kJob, absl::StrCat("while true; do date +%s >> ", marks, "; sleep 1; done\n")));
  RunbookWorker worker(Options(dir, site));
  worker.SetGroups({"g"});
  worker.Start();
  REQUIRE(Soon([&] { return Lines(marks) >= 1; }));
  const absl::Time cut = absl::Now();
  {
    absl::MutexLock lock(&site.mu);
    site.fail = true;
  }
  // The lease ran 10 s from the last exchange sent; the worker's own view
  // ends a sixth sooner: the job is gone within ~10 s, well before the
  // site would give it to another worker (lease + 10 s).
  const absl::Time until = cut + absl::Seconds(20);
  int before = -1;
  while (absl::Now() < until) {
    const int n = Lines(marks);
    if (n == before) break;  // no tick for over a second: stopped
    before = n;
    absl::SleepFor(absl::Milliseconds(1500));
  }
  const absl::Duration took = absl::Now() - cut;
  CHECK(took < absl::Seconds(14));
  const int ticks = Lines(marks);
  absl::SleepFor(absl::Seconds(2));
  CHECK(Lines(marks) == ticks);  // gone for good
  {
    absl::MutexLock lock(&site.mu);
    site.fail = false;
  }
  v1::RunbookJobProgress end;
  REQUIRE(WaitEnded(site, kJob, &end, absl::Seconds(10)));
  worker.Stop();
  CHECK(end.state() == v1::RUNBOOK_JOB_STATE_FAILED);
  CHECK(absl::StrContains(end.detail(), "its lease ended"));
}

TEST_CASE("a job the site says to stop is killed and reported stopped", "[runbooks]") {
  Dir dir;
  FakeSite site;
  const std::string marks = dir.path + "/marks";
  site.orders.push_back(
      Order(kJob, absl::StrCat("while true; do date +%s >> ", marks, "; sleep 1; done\n")));
  RunbookWorker worker(Options(dir, site));
  worker.SetGroups({"g"});
  worker.Start();
  REQUIRE(Soon([&] { return Lines(marks) >= 2; }));
  {
    absl::MutexLock lock(&site.mu);
    site.stop.insert(kJob);
  }
  v1::RunbookJobProgress end;
  REQUIRE(WaitEnded(site, kJob, &end, absl::Seconds(15)));
  worker.Stop();
  CHECK(end.state() == v1::RUNBOOK_JOB_STATE_STOPPED);
  const int ticks = Lines(marks);
  absl::SleepFor(absl::Seconds(2));
  CHECK(Lines(marks) == ticks);
}

TEST_CASE(
    "an agent restarted mid-job adopts it: the job runs on, once, and its end and whole "
    "output are reported",
    "[runbooks]") {
  Dir dir;
  FakeSite site;
  const std::string marks = dir.path + "/marks";
  site.orders.push_back(
      Order(kJob, absl::StrCat("echo ran >> ", marks, "\necho before\nsleep 3\necho after\n")));
  {
    RunbookWorker worker(Options(dir, site));
    worker.SetGroups({"g"});
    worker.Start();
    REQUIRE(Soon([&] { return Lines(marks) == 1; }));
    worker.Stop();  // the job runs on
  }
  RunbookWorker again(Options(dir, site));
  again.SetGroups({"g"});
  again.Start();
  v1::RunbookJobProgress end;
  REQUIRE(WaitEnded(site, kJob, &end, absl::Seconds(20)));
  again.Stop();
  CHECK(end.state() == v1::RUNBOOK_JOB_STATE_COMPLETED);
  CHECK(site.Stream(kJob, "output") == "before\nafter\n");
  CHECK(Lines(marks) == 1);
}

TEST_CASE(
    "a resumable job finds its last checkpoint in $STRATA_CHECKPOINT_FILE and each new one "
    "goes up once it changed; one over 64 KiB is not sent and the end says so; a job of a "
    "runbook that is not resumable has no checkpoint file",
    "[runbooks]") {
  Dir dir;
  FakeSite site;
  constexpr char kPlain[] = "00000000-0000-0000-0000-0000000000f2";
  v1::RunbookJobOrder o =
      Order(kJob,
            "d=$(dirname \"$STRATA_CHECKPOINT_FILE\")\ni=$(cat \"$STRATA_CHECKPOINT_FILE\")\n"
            "echo \"from $i\"\nfor k in 1 2 3; do i=$((i+1)); echo $i > \"$d/new\"; "
            "mv \"$d/new\" \"$STRATA_CHECKPOINT_FILE\"; sleep 0.5; done\n"
            "head -c 70000 /dev/zero > \"$d/new\"; mv \"$d/new\" \"$STRATA_CHECKPOINT_FILE\"\n"
            "sleep 0.5\n");
  o.set_resumable(true);
  o.set_checkpoint("3\n");
  site.orders.push_back(o);
  site.orders.push_back(Order(kPlain, "echo \"[${STRATA_CHECKPOINT_FILE:-none}]\"\n"));
  // A FIFO where the checkpoint should be: never opened to wait on (the worker goes on).
  constexpr char kFifo[] = "00000000-0000-0000-0000-0000000000f3";
  v1::RunbookJobOrder fifo =
      Order(kFifo,
            "rm -f \"$STRATA_CHECKPOINT_FILE\"; mkfifo \"$STRATA_CHECKPOINT_FILE\"\n"
            "sleep 1.5\n");
  fifo.set_resumable(true);
  site.orders.push_back(fifo);
  RunbookWorker worker(Options(dir, site));
  worker.SetGroups({"g"});
  worker.Start();
  v1::RunbookJobProgress end, plain;
  REQUIRE(WaitEnded(site, kJob, &end, absl::Seconds(20)));
  REQUIRE(WaitEnded(site, kPlain, &plain, absl::Seconds(20)));
  v1::RunbookJobProgress fifo_end;
  REQUIRE(WaitEnded(site, kFifo, &fifo_end, absl::Seconds(20)));
  worker.Stop();
  CHECK(fifo_end.state() == v1::RUNBOOK_JOB_STATE_COMPLETED);
  CHECK(site.checkpoints.count(kFifo) == 0);
  CHECK(end.state() == v1::RUNBOOK_JOB_STATE_COMPLETED);
  CHECK(site.Stream(kJob, "output") == "from 3\n");  // the order's checkpoint, given back
  std::vector<std::string> got;
  {
    absl::MutexLock lock(&site.mu);
    got = site.checkpoints[kJob];
  }
  REQUIRE_FALSE(got.empty());
  CHECK(got.back() == "6\n");  // the last one within bounds
  std::set<std::string> distinct(got.begin(), got.end());
  CHECK(distinct.count("4\n") + distinct.count("5\n") >= 1);  // sent as they changed
  for (const auto& c : got) CHECK(c.size() <= deploy::kMaxCheckpointBytes);
  CHECK(absl::StrContains(end.detail(), "a checkpoint larger than 64 KiB was not kept"));
  CHECK(site.Stream(kPlain, "output") == "[none]\n");
  CHECK(site.checkpoints.count(kPlain) == 0);
}

TEST_CASE(
    "a secret is masked in the output sent across a piece's edge, and a secret half written "
    "is kept back until the rest shows whether it is one",
    "[runbooks]") {
  Dir dir;
  FakeSite site;
  v1::RunbookJobOrder o = Order(kJob,
                                "head -c 16379 /dev/zero | tr '\\000' x\n"
                                "printf 'TOPSECRET1 and '\n"
                                "printf 'TOPSEC'; sleep 1.5; printf 'RET1\\n'\n");
  v1::RunbookAsset* a = o.add_assets();
  a->set_name("db");
  a->set_kind("credential");
  a->set_user("svc");
  a->set_secret("TOPSECRET1");
  a->set_encrypted(true);
  site.orders.push_back(o);
  RunbookWorker worker(Options(dir, site));
  worker.SetGroups({"g"});
  worker.Start();
  v1::RunbookJobProgress end;
  REQUIRE(WaitEnded(site, kJob, &end, absl::Seconds(20)));
  worker.Stop();
  CHECK(end.state() == v1::RUNBOOK_JOB_STATE_COMPLETED);
  // The first secret spans the 16 KiB edge between two pieces (16379 + 10).
  CHECK(site.Stream(kJob, "output") == std::string(16379, 'x') + "********** and **********\n");
  CHECK(site.exchanges > 3);  // it was sent while the second one was half written
  absl::MutexLock lock(&site.mu);
  CHECK_FALSE(absl::StrContains(site.every_piece, "TOPS"));
  CHECK_FALSE(absl::StrContains(site.every_piece, "RET1"));
}
