// The dispatching site's side of runbook jobs against a real database: the
// workers' exchange (claims, limits, fairness, leases, who may report what)
// and the dispatcher's pass (intake, stops, lapsed leases).

#include "common/site/runbook_dispatch.h"

#include <catch2/catch.hpp>
#include <map>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "tests/fixture/testing.h"

using strata::site::DispatchRunbooks;
using strata::site::RunbookWork;
using strata::testing::PrepareSiteDatabase;
using strata::testing::TestDatabase;
namespace v1 = strata::v1;

namespace {

constexpr char kW1[] = "00000000-0000-0000-0000-0000000000a1";
constexpr char kW2[] = "00000000-0000-0000-0000-0000000000a2";
constexpr char kW3[] = "00000000-0000-0000-0000-0000000000a3";

// Site P01 with group `g` (workers w1, w2; `per_worker` and `max_jobs`) and
// w3, a worker of no group.
void Prepare(const TestDatabase& db, int per_worker, int max_jobs) {
  PrepareSiteDatabase(db, "P01");
  for (auto [id, name] : {std::pair{kW1, "w1"}, {kW2, "w2"}, {kW3, "w3"}})
    db.Exec("INSERT INTO devices (id, name, site_code) VALUES ($1, $2, 'P01')", {id, name});
  db.Exec(
      "INSERT INTO runbook_worker_groups (name, site_code, collection, max_jobs_per_worker, "
      "max_jobs, lease_seconds, created_by) VALUES ('g', 'P01', 'All Systems', $1, $2, 30, 'a')",
      {absl::StrCat(per_worker), absl::StrCat(max_jobs)});
  for (const char* w : {kW1, kW2})
    db.Exec(
        "INSERT INTO runbook_worker_assignments (device_id, worker_group, site_code) VALUES "
        "($1, 'g', 'P01')",
        {w});
}

// A job of `runbook` on group g at P01; its id.
std::string AddJob(const TestDatabase& db, const std::string& runbook,
                   const std::string& on_lost = "retry", int attempts = 3) {
  return db.Scalar(
      "INSERT INTO runbook_jobs (id, runbook, version, interpreter, body, sha256, "
      "timeout_seconds, on_worker_lost, max_attempts, worker_group, site_code, scopes, "
      "created_by) VALUES (gen_random_uuid(), $1, 1, 'sh', 'true', 'x', 60, $2, $3, 'g', 'P01', "
      "'{Default}', 'a') RETURNING id::text",
      {runbook, on_lost, absl::StrCat(attempts)});
}

v1::RunbookWorkResponse Work(const TestDatabase& db, const std::string& worker, int free,
                             const std::vector<v1::RunbookJobProgress>& jobs = {}) {
  v1::RunbookWorkRequest req;
  req.set_free_slots(free);
  for (const auto& j : jobs) *req.add_jobs() = j;
  v1::RunbookWorkResponse resp;
  auto conn = db.Connect();
  absl::Status s = RunbookWork(*conn, "P01", worker, req, &resp);
  INFO(s.ToString());
  REQUIRE(s.ok());
  return resp;
}

v1::RunbookJobProgress Progress(const std::string& job, int attempt, v1::RunbookJobStateKind state,
                                const std::string& output = "") {
  v1::RunbookJobProgress p;
  p.set_job(job);
  p.set_attempt(attempt);
  p.set_state(state);
  if (!output.empty()) {
    auto* c = p.add_output();
    c->set_stream("output");
    c->set_offset(0);
    c->set_text(output);
  }
  return p;
}

strata::site::DispatchStats Dispatch(const TestDatabase& db) {
  auto conn = db.Connect();
  auto stats = DispatchRunbooks(*conn, "P01");
  INFO(stats.status().ToString());
  REQUIRE(stats.ok());
  return *stats;
}

std::string State(const TestDatabase& db, const std::string& job) {
  return db.Scalar(
      "SELECT state || ' ' || attempt || ' ' || worker_name FROM runbook_job_runs "
      "WHERE job_id = $1::uuid",
      {job});
}

}  // namespace

