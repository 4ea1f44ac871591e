// Runbook schedules fired by the site that made them, against a real
// database: on time, once per occurrence, missed runs run once or skipped,
// a change recomputed, another site's schedule left alone.

#include "common/site/runbook_schedules.h"

#include <catch2/catch.hpp>

#include "absl/strings/str_cat.h"
#include "tests/fixture/testing.h"

using strata::site::FireSchedules;
using strata::testing::PrepareSiteDatabase;
using strata::testing::TestDatabase;

namespace {

absl::Time T0() { return absl::FromUnixSeconds(1800000000); }  // 2027-01-15T08:00:00Z

int Fire(const TestDatabase& db, absl::Time now) {
  auto conn = db.Connect();
  auto n = FireSchedules(*conn, "P01", now);
  INFO(n.status().ToString());
  REQUIRE(n.ok());
  return *n;
}

std::string Rule(const std::string& missed) {
  return absl::StrCat(
      R"({"kind":"interval","start":"2027-01-15T08:00:00Z","intervalSeconds":"60",)",
      R"("timeZone":"UTC","missed":")", missed, R"("})");
}

}  // namespace

TEST_CASE(
    "a schedule fires once per occurrence at its site, a missed run runs once or is skipped, a "
    "change starts over from now, and another site's schedule is left alone",
    "[runbooks]") {
  TestDatabase db("rbsched");
  PrepareSiteDatabase(db, "P01");
  db.Exec("INSERT INTO runbooks (name, published_version, latest_version) VALUES ('r', 1, 1)");
  db.Exec(
      "INSERT INTO runbook_versions (runbook, version, interpreter, body, sha256, parameters, "
      "timeout_seconds, on_worker_lost, max_attempts, author) VALUES ('r', 1, 'sh', 'echo $who', "
      "'x', '{\"parameters\":[{\"name\":\"who\",\"type\":\"string\",\"required\":true}]}', 60, "
      "'retry', 3, 'a')");
  db.Exec(
      "INSERT INTO runbook_worker_groups (name, site_code, collection, max_jobs_per_worker, "
      "max_jobs, lease_seconds, created_by) VALUES ('g', 'S01', 'All Systems', 30, 0, 60, "
      "'a')");
  db.Exec(
      "INSERT INTO runbook_schedules (name, runbook, worker_group, rule, parameters, "
      "created_by) VALUES ('every-minute', 'r', 'g', $1, "
      "'{\"arguments\":[{\"name\":\"who\",\"value\":\"cron\"}]}', 'alice')",
      {Rule("run_once")});
  // Another site's (replicated in): never fired here.
  {
    auto conn = db.Connect();
    REQUIRE(conn->Exec("SELECT set_config('strata.applying', 'on', false)").ok());
    REQUIRE(conn->Exec("INSERT INTO runbook_schedules (name, runbook, worker_group, rule, "
                       "created_by, _hlc, _origin) VALUES ('theirs', 'r', 'g', $1, 'bob', 1, "
                       "'P02')",
                       {Rule("run_once")})
                .ok());
  }
  auto jobs = [&] {
    return db.ScalarInt("SELECT count(*) FROM runbook_jobs WHERE schedule = 'every-minute'");
  };

  CHECK(Fire(db, T0() - absl::Seconds(10)) == 0);  // first look: its next run is computed
  CHECK(Fire(db, T0() - absl::Seconds(1)) == 0);
  CHECK(Fire(db, T0() + absl::Seconds(1)) == 1);
  CHECK(Fire(db, T0() + absl::Seconds(2)) == 0);  // once per occurrence
  CHECK(jobs() == 1);
  // The job: the published version, the schedule's parameters, the group's site, audited.
  CHECK(db.Scalar("SELECT site_code || ' ' || version || ' ' || (arguments LIKE '%cron%') FROM "
                  "runbook_jobs WHERE schedule = 'every-minute'") == "S01 1 true");
  CHECK(db.ScalarInt("SELECT count(*) FROM audit_log WHERE admin = 'alice' AND action = 'start' "
                     "AND strpos(summary, 'by schedule \"every-minute\"') > 0") == 1);
  CHECK(Fire(db, T0() + absl::Seconds(61)) == 1);
  // Down for five minutes: the missed runs run once, then every minute again.
  CHECK(Fire(db, T0() + absl::Seconds(420)) == 1);
  CHECK(jobs() == 3);
  CHECK(db.Scalar("SELECT next_run_at = to_timestamp(1800000480) FROM runbook_schedule_runs "
                  "WHERE name = 'every-minute'") == "t");
  // Changed to skip missed runs: its next run is computed again, from now.
  db.Exec(
      "UPDATE runbook_schedules SET rule = $1, updated_at = now() + interval '1 second' WHERE "
      "name = 'every-minute'",
      {Rule("skip")});
  CHECK(Fire(db, T0() + absl::Seconds(421)) == 0);
  CHECK(Fire(db, T0() + absl::Seconds(1000)) == 0);  // 540 s late: skipped
  CHECK(jobs() == 3);
  CHECK(db.ScalarInt("SELECT count(*) FROM runbook_schedule_runs WHERE name = 'every-minute' AND "
                     "strpos(last_error, 'missed') > 0") == 1);
  CHECK(Fire(db, T0() + absl::Seconds(1021)) == 1);  // on time again
  CHECK(db.ScalarInt("SELECT count(*) FROM runbook_jobs WHERE schedule = 'theirs'") == 0);
  // Unpublished: the run is recorded as failed, nothing started.
  db.Exec("UPDATE runbooks SET published_version = 0");
  CHECK(Fire(db, T0() + absl::Seconds(1081)) == 0);
  CHECK(db.ScalarInt("SELECT count(*) FROM runbook_schedule_runs WHERE name = 'every-minute' AND "
                     "strpos(last_error, 'no published version') > 0") == 1);
}
