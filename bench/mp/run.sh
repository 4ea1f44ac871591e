#!/usr/bin/env bash
# Management point benchmark (issues 3 and 14): CAS <- P01 <- one MP, each
# site on a throwaway PostgreSQL server of its own with durable commits
# (fsync, synchronous_commit on),
# and CLIENTS simulated agents (bench/clientsim, real protocol over mutual
# TLS), each holding its nudge channel from phase 2 to the end and opening
# gRPC connections only for its calls (released after 1 s idle, as agents do).
#  1. register    every client gets its certificate from P01's issuing CA
#  2. channels    the MP is restarted (rss_idle: its resident set with no
#                 client); every client opens its nudge channel; rss_held
#                 once all are held; rss_per_client_kb = (held - idle) /
#                 clients; projected_rss_mb_25000 = idle + 25,000 x that
#  3. hold        HOLD_S seconds (default 300) with jittered keep-alives
#                 (KEEPALIVE_S, default the MP's 120): channels dropped and
#                 the MP's CPU % meanwhile (idle_cpu_pct)
#  4. fan-out     a client setting changed at P01, twice: (a) notify_fanout_ms =
#                 from the commit to the last client told POLICY_CHANGED, and
#                 policy_on_channel_ms to the last holding the new policy,
#                 which rides the nudge; (b) refetch_all_ms = to the last
#                 client that fetched its new policy over gRPC instead (each
#                 after a random part of the spread the MP puts in the
#                 nudge): what the policy riding the channel saves
#  5. full        one full inventory per client (150-450 packages each);
#                 inventory_rows_per_s = rows in P01's tables / time from the
#                 first report sent to the last device's inventory applied
#  6. COPY        baseline: PostgreSQL's own COPY of the same rows into plain
#                 tables of the same shape (same keys, no capture) on the same
#                 server; ingest_vs_copy = inventory_rows_per_s / copy_rows_per_s
#  7. policy      not-modified policy checks for POLICY_S seconds (policy_rps;
#                 each client's gRPC connection is released after 1 s idle,
#                 so most checks include a TLS handshake)
#  8. delta       one delta (4 packages) per client; report_rps = full and
#                 delta reports acknowledged (spooled, fsync'ed) per second
#                 over phases 5 and 8; cas_visible_*: from the
#                 client sending it to its arrival at the CAS (a trigger there)
# rss_mb is the restarted MP's peak resident set (VmHWM) over phases 2-8.
# Last line: bench mp: clients=… channel_clients=… rss_idle_mb=… rss_held_mb=…
#   rss_per_client_kb=… projected_rss_mb_25000=… vs_target_1024=… notify_fanout_ms=…
#   policy_on_channel_ms=… refetch_all_ms=… refetch_vs_channel=… idle_cpu_pct=… channels_dropped=… rss_mb=… policy_rps=… report_rps=…
#   inventory_rows_per_s=… copy_rows_per_s=… ingest_vs_copy=… cas_visible_p99_ms=…
# (Until issue 15 it also printed cas_log_per_inventory_change, the rows the
# CAS wrote again to its trigger log: changes are read from the WAL now and
# nothing is written twice.)
# Env: CLIENTS (25000), HOLD_S (300), KEEPALIVE_S (120), POLICY_S (20),
#      CONCURRENCY (64 per simulator), KEEP_LOGS (a directory for the logs).
# The MP needs one file descriptor per held channel plus those of gRPC calls
# in flight: if this machine's hard limit (ulimit -Hn) leaves less than
# CLIENTS + 2,500, the run says so, uses as many clients as fit, and projects.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
CLIENTS=${CLIENTS:-25000}
POLICY_S=${POLICY_S:-20}
CONCURRENCY=${CONCURRENCY:-64}
HOLD_S=${HOLD_S:-300}
KEEPALIVE_S=${KEEPALIVE_S:-120}

deploy/build.sh build
source deploy/pg.sh
source deploy/hierarchy.sh

# File descriptors: the MP holds one per nudge channel, and one per gRPC
# call in flight; each simulator one per client's channel and its calls.
ulimit -n "$(ulimit -Hn)"
fd_limit=$(ulimit -n)
clients=$CLIENTS
max_clients=$(( fd_limit - 2500 ))
if (( clients > max_clients )); then
  clients=$max_clients
  echo "NOTE: open files are limited to $fd_limit per process here (ulimit -Hn; raising it needs"
  echo "      CAP_SYS_RESOURCE). With room for gRPC calls in flight, one MP is run with"
  echo "      clients=$clients instead of $CLIENTS; projected_rss_mb_25000 projects from the"
  echo "      measured rss_per_client_kb."