TEST_CASE(
    "workers take queued jobs fairly across runbooks within their own and their group's "
    "limits; a job goes to one worker, and one whose answer was lost is sent again",
    "[runbooks]") {
  TestDatabase db("rbdispatch");
  Prepare(db, /*per_worker=*/2, /*max_jobs=*/3);
  std::vector<std::string> a, b;
  for (int i = 0; i < 4; ++i) a.push_back(AddJob(db, "A"));
  for (int i = 0; i < 2; ++i) b.push_back(AddJob(db, "B"));
  // Nothing is handed out before the dispatcher takes the jobs in.
  CHECK(Work(db, kW1, 10).start_size() == 0);
  auto stats = Dispatch(db);
  CHECK(stats.taken_in == 6);
  CHECK(stats.workers_woken == 2);  // the group's workers are nudged
  CHECK(db.ScalarInt("SELECT count(*) FROM runbook_wake") == 2);

  v1::RunbookWorkResponse w1 = Work(db, kW1, 10);
  REQUIRE(w1.start_size() == 2);  // its own limit
  // The oldest of each runbook in turn, not the four of A first.
  std::set<std::string> runbooks{w1.start(0).runbook(), w1.start(1).runbook()};
  CHECK(runbooks == std::set<std::string>{"A", "B"});
  CHECK(w1.start(0).attempt() == 1);
  CHECK(w1.lease_ms() == 30000);
  CHECK(Work(db, kW2, 10).start_size() == 1);  // the group's limit: 3 at once
  CHECK(Work(db, kW3, 10).start_size() == 0);  // not a worker of the group
  // The answer was lost: w1 asks again naming nothing: the same two, again.
  v1::RunbookWorkResponse again = Work(db, kW1, 10);
  REQUIRE(again.start_size() == 2);
  CHECK(std::set<std::string>{again.start(0).job(), again.start(1).job()} ==
        std::set<std::string>{w1.start(0).job(), w1.start(1).job()});
  CHECK(db.ScalarInt("SELECT count(*) FROM runbook_job_attempts") == 3);

  // w1 runs one and finishes the other: accepted, and it takes one more.
  const std::string done = w1.start(0).job(), running = w1.start(1).job();
  v1::RunbookWorkResponse next =
      Work(db, kW1, 1,
           {Progress(running, 1, v1::RUNBOOK_JOB_STATE_RUNNING),
            Progress(done, 1, v1::RUNBOOK_JOB_STATE_COMPLETED, "hello\n")});
  CHECK(std::vector<std::string>(next.accepted().begin(), next.accepted().end()) ==
        std::vector<std::string>{done});
  REQUIRE(next.start_size() == 1);
  CHECK(State(db, done) == "completed 1 w1");
  CHECK(State(db, running) == "running 1 w1");
  CHECK(db.Scalar("SELECT text FROM runbook_job_output WHERE job_id = $1::uuid", {done}) ==
        "hello\n");
  // Every job was handed to one worker only.
  CHECK(db.ScalarInt("SELECT count(*) FROM (SELECT job_id FROM runbook_job_attempts GROUP BY "
                     "job_id HAVING count(*) > 1) x") == 0);
}

