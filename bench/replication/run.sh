#!/usr/bin/env bash
# Replication benchmark (issue 2): CAS -> P01 -> S01 on a throwaway
# PostgreSQL with durable commits (fsync, synchronous_commit on).
#  1. Latency: global changes written at the CAS at a steady rate (pgbench,
#     one change per transaction) for DURATION seconds; each change's arrival
#     at the secondary (two hops) is recorded there by a trigger.
#  2. Catch-up: the secondary is stopped, CATCHUP changes are written at the
#     CAS and reach P01, the secondary restarts; time from its link to P01
#     coming up to the last change applied (catchup_changes_per_s), and from
#     the process start (catchup_with_restart_per_s, also printed).
#  3. Baseline: PostgreSQL's own COPY of the same rows into a plain table of
#     the same shape on the same server.
# Last line: bench replication: p50_ms=… p99_ms=… catchup_changes_per_s=…
#            copy_rows_per_s=… catchup_vs_copy=… catchup_with_restart_per_s=…
# (catchup_vs_copy = catchup_changes_per_s / copy_rows_per_s)
# Env: RATE (1000), DURATION (30), CATCHUP (100000).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
RATE=${RATE:-1000}
DURATION=${DURATION:-30}
CATCHUP=${CATCHUP:-100000}

deploy/build.sh build
source deploy/pg.sh
source deploy/hierarchy.sh
work=$(mktemp -d /tmp/stb-XXXXXX)
chmod 755 "$work"
export STRATA_BUILD=$root/build STRATA_RUN=$work/run STRATA_PKI=$work/pki
mkdir -p "$STRATA_RUN"
cleanup() {
  for s in S01 P01 CAS; do site_stop $s; done
  pg_stop "$work/pg"
  [ -n "${KEEP_LOGS:-}" ] && cp "$STRATA_RUN"/*.log "$KEEP_LOGS"/ 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
pg_start "$work/pg" durable
echo "postgres: fsync=$(psql -X -d postgres -tAc 'SHOW fsync') synchronous_commit=$(psql -X -d postgres -tAc 'SHOW synchronous_commit')"
deploy/pki.sh "$STRATA_PKI" site/CAS site/P01 site/S01 >/dev/null

site_start CAS cas
site_start P01 primary CAS
site_start S01 secondary P01
linked() { site_status S01 secondary | grep -Eq '^P01 +parent +active +yes'; }
wait_until 60 linked || { echo "S01 never linked" >&2; exit 1; }

# Arrival times at the secondary, recorded in the applying transaction.
site_sql S01 "CREATE TABLE bench_arrival (name text PRIMARY KEY, written_at timestamptz, arrived_at timestamptz);
CREATE FUNCTION bench_record() RETURNS trigger LANGUAGE plpgsql AS \$\$ BEGIN
  IF NEW.name LIKE 'lat-%' THEN INSERT INTO bench_arrival VALUES (NEW.name, NEW.value::timestamptz, clock_timestamp()); END IF;
  RETURN NULL; END \$\$;
CREATE TRIGGER bench_record AFTER INSERT ON global_settings FOR EACH ROW EXECUTE FUNCTION bench_record();" >/dev/null
site_sql CAS "CREATE SEQUENCE bench_seq" >/dev/null
cat > "$work/write.sql" <<'SQL'
INSERT INTO global_settings (name, value) VALUES ('lat-' || nextval('bench_seq'), clock_timestamp()::text);
SQL
echo "phase 1: $RATE changes/s for ${DURATION}s at the CAS"
pgbench -n -d strata_cas -f "$work/write.sql" -R "$RATE" -T "$DURATION" -c 4 -j 2 > "$work/pgbench.log" 2>&1 ||
  { cat "$work/pgbench.log" >&2; exit 1; }
grep -E "^(tps|number of transactions actually processed|rate limit schedule lag)" "$work/pgbench.log" || true
written=$(site_sql CAS "SELECT count(*) FROM global_settings WHERE name LIKE 'lat-%'")
all_arrived() { [ "$(site_sql S01 "SELECT count(*) FROM bench_arrival")" = "$written" ]; }
wait_until 120 all_arrived || { echo "only $(site_sql S01 'SELECT count(*) FROM bench_arrival') of $written arrived" >&2; exit 1; }
read -r p50 p99 pmax <<<"$(site_sql S01 "SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1),
  round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 1), round(max(ms)::numeric, 1)
  FROM (SELECT extract(epoch FROM arrived_at - written_at) * 1000 AS ms FROM bench_arrival) x" | tr '|' ' ')"
echo "latency over two hops: changes=$written p50_ms=$p50 p99_ms=$p99 max_ms=$pmax"

echo "phase 2: catch-up of $CATCHUP changes"
site_stop S01
site_sql S01 "DROP TRIGGER bench_record ON global_settings" >/dev/null  # phase 1's probe only
batch=10000
for (( start = 1; start <= CATCHUP; start += batch )); do
  end=$(( start + batch - 1 )); (( end > CATCHUP )) && end=$CATCHUP
  site_sql CAS "INSERT INTO global_settings (name, value) SELECT 'catch-' || g, md5(g::text) FROM generate_series($start, $end) g" >/dev/null
done
at_p01() { [ "$(site_sql P01 "SELECT count(*) FROM global_settings WHERE name LIKE 'catch-%'")" = "$CATCHUP" ]; }
wait_until 300 at_p01 || { echo "P01 did not receive the changes" >&2; exit 1; }
t0=$(date +%s.%N)
site_start S01 secondary P01
# Changes arrive in log order, so the last one written arriving means the
# catch-up is done (an index lookup: the poll must not steal the CPU it
# measures). The full count is checked right after, outside the timing.
last_arrived() { [ "$(site_sql S01 "SELECT count(*) FROM global_settings WHERE name = 'catch-$CATCHUP'")" = "1" ]; }
POLL_S=0.01 wait_until 600 last_arrived || { echo "S01 did not catch up" >&2; exit 1; }
t1=$(date +%s.%N)
arrived=$(site_sql S01 "SELECT count(*) FROM global_settings WHERE name LIKE 'catch-%'")
[ "$arrived" = "$CATCHUP" ] || { echo "S01 has $arrived of $CATCHUP changes after the last arrived" >&2; exit 1; }
# The drain starts when the link to P01 is up again (S01's log, same clock).
link_up=$(grep 'link.up peer=P01' "$STRATA_RUN/s01.log" | tail -1 | cut -d' ' -f1)
t_link=$(date -d "$link_up" +%s.%N)
restart_s=$(echo "$t1 - $t0" | bc -l)
drain_s=$(echo "$t1 - $t_link" | bc -l)
catchup_rate=$(echo "$CATCHUP / $drain_s" | bc -l)
with_restart_rate=$(echo "$CATCHUP / $restart_s" | bc -l)
printf 'catch-up: changes=%d drain_s=%.3f (link up to last change) with_restart_s=%.3f (process start to last change, %.0f changes/s)\n' \
  "$CATCHUP" "$drain_s" "$restart_s" "$with_restart_rate"

echo "phase 3: COPY baseline of the same rows"
site_sql S01 "COPY (SELECT name, value, updated_at, _hlc, _origin FROM global_settings WHERE name LIKE 'catch-%') TO STDOUT" > "$work/rows.tsv"
site_sql S01 "CREATE TABLE bench_copy (LIKE global_settings INCLUDING ALL)" >/dev/null
# Median of three runs, into an emptied table each time: the baseline is noisy.
copy_runs=()
for _ in 1 2 3; do
  site_sql S01 "TRUNCATE bench_copy" >/dev/null
  copy_runs+=("$(psql -X -q -d strata_s01 -c '\timing on' -c "\\copy bench_copy (name, value, updated_at, _hlc, _origin) FROM '$work/rows.tsv'" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -1)")
done
copy_ms=$(printf '%s\n' "${copy_runs[@]}" | sort -n | sed -n 2p)
echo "copy runs (ms): ${copy_runs[*]}"
copy_rate=$(echo "$CATCHUP / ($copy_ms / 1000)" | bc -l)
ratio=$(echo "$catchup_rate / $copy_rate" | bc -l)
echo "copy: rows=$CATCHUP median_ms=$copy_ms"
printf 'bench replication: p50_ms=%s p99_ms=%s catchup_changes_per_s=%.0f copy_rows_per_s=%.0f catchup_vs_copy=%.3f catchup_with_restart_per_s=%.0f\n' \
  "$p50" "$p99" "$catchup_rate" "$copy_rate" "$ratio" "$with_restart_rate"
