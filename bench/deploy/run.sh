#!/usr/bin/env bash
# Deployment benchmark (issue 13): CAS <- P01 <- S01, CAS <- P02, an MP at
# each of P01, P02 and S01, each site on a throwaway PostgreSQL server of
# its own with durable commits, and CLIENTS (10,000) simulated agents
# (bench/clientsim: real protocol over mutual TLS), 40 % at P01's MP, 40 %
# at P02's, 20 % at S01's, each holding its nudge channel. An application
# is made and deployed *required* to All Systems at the CAS (stratactl
# against the CAS's provider); each simulated
# agent, when its policy names the deployment, reports it installing then
# installed (an install that takes no time: what is measured is the
# system's path — replication down, assignment at the primaries, policy to
# the MPs, the nudge, the report, ingest, replication up, the counts).
#   all_visible_s   from the deploy command to the CAS counting every client
#                   installed (deployment_state_counts, what `stratactl get
#                   deployment-status` shows)
#   p50_s / p99_s   per client, from the deploy command to its "installed" row
#                   arriving at the CAS (a trigger there records the arrival)
# Targets: all_visible_s < 60, p99_s < 30 (vs_target_* print the ratios;
# Configuration Manager summarizes deployment status every 60 minutes).
# Last line: bench deploy: clients=… installed=… all_visible_s=… p50_s=… p99_s=…
# The states go up the clients' nudge channels, as agents send small reports
# (REPORTS=grpc: in a Report call each, a TLS handshake per client).
# Env: CLIENTS (10000), CONCURRENCY (64 per simulator), REPORTS (channel),
#      KEEP_LOGS (a directory).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
CLIENTS=${CLIENTS:-10000}
CONCURRENCY=${CONCURRENCY:-64}
REPORTS=${REPORTS:-channel}

deploy/build.sh build
source deploy/pg.sh
source deploy/hierarchy.sh
source bench/lib/fleet.sh

ulimit -n "$(ulimit -Hn)"
work=$(mktemp -d /tmp/stdep-XXXXXX)
chmod 755 "$work"
export STRATA_BUILD=$root/build STRATA_RUN=$work/run STRATA_PKI=$work/pki
mkdir -p "$STRATA_RUN"
sim_pids=()
sim_fds=()
cleanup() {
  set +e
  stop_bench
  [ -n "${KEEP_LOGS:-}" ] && mkdir -p "$KEEP_LOGS" && cp "$STRATA_RUN"/*.log "$work"/sim*.out "$work"/sim*.log "$KEEP_LOGS"/ 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
start_hierarchy

# Arrival of each device's "installed" row at the CAS, in the applying transaction.
site_sql CAS "CREATE TABLE bench_installed (device_id uuid PRIMARY KEY, arrived_ms bigint);
  CREATE FUNCTION bench_installed() RETURNS trigger LANGUAGE plpgsql AS \$\$ BEGIN
    INSERT INTO bench_installed VALUES (NEW.device_id,
      (extract(epoch FROM clock_timestamp()) * 1000)::bigint) ON CONFLICT DO NOTHING;
    RETURN NULL; END \$\$;
  CREATE TRIGGER bench_installed AFTER INSERT OR UPDATE ON deployment_states FOR EACH ROW
    WHEN (NEW.state = 'installed') EXECUTE FUNCTION bench_installed();" >/dev/null

start_fleet

echo "$CLIENTS clients: $p01 at P01.mp1, $p02 at P02.mp1, $s01 at S01.mp1 (S01's belong to P01)"
echo "phase 1: register"
out=$(sim_all register); echo "$out"
[ "$(echo "$out" | sum ok)" = "$CLIENTS" ] || { echo "not every client registered" >&2; exit 1; }
echo "phase 2: nudge channels"
out=$(sim_all channels 600); echo "$out"
held=$(echo "$out" | sum held)
[ "$held" = "$CLIENTS" ] || { echo "only $held channels held" >&2; exit 1; }
echo "phase 3: every client a member of All Systems at the CAS"
wait_until 600 sql_is CAS "SELECT count(*) FROM collection_members WHERE collection = 'All Systems'" "$CLIENTS" ||
  { echo "All Systems has $(site_sql CAS "SELECT count(*) FROM collection_members WHERE collection = 'All Systems'") members at the CAS" >&2; exit 1; }
ctl create application BenchApp --install "true" --description "deployment benchmark" >/dev/null

echo "phase 4: deploy at the CAS; simulated agents report as their policy names it"
for fd in "${sim_fds[@]}"; do echo "install 300 bench $REPORTS" >&"$fd"; done
# Every simulator waiting (it prints "awaiting" first) before the clock starts.
wait_until 60 awaiting_at_least "$sims"
t0=$(now_ms)
ctl deploy application BenchApp --collection "All Systems" --name bench
visible_ms=0
end=$(( $(date +%s) + 300 ))
while :; do
  n=$(site_sql CAS "SELECT coalesce(sum(devices), 0) FROM deployment_state_counts WHERE deployment = 'bench' AND state = 'installed'")
  if [ "$n" -ge "$CLIENTS" ]; then visible_ms=$(( $(now_ms) - t0 )); break; fi
  [ "$(date +%s)" -ge "$end" ] && break
  sleep 0.05
done
out=$(sim_results install "$sims"); echo "$out"
installed=$(site_sql CAS "SELECT coalesce(sum(devices), 0) FROM deployment_state_counts WHERE deployment = 'bench' AND state = 'installed'")
read -r p50 p99 <<<"$(site_sql CAS "SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY arrived_ms - $t0),
    percentile_disc(0.99) WITHIN GROUP (ORDER BY arrived_ms - $t0) FROM bench_installed" | tr '|' ' ')"
ctl get deployment-status bench --max-devices 1 | head -3
all_visible_s=$( [ "$visible_ms" -gt 0 ] && calc "$visible_ms / 1000" || echo "never" )
p50_s=$(calc "${p50:-0} / 1000"); p99_s=$(calc "${p99:-0} / 1000")
vs_target_all=$( [ "$visible_ms" -gt 0 ] && calc "$visible_ms / 60000" || echo "n/a" )
echo "targets: all visible < 60 s (ratio $vs_target_all), p99 < 30 s (ratio $(calc "${p99:-0} / 30000"))"
echo "bench deploy: reports=$REPORTS clients=$CLIENTS installed=$installed all_visible_s=$all_visible_s p50_s=$p50_s p99_s=$p99_s vs_target_all_60s=$vs_target_all vs_target_p99_30s=$(calc "${p99:-0} / 30000")"