TEST_CASE(
    "a state is taken only from the worker holding the attempt; output sent again is kept "
    "once; a lapsed lease fails the job over, or fails it, as the runbook says",
    "[runbooks]") {
  TestDatabase db("rblease");
  Prepare(db, 5, 0);
  const std::string retry = AddJob(db, "R", "retry", 2), fail = AddJob(db, "F", "fail", 3);
  Dispatch(db);
  v1::RunbookWorkResponse w1 = Work(db, kW1, 2);
  REQUIRE(w1.start_size() == 2);
  // w2 claims an attempt it was never given: its state and output are refused,
  // and it is told to stop.
  v1::RunbookWorkResponse w2 =
      Work(db, kW2, 0, {Progress(retry, 1, v1::RUNBOOK_JOB_STATE_COMPLETED, "forged\n")});
  CHECK(State(db, retry) == "dispatched 1 w1");
  CHECK(db.ScalarInt("SELECT count(*) FROM runbook_job_output") == 0);
  CHECK(w2.accepted_size() == 1);  // nothing of its to keep: it may forget it
  // w1 reports both running, with the same piece of output twice.
  auto with_output = Progress(retry, 1, v1::RUNBOOK_JOB_STATE_RUNNING, "tick 1\n");
  Work(db, kW1, 0, {with_output, Progress(fail, 1, v1::RUNBOOK_JOB_STATE_RUNNING)});
  Work(db, kW1, 0, {with_output, Progress(fail, 1, v1::RUNBOOK_JOB_STATE_RUNNING)});
  CHECK(db.ScalarInt("SELECT count(*) FROM runbook_job_output") == 1);
  // Sent again from the same offset, longer (the answer to the first was lost
  // and the stream grew): the longer piece is kept, so no gap is left.
  Work(db, kW1, 0,
       {Progress(retry, 1, v1::RUNBOOK_JOB_STATE_RUNNING, "tick 1\ntick 2\n"),
        Progress(fail, 1, v1::RUNBOOK_JOB_STATE_RUNNING)});
  CHECK(db.Scalar("SELECT text FROM runbook_job_output WHERE job_id = $1::uuid", {retry}) ==
        "tick 1\ntick 2\n");
  Work(db, kW1, 0, {with_output, Progress(fail, 1, v1::RUNBOOK_JOB_STATE_RUNNING)});
  CHECK(db.Scalar("SELECT text FROM runbook_job_output WHERE job_id = $1::uuid", {retry}) ==
        "tick 1\ntick 2\n");  // a shorter one changes nothing
  CHECK(State(db, retry) == "running 1 w1");

  // Not yet past the lease and its grace: nothing happens.
  CHECK(Dispatch(db).failed_over == 0);
  db.Exec("UPDATE runbook_job_runs SET lease_expires_at = now() - interval '11 seconds'");
  auto stats = Dispatch(db);
  CHECK(stats.failed_over == 1);
  CHECK(stats.failed == 1);
  CHECK(State(db, retry) == "queued 1 ");
  CHECK(db.Scalar("SELECT state FROM runbook_job_runs WHERE job_id = $1::uuid", {fail}) ==
        "failed");
  CHECK(db.Scalar("SELECT outcome FROM runbook_job_attempts WHERE job_id = $1::uuid", {fail}) ==
        "lost");
  CHECK(db.ScalarInt("SELECT count(*) FROM runbook_job_runs WHERE job_id = $1::uuid AND "
                     "strpos(detail, 'on_worker_lost = fail') > 0",
                     {fail}) == 1);
  // w1 comes back: both are no longer its own, it is told to stop them.
  v1::RunbookWorkResponse back = Work(db, kW1, 0,
                                      {Progress(retry, 1, v1::RUNBOOK_JOB_STATE_RUNNING),
                                       Progress(fail, 1, v1::RUNBOOK_JOB_STATE_RUNNING)});
  CHECK(std::set<std::string>(back.stop().begin(), back.stop().end()) ==
        std::set<std::string>{retry, fail});
  // w2 takes the retried one: attempt 2, the last (max_attempts 2).
  v1::RunbookWorkResponse taken = Work(db, kW2, 5);
  REQUIRE(taken.start_size() == 1);
  CHECK(taken.start(0).job() == retry);
  CHECK(taken.start(0).attempt() == 2);
  // w1's late end of attempt 1 changes nothing.
  Work(db, kW1, 0, {Progress(retry, 1, v1::RUNBOOK_JOB_STATE_COMPLETED)});
  CHECK(State(db, retry) == "dispatched 2 w2");
  db.Exec("UPDATE runbook_job_runs SET lease_expires_at = now() - interval '11 seconds'");
  CHECK(Dispatch(db).failed == 1);
  CHECK(db.ScalarInt("SELECT count(*) FROM runbook_job_runs WHERE job_id = $1::uuid AND state "
                     "= 'failed' AND strpos(detail, 'no attempt left') > 0",
                     {retry}) == 1);
}