fi
per_sim=5000
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
  pg_stop "$work/pg-p01"
  pg_stop "$work/pg-cas"
  [ -n "${KEEP_LOGS:-}" ] && mkdir -p "$KEEP_LOGS" && cp "$STRATA_RUN"/*.log "$work"/sim*.out "$KEEP_LOGS"/ 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
# Every simulated client registers from this machine (one source address).
printf 'register_per_source_per_minute: -1\nregister_per_minute: -1\nnudge_keepalive_seconds: %d\n' \
  "$KEEPALIVE_S" > "$work/mp.conf"
export STRATA_MP_FLAGS="--config $work/mp.conf"
deploy/pki.sh "$STRATA_PKI" site/CAS site/P01 issuing/P01 mp/P01.mp1 >/dev/null
# Each site on a server of its own, as in a real hierarchy (on one server
# every walsender would decode both sites' WAL).
pg_start "$work/pg-cas" durable
echo "postgres: fsync=$(psql -X -d postgres -tAc 'SHOW fsync') synchronous_commit=$(psql -X -d postgres -tAc 'SHOW synchronous_commit')"
site_start CAS cas
pg_start "$work/pg-p01" durable
site_start P01 primary CAS
mp_start P01.mp1
mp_pid=$(cat "$STRATA_RUN/p01-mp1.pid")
add_enrollment_token P01 bench-token
now_ms() { date +%s%3N; }
# CPU seconds used so far by each part (for where the time goes).
cpu_s() { awk '{ printf "%.1f", ($14 + $15) / 100 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
# postgres: both servers' processes; pg_detail: by server and kind
# (walsenders, backends of the site and of others, background processes).
cpu_report() {
  local pg=0 pid s detail=""
  for s in cas p01; do
    local post wal=0 site=0 other=0 bg=0
    post=$(head -1 "$work/pg-$s/data/postmaster.pid")
    for pid in "$post" $(pgrep -P "$post"); do
      local c; c=$(cpu_s "$pid")
      pg=$(awk -v a="$pg" -v b="$c" 'BEGIN { print a + b }')
      case "$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null)" in
        *walsender*) wal=$(awk -v a="$wal" -v b="$c" 'BEGIN { print a + b }') ;;
        *" strata_$s "*) site=$(awk -v a="$site" -v b="$c" 'BEGIN { print a + b }') ;;
        *" postgres "*) other=$(awk -v a="$other" -v b="$c" 'BEGIN { print a + b }') ;;
        *) bg=$(awk -v a="$bg" -v b="$c" 'BEGIN { print a + b }') ;;
      esac
    done
    detail="$detail $s(walsenders=$wal backends=$site other=$other background=$bg)"
  done
  local sim=0
  for pid in "${sim_pids[@]}"; do sim=$(awk -v a="$sim" -v b="$(cpu_s "$pid")" 'BEGIN { print a + b }'); done
  echo "cpu_s: mp=$(cpu_s "$mp_pid") p01=$(cpu_s "$(cat "$STRATA_RUN/p01.pid")") cas=$(cpu_s "$(cat "$STRATA_RUN/cas.pid")") postgres=$pg simulators=$sim"
  echo "cpu_s postgres by server:$detail"
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
# The newest result line of command $1 from each simulator.
latest() {
  local f
  for f in "$work"/sim*.out; do grep -v '^awaiting' "$f" | awk -v c="$1" '$1 == c' | tail -n 1; done
}
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
  latest "$1"
  if latest "$1" | grep -q 'first_error='; then
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

echo "phase 2: nudge channels (the MP restarted first, to measure it without clients)"
mp_stop P01.mp1
mp_start P01.mp1
mp_pid=$(cat "$STRATA_RUN/p01-mp1.pid")
sleep 3
rss_idle_kb=$(mp_kb VmRSS)
out=$(sim_all channels 1200); echo "$out"
held=$(echo "$out" | sum held)
sleep 5  # welcomes written, lookups settled
rss_held_kb=$(mp_kb VmRSS)
per_client_kb=$(calc "($rss_held_kb - $rss_idle_kb) / $held")
projected_mb=$(calc "($rss_idle_kb + 25000 * $per_client_kb) / 1024")
echo "channels_held=$held of $clients: rss_idle_mb=$(( rss_idle_kb / 1024 )) rss_held_mb=$(( rss_held_kb / 1024 )) rss_per_client_kb=$per_client_kb projected_rss_mb_25000=$projected_mb (target < 1024, aim 16 KB/client)"

echo "phase 3: $held channels held for ${HOLD_S}s, keep-alive ${KEEPALIVE_S}s (jittered)"
welcomes0=$(sim_all status | sum welcomes)
cpu0=$(cpu_s "$mp_pid")
sleep "$HOLD_S"
cpu1=$(cpu_s "$mp_pid")
out=$(sim_all status); echo "$out"
held_after=$(echo "$out" | sum channels_held)
dropped=$(( $(echo "$out" | sum welcomes) - welcomes0 ))
idle_cpu_pct=$(calc "($cpu1 - $cpu0) * 100 / $HOLD_S")
echo "after ${HOLD_S}s: held=$held_after channels_dropped_and_redialled=$dropped mp_cpu_pct=$idle_cpu_pct"

cpu_report
# fanout HOW SECONDS: changes the default policy poll interval at P01 and
# waits until every held client has the new policy (HOW: "channel", from the
# nudge; "grpc", fetched over gRPC after its share of the spread). Sets
# told, fetched, fanout (ms to the last nudge) and got_all (ms to the last
# client holding the new policy).
fanout() {
  sim_send "await_policy 600 $1"
  until [ "$(grep -h '^awaiting' "$work"/sim*.out | wc -l)" -ge "$(( sims * fanouts ))" ]; do sleep 0.1; done
  t_change=$(now_ms)
  site_sql P01 "UPDATE client_settings SET policy_poll_seconds = $2 WHERE name = 'Default Client Settings'" >/dev/null
  sim_wait await_policy $(( sims * fanouts )) 700
  out=$(latest await_policy); echo "$out"
  told=$(echo "$out" | sum received)
  fetched=$(echo "$out" | sum fetched)
  fanout=$(( $(echo "$out" | max last_ms) - t_change ))
  got_all=$(( $(echo "$out" | max fetch_last_ms) - t_change ))
  echo "$1: told=$told holding_new_policy=$fetched of held=$held; fetch failures=$(echo "$out" | sum fetch_failed); last told ${fanout} ms, last holding it ${got_all} ms after the change"
  (( told == held )) || echo "WARNING: $(( held - told )) held channels were not told of the change"
  (( fetched == held )) || echo "WARNING: $(( held - fetched )) clients do not hold the new policy"
  fanouts=$(( fanouts + 1 ))
}
fanouts=1
echo "phase 4a: policy change fan-out to $held channels, the policy riding the nudge"
fanout channel 1800
notify_fanout_ms=$fanout
policy_on_channel_ms=$got_all
cpu_report
echo "phase 4b: the same, every client fetching its policy over gRPC instead (the MP spreads them)"
fanout grpc 1700
refetch_all_ms=$got_all
cpu_report

echo "phase 5: one full inventory per client"
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

echo "phase 6: COPY baseline of the same $rows rows"
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

echo "phase 7: not-modified policy checks for ${POLICY_S}s"
out=$(sim_all policy "$POLICY_S"); echo "$out"
policy_rps=$(echo "$out" | sum rps)

echo "phase 8: one delta per client"
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

cpu_report
out=$(sim_all status); echo "$out"
held_end=$(echo "$out" | sum channels_held)
rss_kb=$(mp_kb VmHWM)
rss_mb=$(( rss_kb / 1024 ))
echo "MP: peak rss_mb=$rss_mb now_mb=$(( $(mp_kb VmRSS) / 1024 )) threads=$(ls /proc/$mp_pid/task | wc -l) channels held at the end=$held_end"
printf 'bench mp: clients=%d channel_clients=%d rss_idle_mb=%d rss_held_mb=%d rss_per_client_kb=%.1f projected_rss_mb_25000=%.0f vs_target_1024=%.2f notify_fanout_ms=%d policy_on_channel_ms=%d refetch_all_ms=%d refetch_vs_channel=%.1f idle_cpu_pct=%.1f channels_dropped=%d rss_mb=%d policy_rps=%.0f report_rps=%.0f inventory_rows_per_s=%.0f copy_rows_per_s=%.0f ingest_vs_copy=%.2f cas_visible_p99_ms=%d\n' \
  "$clients" "$held" "$(( rss_idle_kb / 1024 ))" "$(( rss_held_kb / 1024 ))" "$per_client_kb" \
  "$projected_mb" "$(calc "$projected_mb / 1024")" "$notify_fanout_ms" "$policy_on_channel_ms" \
  "$refetch_all_ms" "$(calc "$refetch_all_ms / ($policy_on_channel_ms > 0 ? $policy_on_channel_ms : 1)")" "$idle_cpu_pct" "$dropped" \
  "$rss_mb" "$policy_rps" "$report_rps" "$ingest_rps" "$copy_rps" \
  "$(calc "$ingest_rps / $copy_rps")" "$p99"
