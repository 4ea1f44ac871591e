#!/usr/bin/env bash
# Management point benchmark (issue 3): CAS <- P01 <- one MP, on a throwaway
# PostgreSQL with durable commits (fsync, synchronous_commit on), and CLIENTS
# simulated agents (bench/clientsim, real protocol over mutual TLS), each
# holding its notification stream for the whole run.
#  1. register    every client gets its certificate from P01's issuing CA
#  2. streams     every client opens its Notify stream (held to the end)
#  3. full        one full inventory per client (150-450 packages each);
#                 inventory_rows_per_s = rows in P01's tables / time from the
#                 first report sent to the last device's inventory applied
#  4. COPY        baseline: PostgreSQL's own COPY of the same rows into plain
#                 tables of the same shape (same keys, no capture) on the same
#                 server; ingest_vs_copy = inventory_rows_per_s / copy_rows_per_s
#  5. policy      not-modified policy checks for POLICY_S seconds (policy_rps)
#  6. delta       one delta (4 packages) per client; report_rps = full and
#                 delta reports acknowledged (spooled, fsync'ed) per second
#                 over phases 3 and 6; cas_visible_*: from the
#                 client sending it to its arrival at the CAS (a trigger there)
#  7. fan-out     a client setting changed at P01; notify_fanout_ms = from the
#                 commit to the last of the held streams told POLICY_CHANGED
# rss_mb is the MP's peak resident set (VmHWM) over the whole run.
# Last line: bench mp: clients=… streams_held=… rss_mb=… policy_rps=… report_rps=…
#   inventory_rows_per_s=… copy_rows_per_s=… ingest_vs_copy=… notify_fanout_ms=…
#   cas_visible_p99_ms=… cas_log_per_inventory_change=… (rows the CAS writes to its own
#   change log per inventory change P01 captured, during phases 3-6)
# Env: CLIENTS (25000), POLICY_S (20), CONCURRENCY (128 per simulator),
#      KEEP_LOGS (a directory to copy the logs to).
# The MP needs one file descriptor per client, and headroom for connections
# in flight: if this machine's hard limit (ulimit -Hn) is below twice
# CLIENTS, the run says so and uses as many clients as fit.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
CLIENTS=${CLIENTS:-25000}
POLICY_S=${POLICY_S:-20}
CONCURRENCY=${CONCURRENCY:-128}

deploy/build.sh build
source deploy/pg.sh
source deploy/hierarchy.sh

# File descriptors: the MP holds one per client connection, each simulator
# one per client it runs.
ulimit -n "$(ulimit -Hn)"
fd_limit=$(ulimit -n)
clients=$CLIENTS
# Headroom: besides one file per held stream, a fleet (re)connecting holds
# handshakes in flight and connections its clients already gave up on. (At
# 3/4 of 20,000, 15,000 clients on two cores ran the MP out of files while
# they connected; its listener watch then stopped it, as designed.)
max_clients=$(( fd_limit / 2 ))
if (( clients > max_clients )); then
  clients=$max_clients
  echo "NOTE: open files are limited to $fd_limit per process here (ulimit -Hn; raising it needs"
  echo "      CAP_SYS_RESOURCE). With headroom for connections in flight, one MP is run with"
  echo "      clients=$clients instead of $CLIENTS; rss_per_stream_kb shows what $CLIENTS would take."
fi
per_sim=$(( max_clients < 10000 ? max_clients : 10000 ))
sims=$(( (clients + per_sim - 1) / per_sim ))