TEST_CASE(
    "a stop request stops a queued job before it starts and reaches the worker holding a "
    "running one; a worker's request out of bounds is refused whole",
    "[runbooks]") {
  TestDatabase db("rbstop");
  Prepare(db, 5, 0);
  const std::string queued = AddJob(db, "Q"), held = AddJob(db, "H");
  Dispatch(db);
  // w1 takes both, then one is handed back to the queue by a lapsed lease.
  REQUIRE(Work(db, kW1, 2).start_size() == 2);
  db.Exec(
      "UPDATE runbook_job_runs SET lease_expires_at = now() - interval '1 minute' WHERE "
      "job_id = $1::uuid",
      {queued});
  Dispatch(db);
  REQUIRE(State(db, queued) == "queued 1 ");
  db.Exec("UPDATE runbook_jobs SET stop_requested_by = 'alice', stop_requested_at = now()");
  auto stats = Dispatch(db);
  CHECK(stats.stopped == 1);
  CHECK(db.Scalar("SELECT state FROM runbook_job_runs WHERE job_id = $1::uuid", {queued}) ==
        "stopped");
  v1::RunbookWorkResponse r = Work(db, kW1, 0, {Progress(held, 1, v1::RUNBOOK_JOB_STATE_RUNNING)});
  CHECK(std::vector<std::string>(r.stop().begin(), r.stop().end()) ==
        std::vector<std::string>{held});
  Work(db, kW1, 0, {Progress(held, 1, v1::RUNBOOK_JOB_STATE_STOPPED)});
  CHECK(State(db, held) == "stopped 1 w1");

  // Dispatched, the answer lost, then stopped: never sent again (it never
  // started: its worker does not name it), it ends at the site.
  const std::string lost_answer = AddJob(db, "Q");
  Dispatch(db);
  REQUIRE(Work(db, kW2, 1).start_size() == 1);
  db.Exec(
      "UPDATE runbook_jobs SET stop_requested_by = 'alice', stop_requested_at = now() WHERE id = "
      "$1::uuid",
      {lost_answer});
  CHECK(Work(db, kW2, 1).start_size() == 0);
  CHECK(db.Scalar("SELECT r.state || ' ' || a.outcome || ' ' || a.detail FROM runbook_job_runs r "
                  "JOIN runbook_job_attempts a USING (job_id) WHERE job_id = $1::uuid",
                  {lost_answer}) == "stopped stopped stopped by alice before it started");

  // Out of bounds: refused, nothing written.
  v1::RunbookWorkRequest bad;
  auto* p = bad.add_jobs();
  *p = Progress(held, 1, v1::RUNBOOK_JOB_STATE_RUNNING);
  p->add_output()->set_stream("output");
  p->mutable_output(0)->set_text(std::string(16 * 1024 + 1, 'x'));
  v1::RunbookWorkResponse resp;
  auto conn = db.Connect();
  absl::Status s = RunbookWork(*conn, "P01", kW1, bad, &resp);
  CHECK(s.code() == absl::StatusCode::kInvalidArgument);
  CHECK(absl::StrContains(s.message(), "16 KiB"));
  bad.mutable_jobs(0)->mutable_output(0)->set_text("ok");
  bad.mutable_jobs(0)->mutable_output(0)->set_stream("debug");
  s = RunbookWork(*conn, "P01", kW1, bad, &resp);
  CHECK(s.code() == absl::StatusCode::kInvalidArgument);
  CHECK(absl::StrContains(s.message(), "stream \"debug\""));
}

TEST_CASE(
    "jobs this site made go after the retention with their runs, attempts and output; a job "
    "under way or another site's stays",
    "[runbooks]") {
  TestDatabase db("rbprune");
  Prepare(db, 5, 0);
  const std::string old_done = AddJob(db, "old"), old_running = AddJob(db, "old"),
                    recent = AddJob(db, "new");
  Dispatch(db);
  v1::RunbookWorkResponse w1 = Work(db, kW1, 3);
  REQUIRE(w1.start_size() == 3);
  Work(db, kW1, 0,
       {Progress(old_done, 1, v1::RUNBOOK_JOB_STATE_COMPLETED, "done\n"),
        Progress(old_running, 1, v1::RUNBOOK_JOB_STATE_RUNNING),
        Progress(recent, 1, v1::RUNBOOK_JOB_STATE_COMPLETED)});
  db.Exec("UPDATE runbook_jobs SET created_at = now() - interval '31 days' WHERE runbook = 'old'");
  auto prune = [&] {
    auto conn = db.Connect();
    int64_t n = -1;
    REQUIRE(conn->Transact([&](strata::store::Transaction& tx) -> absl::Status {
                  auto r = strata::site::PruneRunbookJobs(tx);
                  if (r.ok()) n = *r;
                  return r.status();
                })
                .ok());
    return n;
  };
  CHECK(prune() == 4);  // the job, its run, its attempt, its output
  for (const char* table : {"runbook_job_runs", "runbook_job_attempts", "runbook_job_output"})
    CHECK(db.ScalarInt(absl::StrCat("SELECT count(*) FROM ", table, " WHERE job_id = $1::uuid"),
                       {old_done}) == 0);
  CHECK(db.ScalarInt("SELECT count(*) FROM runbook_jobs") == 2);
  // A shorter retention, set for the hierarchy: the recent one goes too once old enough.
  db.Exec(
      "INSERT INTO global_settings (name, value) VALUES ('runbook.job_retention_seconds', "
      "'86400')");
  db.Exec("UPDATE runbook_jobs SET created_at = now() - interval '2 days' WHERE runbook = 'new'");
  CHECK(prune() == 3);
  CHECK(db.ScalarInt("SELECT count(*) FROM runbook_jobs") == 1);  // still running
}

