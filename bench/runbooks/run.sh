#!/usr/bin/env bash
# Runbook job benchmark (issue 17): CAS <- P01, each site on a throwaway
# PostgreSQL server of its own with durable commits, an MP at P01, the
# provider at the CAS. WORKERS (50) simulated agents (bench/clientsim: the
# real protocol over mutual TLS, each holding its nudge channel) in two
# worker groups at P01; JOBS (10,000) short jobs (each prints a line and
# exits: the simulated worker reports it completed with its line on its
# next exchange) started through the provider as fast as it takes them
# (bench/runbooks/runbook_submit, CONCURRENCY calls at once, round-robin
# over the groups). Each job: created at the CAS, replicated to P01, taken
# in by its dispatcher, the workers nudged, claimed, reported completed
# with its output.
# Measured at P01 (the dispatching site): jobs dispatched and completed per
# second, from the first job's creation to the last one's dispatch / end;
# queue-to-start (created at the CAS to started on its worker) p50 and p99;
# jobs lost (not completed) and run twice (more than one attempt).
# Targets (issue 17): >= 200 jobs/s completed, p99 queue-to-start < 1 s.
# Baselines it names: Azure Automation admits 100 new jobs per 30 s per
# account (3.3/s), StackStorm's scale test completed ~13/s.
# Last line: bench runbooks: jobs=… completed=… jobs_per_s=… start_p50_ms=…
#   start_p99_ms=… lost=0 duplicated=0 …
# Env: WORKERS (50), JOBS (10000), SLOTS (30 per worker), CONCURRENCY (16),
#      KEEP_LOGS (a directory).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
WORKERS=${WORKERS:-50}
JOBS=${JOBS:-10000}
SLOTS=${SLOTS:-30}
CONCURRENCY=${CONCURRENCY:-16}

deploy/build.sh build
source deploy/pg.sh
source deploy/hierarchy.sh
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p"; }
calc() { awk "BEGIN { printf \"%.2f\", $1 }"; }