work=$(mktemp -d /tmp/stm-XXXXXX)
chmod 755 "$work"
export STRATA_BUILD=$root/build STRATA_RUN=$work/run STRATA_PKI=$work/pki
mkdir -p "$STRATA_RUN"
sim_pids=()
cleanup() {
  set +e  # stop everything, whatever fails
  for fd in "${sim_fds[@]:-}"; do [ -n "$fd" ] && eval "exec $fd>&-"; done
  for pid in "${sim_pids[@]:-}"; do [ -n "$pid" ] && { kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; }; done
  mp_stop P01.mp1
  for s in P01 CAS; do site_stop $s; done
  pg_stop "$work/pg"
  [ -n "${KEEP_LOGS:-}" ] && mkdir -p "$KEEP_LOGS" && cp "$STRATA_RUN"/*.log "$work"/sim*.out "$KEEP_LOGS"/ 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
pg_start "$work/pg" durable
echo "postgres: fsync=$(psql -X -d postgres -tAc 'SHOW fsync') synchronous_commit=$(psql -X -d postgres -tAc 'SHOW synchronous_commit')"
deploy/pki.sh "$STRATA_PKI" site/CAS site/P01 issuing/P01 mp/P01.mp1 >/dev/null
site_start CAS cas
site_start P01 primary CAS
mp_start P01.mp1
mp_pid=$(cat "$STRATA_RUN/p01-mp1.pid")
add_enrollment_token P01 bench-token
now_ms() { date +%s%3N; }
# CPU seconds used so far by each part (for where the time goes).
cpu_s() { awk '{ printf "%.1f", ($14 + $15) / 100 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
cpu_report() {
  local pg=0 pid
  for pid in $(head -1 "$work/pg/data/postmaster.pid") $(pgrep -P "$(head -1 "$work/pg/data/postmaster.pid")"); do pg=$(awk -v a="$pg" -v b="$(cpu_s "$pid")" 'BEGIN { print a + b }'); done
  local sim=0
  for pid in "${sim_pids[@]}"; do sim=$(awk -v a="$sim" -v b="$(cpu_s "$pid")" 'BEGIN { print a + b }'); done
  echo "cpu_s: mp=$(cpu_s "$mp_pid") p01=$(cpu_s "$(cat "$STRATA_RUN/p01.pid")") cas=$(cpu_s "$(cat "$STRATA_RUN/cas.pid")") postgres=$pg simulators=$sim"
}
mp_kb() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$mp_pid/status"; }

# Arrival of each inventory at the CAS, recorded in the applying transaction.
site_sql CAS "CREATE TABLE bench_arrival (device_id uuid, inventory_seq bigint, arrived_ms bigint,
    PRIMARY KEY (device_id, inventory_seq));
  CREATE FUNCTION bench_record() RETURNS trigger LANGUAGE plpgsql AS \$\$ BEGIN
    INSERT INTO bench_arrival VALUES (NEW.id, NEW.inventory_seq,
      (extract(epoch FROM clock_timestamp()) * 1000)::bigint) ON CONFLICT DO NOTHING;
    RETURN NULL; END \$\$;
  CREATE TRIGGER bench_record AFTER INSERT OR UPDATE ON devices FOR EACH ROW
    WHEN (NEW.inventory_seq > 0) EXECUTE FUNCTION bench_record();" >/dev/null

# The simulators read commands from a FIFO each and write result lines to a
# file each; sim_all sends one command to all and waits for their results.
sim_fds=()
for (( k = 0; k < sims; k++ )); do
  n=$(( k == sims - 1 ? clients - k * per_sim : per_sim ))
  mkfifo "$work/sim$k.in"
  "$STRATA_BUILD/bench/clientsim/strata-clientsim" --mp "$(mp_address P01.mp1)" \
    --ca "$STRATA_PKI/ca.pem" --token bench-token --clients "$n" --first $(( k * per_sim )) \
    --concurrency "$CONCURRENCY" --deltas_out "$work/deltas$k.csv" \
    < "$work/sim$k.in" > "$work/sim$k.out" 2> "$work/sim$k.log" &
  sim_pids+=($!)
  exec {fd}>"$work/sim$k.in"
  sim_fds+=("$fd")
done
results() { grep -hv '^awaiting' "$work"/sim*.out | awk -v c="$1" '$1 == c' ; }
sim_send() {  # CMD
  local fd
  for fd in "${sim_fds[@]}"; do echo "$1" >&"$fd"; done
}
sim_wait() {  # CMD EXPECTED_COUNT TIMEOUT_S
  local end=$(( $(date +%s) + $3 ))
  until [ "$(results "$1" | wc -l)" -ge "$2" ]; do
    if [ "$(date +%s)" -ge "$end" ]; then echo "simulators did not finish '$1'" >&2; exit 1; fi
    for pid in "${sim_pids[@]}"; do
      kill -0 "$pid" 2>/dev/null || { echo "a simulator died:" >&2; tail -5 "$work"/sim*.log >&2; exit 1; }
    done
    sleep 0.2
  done
}
sim_all() {  # CMD [ARG] -> runs it on every simulator, prints their lines
  local before
  before=$(results "$1" | wc -l)
  sim_send "$*"
  sim_wait "$1" $(( before + sims )) 3600
  results "$1" | tail -n "$sims"
  if results "$1" | tail -n "$sims" | grep -q 'first_error='; then
    echo "(some calls failed in '$1': first_error above)" >&2
  fi
}
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p"; }   # field NAME < lines
sum() { field "$1" | awk '{ s += $1 } END { printf "%.15g\n", s }'; }
max() { field "$1" | awk 'NR == 1 || $1 > m { m = $1 } END { printf "%.15g\n", m }'; }
min() { field "$1" | awk 'NR == 1 || $1 < m { m = $1 } END { printf "%.15g\n", m }'; }
calc() { awk "BEGIN { printf \"%.6f\", $1 }"; }

echo "$clients clients in $sims simulator(s); MP pid $mp_pid"
echo "phase 1: register"
out=$(sim_all register); echo "$out"
registered=$(echo "$out" | sum ok)
(( registered == clients )) || { echo "only $registered of $clients registered" >&2; exit 1; }
echo "register_rps=$(calc "$registered / $(echo "$out" | max seconds)")"

echo "phase 2: notification streams"
out=$(sim_all streams 600); echo "$out"
held=$(echo "$out" | sum held)
echo "streams_held=$held mp_rss_mb=$(( $(mp_kb VmRSS) / 1024 ))"

log_seq() { site_sql "$1" "SELECT last_value FROM repl_log_id_seq"; }
cas_log0=$(log_seq CAS); p01_log0=$(log_seq P01)

echo "phase 3: one full inventory per client"
out=$(sim_all full); echo "$out"
rows=$(echo "$out" | sum rows)
t_first=$(echo "$out" | min start_ms)
full_acked=$(echo "$out" | sum acked)
full_ms=$(( $(echo "$out" | max end_ms) - t_first ))
all_ingested() { [ "$(site_sql P01 "SELECT count(*) FROM devices WHERE inventory_seq > 0")" -ge "$full_acked" ]; }
POLL_S=0.2 wait_until 3600 all_ingested || { echo "P01 did not ingest every inventory" >&2; exit 1; }
t_ingested=$(now_ms)
ingest_rps=$(calc "$rows / (($t_ingested - $t_first) / 1000)")
tables="device_os device_system device_memory device_processor device_disk device_network device_software"
at_p01=0
for t in $tables; do at_p01=$(( at_p01 + $(site_sql P01 "SELECT count(*) FROM $t") )); done
printf 'ingest: rows_sent=%d rows_at_p01=%d seconds=%.2f inventory_rows_per_s=%.0f\n' \
  "$rows" "$at_p01" "$(calc "($t_ingested - $t_first) / 1000")" "$ingest_rps"
(( at_p01 == rows )) || { echo "P01 holds $at_p01 inventory rows; the clients sent $rows" >&2; exit 1; }
at_cas() { [ "$(site_sql CAS "SELECT count(*) FROM bench_arrival")" -ge "$full_acked" ]; }
POLL_S=0.5 wait_until 3600 at_cas || { echo "the CAS did not receive every inventory" >&2; exit 1; }
echo "all inventories at the CAS $(( $(now_ms) - t_ingested )) ms after P01"
cpu_report

echo "phase 4: COPY baseline of the same $rows rows"
copy_ms=0
for t in $tables; do
  site_sql P01 "COPY (SELECT * FROM $t) TO STDOUT" > "$work/$t.copy"
  site_sql P01 "CREATE TABLE copy_$t (LIKE $t INCLUDING ALL)" >/dev/null
  t0=$(now_ms)
  site_sql P01 "COPY copy_$t FROM STDIN" < "$work/$t.copy" >/dev/null
  copy_ms=$(( copy_ms + $(now_ms) - t0 ))
  rm -f "$work/$t.copy"
done
copy_rps=$(calc "$rows / ($copy_ms / 1000)")
printf 'copy: rows=%d seconds=%.2f copy_rows_per_s=%.0f\n' "$rows" "$(calc "$copy_ms / 1000")" "$copy_rps"

echo "phase 5: not-modified policy checks for ${POLICY_S}s"
out=$(sim_all policy "$POLICY_S"); echo "$out"
policy_rps=$(echo "$out" | sum rps)

echo "phase 6: one delta per client"
out=$(sim_all delta 4); echo "$out"
delta_acked=$(echo "$out" | sum acked)
delta_ms=$(( $(echo "$out" | max end_ms) - $(echo "$out" | min start_ms) ))
report_rps=$(calc "($full_acked + $delta_acked) / (($full_ms + $delta_ms) / 1000)")
printf 'reports acknowledged: full=%d in %d ms, delta=%d in %d ms, report_rps=%.0f\n' \
  "$full_acked" "$full_ms" "$delta_acked" "$delta_ms" "$report_rps"
expected=$(( full_acked + delta_acked ))
deltas_at_cas() { [ "$(site_sql CAS "SELECT count(*) FROM bench_arrival")" -ge "$expected" ]; }
POLL_S=0.5 wait_until 600 deltas_at_cas || { echo "the CAS did not receive every delta" >&2; exit 1; }
site_sql CAS "CREATE TABLE bench_sent (device_id uuid, inventory_seq bigint, sent_ms bigint)" >/dev/null
cat "$work"/deltas*.csv | site_sql CAS "COPY bench_sent FROM STDIN (FORMAT csv)" >/dev/null
read -r n_vis p50 p99 pmax <<<"$(site_sql CAS "SELECT count(*), round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)),
  round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)), max(ms)
  FROM (SELECT a.arrived_ms - s.sent_ms AS ms FROM bench_sent s JOIN bench_arrival a USING (device_id, inventory_seq)) x" | tr '|' ' ')"
echo "deltas at the CAS: count=$n_vis p50_ms=$p50 p99_ms=$p99 max_ms=$pmax"
# Rows written to each change log during intake (phases 3-6): P01 captures
# each inventory change once; the CAS logs what it must pass on to others.
p01_log=$(( $(log_seq P01) - p01_log0 )); cas_log=$(( $(log_seq CAS) - cas_log0 ))
cas_log_per_row=$(calc "$cas_log / $p01_log")
echo "change log rows during intake: p01=$p01_log cas=$cas_log cas_log_per_inventory_change=$cas_log_per_row"

echo "phase 7: policy change fan-out to $held streams"
sim_send "await_policy 120"
until [ "$(grep -h '^awaiting' "$work"/sim*.out | wc -l)" -ge "$sims" ]; do sleep 0.1; done
t_change=$(now_ms)
site_sql P01 "UPDATE client_settings SET policy_poll_seconds = 1800 WHERE name = 'Default Client Settings'" >/dev/null
sim_wait await_policy "$sims" 200
out=$(results await_policy | tail -n "$sims"); echo "$out"
told=$(echo "$out" | sum received)
last=$(echo "$out" | max last_ms)
fanout=$(( last - t_change ))
echo "told=$told of held=$held; from the change at P01 to the last stream: ${fanout} ms; MP broadcast spread $(( last - $(echo "$out" | min first_ms) )) ms"
out=$(sim_all status); echo "$out"
held_end=$(echo "$out" | sum streams_held)

cpu_report
rss_kb=$(mp_kb VmHWM)
rss_mb=$(( rss_kb / 1024 ))
echo "MP: peak rss_mb=$rss_mb now_mb=$(( $(mp_kb VmRSS) / 1024 )) rss_per_stream_kb=$(( rss_kb / held )) threads=$(ls /proc/$mp_pid/task | wc -l)"
(( told == held )) || echo "WARNING: $(( held - told )) held streams were not told of the change"
printf 'bench mp: clients=%d streams_held=%d rss_mb=%d policy_rps=%.0f report_rps=%.0f inventory_rows_per_s=%.0f copy_rows_per_s=%.0f ingest_vs_copy=%.2f notify_fanout_ms=%d cas_visible_p99_ms=%d cas_log_per_inventory_change=%.3f\n' \
  "$clients" "$held_end" "$rss_mb" "$policy_rps" "$report_rps" "$ingest_rps" "$copy_rps" \
  "$(calc "$ingest_rps / $copy_rps")" "$fanout" "$p99" "$cas_log_per_row"