TEST_CASE(
    "suspend and resume: a queued job waits where it is, a running one is stopped by its "
    "worker and kept with its last checkpoint, which the resumed attempt receives; a lapsed "
    "lease while suspending suspends; max_attempts counts from the resume; a suspended job "
    "can be stopped; a checkpoint is taken only from the holder and within 64 KiB",
    "[runbooks]") {
  TestDatabase db("rbsuspend");
  Prepare(db, 5, 0);
  auto checkpointed = [](v1::RunbookJobProgress p, const std::string& data) {
    p.set_checkpoint(data);
    return p;
  };
  const std::string running = AddJob(db, "R");
  db.Exec("UPDATE runbook_jobs SET resumable = true");
  Dispatch(db);
  REQUIRE(Work(db, kW1, 1).start_size() == 1);
  const std::string queued = AddJob(db, "Q");
  db.Exec("UPDATE runbook_jobs SET resumable = true");
  Dispatch(db);
  Work(db, kW1, 0,
       {checkpointed(Progress(running, 1, v1::RUNBOOK_JOB_STATE_RUNNING),
                     std::string("s=1\0x", 5))});
  CHECK(db.ScalarInt("SELECT checkpoint_bytes FROM runbook_job_runs WHERE job_id = $1::uuid",
                     {running}) == 5);

  db.Exec(
      "UPDATE runbook_jobs SET suspend_requested = true, suspend_changed_by = 'alice', "
      "suspend_changed_at = now()");
  auto stats = Dispatch(db);
  CHECK(stats.suspended == 1);  // the queued one, where it waits
  CHECK(State(db, queued) == "suspended 0 ");
  CHECK(State(db, running) == "running 1 w1");  // until its worker killed it
  // w2 (not its holder) cannot change its checkpoint.
  Work(db, kW2, 0, {checkpointed(Progress(running, 1, v1::RUNBOOK_JOB_STATE_RUNNING), "forged")});
  CHECK(db.Scalar("SELECT encode(data, 'hex') FROM runbook_job_checkpoints WHERE job_id = "
                  "$1::uuid",
                  {running}) == "733d310078");
  // Its worker is told to stop it, sends its last checkpoint, and reports it stopped.
  v1::RunbookWorkResponse told =
      Work(db, kW1, 0, {checkpointed(Progress(running, 1, v1::RUNBOOK_JOB_STATE_RUNNING), "s=2")});
  CHECK(std::vector<std::string>(told.stop().begin(), told.stop().end()) ==
        std::vector<std::string>{running});
  Work(db, kW1, 0, {Progress(running, 1, v1::RUNBOOK_JOB_STATE_STOPPED)});
  CHECK(State(db, running) == "suspended 1 w1");
  CHECK(db.Scalar("SELECT outcome || ' ' || detail FROM runbook_job_attempts WHERE job_id = "
                  "$1::uuid",
                  {running}) == "suspended suspended by alice");
  CHECK(db.Scalar("SELECT encode(data, 'escape') FROM runbook_job_checkpoints WHERE job_id = "
                  "$1::uuid",
                  {running}) == "s=2");
  // Nothing is handed out while suspended.
  CHECK(Work(db, kW2, 5).start_size() == 0);

  db.Exec(
      "UPDATE runbook_jobs SET suspend_requested = false, suspend_changed_by = 'bob', "
      "suspend_changed_at = now()");
  stats = Dispatch(db);
  CHECK(stats.resumed == 2);
  CHECK(db.Scalar("SELECT state || ' ' || detail FROM runbook_job_runs WHERE job_id = $1::uuid",
                  {running}) == "queued resumed by bob from its checkpoint (3 bytes)");
  v1::RunbookWorkResponse w2 = Work(db, kW2, 5);
  REQUIRE(w2.start_size() == 2);
  std::map<std::string, v1::RunbookJobOrder> orders;
  for (const auto& o : w2.start()) orders[o.job()] = o;
  CHECK(orders[running].attempt() == 2);
  CHECK(orders[running].resumable());
  CHECK(orders[running].has_checkpoint());
  CHECK(orders[running].checkpoint() == "s=2");
  CHECK(orders[queued].attempt() == 1);
  CHECK_FALSE(orders[queued].has_checkpoint());  // it never wrote one: it starts afresh

  // Suspended, then resumed before its worker killed it: the kill ends the
  // attempt as suspended and the job is queued again at once.
  Work(db, kW2, 0, {Progress(queued, 1, v1::RUNBOOK_JOB_STATE_RUNNING)});
  db.Exec("UPDATE runbook_jobs SET suspend_requested = true WHERE id = $1::uuid", {queued});
  Dispatch(db);
  told = Work(db, kW2, 0, {Progress(queued, 1, v1::RUNBOOK_JOB_STATE_RUNNING)});
  CHECK(std::vector<std::string>(told.stop().begin(), told.stop().end()) ==
        std::vector<std::string>{queued});
  db.Exec(
      "UPDATE runbook_jobs SET suspend_requested = false, suspend_changed_by = 'bob' WHERE id = "
      "$1::uuid",
      {queued});
  Dispatch(db);  // still running: nothing to resume yet
  CHECK(State(db, queued) == "running 1 w2");
  Work(db, kW2, 0, {Progress(queued, 1, v1::RUNBOOK_JOB_STATE_STOPPED)});
  CHECK(db.Scalar("SELECT outcome || ' ' || detail FROM runbook_job_attempts WHERE job_id = "
                  "$1::uuid",
                  {queued}) == "suspended suspended, then resumed by bob");
  CHECK(Dispatch(db).resumed == 1);
  CHECK(State(db, queued) == "queued 1 ");
  db.Exec(
      "UPDATE runbook_jobs SET stop_requested_by = 'dave', stop_requested_at = now() WHERE "
      "id = $1::uuid",
      {queued});
  CHECK(Dispatch(db).stopped == 1);  // (out of the way of what follows)

  // Its new worker is lost while it is being suspended: suspended, not failed over.
  db.Exec(
      "UPDATE runbook_jobs SET suspend_requested = true, suspend_changed_by = 'alice' WHERE "
      "id = $1::uuid",
      {running});
  db.Exec(
      "UPDATE runbook_job_runs SET lease_expires_at = now() - interval '11 seconds' WHERE "
      "job_id = $1::uuid",
      {running});
  stats = Dispatch(db);
  CHECK(stats.suspended == 1);
  CHECK(State(db, running) == "suspended 2 w2");
  CHECK(db.Scalar("SELECT outcome FROM runbook_job_attempts WHERE job_id = $1::uuid AND attempt "
                  "= 2",
                  {running}) == "lost");
  // Resumed again, then lost again: max_attempts (3) counts the attempts since the resume (1),
  // not the job's three, so it fails over.
  db.Exec("UPDATE runbook_jobs SET suspend_requested = false WHERE id = $1::uuid", {running});
  Dispatch(db);
  REQUIRE(Work(db, kW1, 1).start_size() == 1);
  db.Exec(
      "UPDATE runbook_job_runs SET lease_expires_at = now() - interval '11 seconds' WHERE "
      "job_id = $1::uuid",
      {running});
  CHECK(Dispatch(db).failed_over == 1);
  CHECK(State(db, running) == "queued 3 ");

  // Suspended before it reached its site, then stopped while suspended.
  const std::string later = AddJob(db, "L");
  db.Exec(
      "UPDATE runbook_jobs SET resumable = true, suspend_requested = true, suspend_changed_by = "
      "'carol' WHERE id = $1::uuid",
      {later});
  Dispatch(db);
  CHECK(db.Scalar("SELECT state || ' ' || detail FROM runbook_job_runs WHERE job_id = $1::uuid",
                  {later}) == "suspended suspended by carol before it started");
  db.Exec(
      "UPDATE runbook_jobs SET stop_requested_by = 'dave', stop_requested_at = now() WHERE id = "
      "$1::uuid",
      {later});
  CHECK(Dispatch(db).stopped == 1);
  CHECK(db.Scalar("SELECT state || ' ' || detail FROM runbook_job_runs WHERE job_id = $1::uuid",
                  {later}) == "stopped stopped by dave while suspended");

  // A checkpoint over 64 KiB: the request is refused whole.
  v1::RunbookWorkRequest bad;
  *bad.add_jobs() = checkpointed(Progress(queued, 1, v1::RUNBOOK_JOB_STATE_RUNNING),
                                 std::string(64 * 1024 + 1, 'c'));
  v1::RunbookWorkResponse resp;
  auto conn = db.Connect();
  absl::Status s = RunbookWork(*conn, "P01", kW2, bad, &resp);
  CHECK(s.code() == absl::StatusCode::kInvalidArgument);
  CHECK(absl::StrContains(s.message(), "checkpoint of 65537 bytes"));
}