ulimit -n "$(ulimit -Hn)"
work=$(mktemp -d /tmp/strb-XXXXXX)
chmod 755 "$work"
export STRATA_BUILD=$root/build STRATA_RUN=$work/run STRATA_PKI=$work/pki
mkdir -p "$STRATA_RUN"
sim_pid= sim_fd=
cleanup() {
  set +e
  [ -n "$sim_fd" ] && eval "exec $sim_fd>&-"
  [ -n "$sim_pid" ] && { kill "$sim_pid" 2>/dev/null; wait "$sim_pid" 2>/dev/null; }
  mp_stop P01.mp1
  provider_stop CAS
  for s in P01 CAS; do site_stop $s; done
  for s in p01 cas; do pg_stop "$work/pg-$s"; done
  [ -n "${KEEP_LOGS:-}" ] && mkdir -p "$KEEP_LOGS" && cp "$STRATA_RUN"/*.log "$work"/sim.* "$KEEP_LOGS"/ 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

printf 'register_per_source_per_minute: -1\nregister_per_minute: -1\n' > "$work/mp.conf"
export STRATA_MP_FLAGS="--config $work/mp.conf"
deploy/pki.sh "$STRATA_PKI" site/CAS site/P01 issuing/P01 mp/P01.mp1 provider/CAS admin/bench >/dev/null
pg_start "$work/pg-cas" durable
site_start CAS cas
pg_start "$work/pg-p01" durable
site_start P01 primary CAS
mp_start P01.mp1
provider_start CAS bench
add_enrollment_token CAS bench-token
sql_is() { [ "$(site_sql "$1" "$2")" = "$3" ]; }
wait_until 120 sql_is P01 "SELECT count(*) FROM enrollment_tokens" 1
ctl() {
  "$STRATA_BUILD/provider/stratactl" --server "$(provider_address CAS)" --ca "$STRATA_PKI/ca.pem" \
    --cert "$STRATA_PKI/admin-bench.pem" --key "$STRATA_PKI/admin-bench.key" --timeout 120 "$@"
}
echo "postgres (one server per site): fsync=$(psql -X -d postgres -tAc 'SHOW fsync') synchronous_commit=$(psql -X -d postgres -tAc 'SHOW synchronous_commit')"

echo "phase 1: $WORKERS simulated agents register and hold their nudge channels"
mkfifo "$work/sim.in"
"$STRATA_BUILD/bench/clientsim/strata-clientsim" --mp "$(mp_address P01.mp1)" \
  --ca "$STRATA_PKI/ca.pem" --token bench-token --clients "$WORKERS" --concurrency 16 \
  < "$work/sim.in" > "$work/sim.out" 2> "$work/sim.log" &
sim_pid=$!
exec {sim_fd}>"$work/sim.in"
sim() {  # CMD... -> its result line
  local n
  n=$(grep -c "^$1 " "$work/sim.out" || true)
  echo "$*" >&"$sim_fd"
  until [ "$(grep -c "^$1 " "$work/sim.out" || true)" -gt "$n" ]; do
    kill -0 "$sim_pid" 2>/dev/null || { echo "the simulator died:" >&2; tail -5 "$work/sim.log" >&2; exit 1; }
    grep -q "^error $1" "$work/sim.out" && { grep "^error $1" "$work/sim.out" >&2; exit 1; }
    sleep 0.1
  done
  grep "^$1 " "$work/sim.out" | tail -n 1
}
sim register
sim channels 120

echo "phase 2: two worker groups at P01, $(( WORKERS / 2 )) and $(( WORKERS - WORKERS / 2 )) workers"
names() {  # FIRST COUNT -> "sim-000000", ... as a query list
  local i out=""
  for i in $(seq "$1" $(( $1 + $2 - 1 ))); do out+="${out:+, }\"$(printf 'sim-%06d' "$i")\""; done
  echo "$out"
}
half=$(( WORKERS / 2 ))
ctl create collection "Runbook workers A" --query "device.name in ($(names 0 "$half"))" >/dev/null
ctl create collection "Runbook workers B" --query "device.name in ($(names "$half" $(( WORKERS - half ))))" >/dev/null
wait_until 120 sql_is CAS "SELECT count(*) FROM collection_members WHERE collection LIKE 'Runbook workers %'" "$WORKERS"
ctl create worker-group A --site P01 --collection "Runbook workers A" --max-jobs-per-worker "$SLOTS" >/dev/null
ctl create worker-group B --site P01 --collection "Runbook workers B" --max-jobs-per-worker "$SLOTS" >/dev/null
wait_until 120 sql_is P01 "SELECT count(*) FROM runbook_worker_assignments" "$WORKERS"
printf 'echo "hello from a runbook"\n' > "$work/hello.sh"
ctl create runbook bench-hello --body "$work/hello.sh" --interpreter sh >/dev/null
ctl publish runbook bench-hello >/dev/null
wait_until 60 sql_is P01 "SELECT count(*) FROM runbook_worker_groups" 2

echo "phase 3: $JOBS jobs through the provider ($CONCURRENCY calls at once), $WORKERS workers with $SLOTS slots each"
echo "runbooks 10 $SLOTS" >&"$sim_fd"
submit=$("$STRATA_BUILD/bench/runbooks/runbook_submit" --server "$(provider_address CAS)" \
  --ca "$STRATA_PKI/ca.pem" --cert "$STRATA_PKI/admin-bench.pem" --key "$STRATA_PKI/admin-bench.key" \
  --runbook bench-hello --groups A,B --jobs "$JOBS" --concurrency "$CONCURRENCY")
echo "$submit"
end=$(( $(date +%s) + 600 ))
until [ "$(site_sql P01 "SELECT count(*) FROM runbook_job_runs WHERE state IN ('completed', 'failed', 'stopped')")" -ge "$JOBS" ]; do
  [ "$(date +%s)" -ge "$end" ] && { echo "not every job ended in 600 s" >&2; break; }
  sleep 0.5
done
until grep -q "^runbooks " "$work/sim.out"; do
  kill -0 "$sim_pid" 2>/dev/null || break
  sleep 0.2
done
workers=$(grep "^runbooks " "$work/sim.out" | tail -n 1)
echo "$workers"

# Figures at P01 (the jobs' created_at is the CAS's: one machine, one clock).
read -r completed dispatch_s total_s p50 p99 lost duplicated <<<"$(site_sql P01 "
  WITH j AS (SELECT r.state, r.dispatched_at, r.started_at, r.ended_at, r.attempt, x.created_at
               FROM runbook_job_runs r JOIN runbook_jobs x ON x.id = r.job_id),
       s AS (SELECT extract(epoch FROM started_at - created_at) * 1000 AS ms FROM j
               WHERE started_at IS NOT NULL)
  SELECT (SELECT count(*) FROM j WHERE state = 'completed'),
         (SELECT round(extract(epoch FROM max(dispatched_at) - min(created_at))::numeric, 3) FROM j),
         (SELECT round(extract(epoch FROM max(ended_at) - min(created_at))::numeric, 3) FROM j),
         (SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1) FROM s),
         (SELECT round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 1) FROM s),
         $JOBS - (SELECT count(*) FROM j WHERE state = 'completed'),
         (SELECT count(*) FROM j WHERE attempt > 1)" | tr '|' ' ')"
jobs_per_s=$(calc "$completed / $total_s")
dispatched_per_s=$(calc "$JOBS / $dispatch_s")
outputs=$(site_sql P01 "SELECT count(*) FROM runbook_job_output WHERE text = 'hello from a runbook' || chr(10)")
submit_rps=$(echo "$submit" | field rps)
echo "provider: $(echo "$submit" | field seconds) s to take $JOBS jobs ($submit_rps/s); every job's output at P01: $outputs of $JOBS"
echo "queue to start (created at the CAS to started on its worker): p50 $p50 ms, p99 $p99 ms; where it went (p50 / p99 ms):"
site_sql P01 "
  WITH j AS (SELECT extract(epoch FROM r.queued_at - x.created_at) * 1000 AS arrived,
                    extract(epoch FROM r.dispatched_at - r.queued_at) * 1000 AS waited,
                    extract(epoch FROM r.started_at - r.dispatched_at) * 1000 AS delivered
               FROM runbook_job_runs r JOIN runbook_jobs x ON x.id = r.job_id WHERE r.attempt = 1)
  SELECT '  created at the CAS -> taken in at P01 ' || round(percentile_cont(0.5) WITHIN GROUP (ORDER BY arrived)::numeric, 1)
      || ' / ' || round(percentile_cont(0.99) WITHIN GROUP (ORDER BY arrived)::numeric, 1)
      || '; -> dispatched to a worker ' || round(percentile_cont(0.5) WITHIN GROUP (ORDER BY waited)::numeric, 1)
      || ' / ' || round(percentile_cont(0.99) WITHIN GROUP (ORDER BY waited)::numeric, 1)
      || '; -> started on it ' || round(percentile_cont(0.5) WITHIN GROUP (ORDER BY delivered)::numeric, 1)
      || ' / ' || round(percentile_cont(0.99) WITHIN GROUP (ORDER BY delivered)::numeric, 1) FROM j"
echo "targets: >= 200 jobs/s completed (ratio $(calc "$jobs_per_s / 200")), p99 queue-to-start < 1 s (ratio $(calc "$p99 / 1000"))"
echo "baselines the issue names: Azure Automation admits 3.3 new jobs/s per account (x$(calc "$jobs_per_s / 3.33")), StackStorm's scale test completed ~13/s (x$(calc "$jobs_per_s / 13"))"
echo "bench runbooks: jobs=$JOBS completed=$completed jobs_per_s=$jobs_per_s dispatched_per_s=$dispatched_per_s start_p50_ms=$p50 start_p99_ms=$p99 lost=$lost duplicated=$duplicated workers=$WORKERS slots=$SLOTS submit_rps=$submit_rps outputs=$outputs vs_target_jobs_200=$(calc "$jobs_per_s / 200") vs_target_start_p99_1s=$(calc "$p99 / 1000") vs_stackstorm_13=$(calc "$jobs_per_s / 13")"
