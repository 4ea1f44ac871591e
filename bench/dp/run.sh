#!/usr/bin/env bash
# Distribution point benchmark (issue 12), over loopback TCP, mutual TLS,
# one run: a standalone primary P01 (durable PostgreSQL), its provider, and
# four DPs (strata-dp + nginx, TCP port 0).
#  1. distribute  a 1 GiB package (one random file) is uploaded through the
#                 provider, then distributed to the 4 DPs at once:
#                 distribute_4dp_s = from the distribute command to the
#                 fourth DP reporting it installed; distribute_mb_s = the
#                 bytes the 4 DPs received / that time; distribute_vs_curl =
#                 distribute_mb_s / curl_mb_s
#  2. one agent   curl fetching the blob's URL from DP1's nginx to /dev/null
#                 (curl_mb_s), then the agent's own download code
#                 (agent/download.h: libcurl, hash while writing, into a
#                 fresh cache on disk) from the same nginx (agent_mb_s);
#                 each run twice, the better kept; ratio_agent_vs_curl
#  3. fleet       CLIENTS (4,000) simulated clients download a 2 MiB package
#                 from DP1 at once (a TLS connection each, as many at once as
#                 the open-file limit allows), each verifying its SHA-256:
#                 clients_ok, aggregate_mb_s, p99_s (from the start)
# Last line: bench dp: agent_mb_s=… curl_mb_s=… ratio_agent_vs_curl=…
#   clients=4000 clients_ok=… aggregate_mb_s=… p99_s=… distribute_4dp_s=…
#   distribute_mb_s=… distribute_vs_curl=… grpc_mb_s=… grpc_vs_curl=…
# grpc_mb_s: one GetBlob stream of the 1 GiB blob from the site server over
# its unix socket, bytes discarded (the transfer path without the DP's disk),
# against curl_mb_s: what the choice of gRPC for site-to-site and
# site-to-DP transfers costs.
# Env: BIG_MB (1024), CLIENTS (4000), KEEP_LOGS (a directory for the logs).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
BIG_MB=${BIG_MB:-1024}
CLIENTS=${CLIENTS:-4000}

deploy/build.sh build
source deploy/pg.sh
source deploy/hierarchy.sh
ulimit -n "$(ulimit -Hn)"
fd_limit=$(ulimit -n)
if (( CLIENTS + 200 > fd_limit )); then
  echo "NOTE: open files are limited to $fd_limit per process: at most $(( fd_limit - 200 ))"
  echo "      clients download at once; the others queue behind them."
fi

work=$(mktemp -d /tmp/stdp-XXXXXX)
chmod 755 "$work"
export STRATA_BUILD=$root/build STRATA_RUN=$work/run STRATA_PKI=$work/pki
mkdir -p "$STRATA_RUN"
cleanup() {
  set +e
  for i in 1 2 3 4; do dp_stop P01.dp$i; done
  provider_stop P01
  site_stop P01
  pg_stop "$work/pg"
  [ -n "${KEEP_LOGS:-}" ] && mkdir -p "$KEEP_LOGS" && cp "$STRATA_RUN"/*.log "$KEEP_LOGS"/ 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
pg_start "$work/pg" durable
deploy/pki.sh "$STRATA_PKI" site/P01 provider/P01 admin/bench agent/bench-client \
  dp/P01.dp1 dp/P01.dp2 dp/P01.dp3 dp/P01.dp4 >/dev/null
site_start P01 primary
provider_start P01 bench
for i in 1 2 3 4; do dp_start P01.dp$i 127.0.0.1:0; done
ctl() {
  "$STRATA_BUILD/provider/stratactl" --server "$(provider_address P01)" --ca "$STRATA_PKI/ca.pem" \
    --cert "$STRATA_PKI/admin-bench.pem" --key "$STRATA_PKI/admin-bench.key" --timeout 600 "$@"
}
now() { date +%s.%N; }
installed() {  # installed PACKAGE COUNT: COUNT DPs report it installed
  [ "$(site_sql P01 "SELECT count(*) FROM content_status WHERE package = '$1' AND location <> 'site' AND state = 'installed'")" = "$2" ]
}
POLL_S=0.1

# 1. distribute
mkdir -p "$work/big" "$work/small"
head -c "$(( BIG_MB << 20 ))" /dev/urandom > "$work/big/big.bin"
big_sha=$(sha256sum "$work/big/big.bin" | cut -d' ' -f1)
t=$(now); ctl create package Big --source "$work/big" >/dev/null
echo "upload of ${BIG_MB} MiB through the provider: $(awk -v a="$t" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }') s"
t0=$(now)
ctl distribute package Big --dp P01.dp1 --dp P01.dp2 --dp P01.dp3 --dp P01.dp4 >/dev/null
wait_until 3600 installed Big 4
distribute_s=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }')

# 2. one agent against curl, same nginx, same URL
dp1=$(dp_address P01.dp1)
url="https://$dp1/content/sha256/$big_sha"
tls=(--cacert "$STRATA_PKI/ca.pem" --cert "$STRATA_PKI/agent-bench-client.pem" --key "$STRATA_PKI/agent-bench-client.key")
curl_mb_s=0
for _ in 1 2; do
  r=$( { /usr/bin/time -f "curl cpu: user=%U sys=%S wall=%e" curl -s -o /dev/null -w '%{speed_download}' "${tls[@]}" "$url"; } 2>"$work/time.txt")
  cat "$work/time.txt"
  curl_mb_s=$(awk -v a="$curl_mb_s" -v b="$r" 'BEGIN { b /= 1048576; printf "%.1f", (b > a ? b : a) }')
done
agent_mb_s=0
for k in 1 2; do
  out=$(/usr/bin/time -f "agent cpu: user=%U sys=%S wall=%e" "$STRATA_BUILD/bench/dp/dp_bench" fetch --dp "$dp1" --sha256 "$big_sha" --size "$(( BIG_MB << 20 ))" \
    --cache "$work/agent-cache$k" --ca "$STRATA_PKI/ca.pem" --cert "$STRATA_PKI/agent-bench-client.pem" \
    --key "$STRATA_PKI/agent-bench-client.key" 2>&1 | grep -v INFO)
  echo "$out"
  agent_mb_s=$(echo "$out" | grep '^fetch:' | awk -v a="$agent_mb_s" '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } r = v["bytes"] / 1048576 / v["seconds"]; printf "%.1f", (r > a ? r : a) }')
  rm -rf "$work/agent-cache$k"
done
distribute_mb_s=$(awk -v s="$distribute_s" -v m="$BIG_MB" 'BEGIN { printf "%.1f", 4 * m / s }')
# The transfer path alone, without the receiving disk: one GetBlob stream
# from the site server (as a DP takes content), bytes discarded.
grpc_mb_s=0
for _ in 1 2; do
  out=$("$STRATA_BUILD/bench/dp/dp_bench" grpc --site "unix:$STRATA_RUN/p01.sock" --sha256 "$big_sha" \
    --ca "$STRATA_PKI/ca.pem" --cert "$STRATA_PKI/dp-P01.dp1.pem" --key "$STRATA_PKI/dp-P01.dp1.key")
  echo "$out"
  grpc_mb_s=$(echo "$out" | awk -v a="$grpc_mb_s" '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } r = v["bytes"] / 1048576 / v["seconds"]; printf "%.1f", (r > a ? r : a) }')
done

# 3. the fleet
head -c $(( 2 << 20 )) /dev/urandom > "$work/small/small.bin"
small_sha=$(sha256sum "$work/small/small.bin" | cut -d' ' -f1)
ctl create package Small --source "$work/small" >/dev/null
ctl distribute package Small --dp P01.dp1 >/dev/null
wait_until 600 installed Small 1
fleet=$("$STRATA_BUILD/bench/dp/dp_bench" fleet --url "https://$dp1/content/sha256/$small_sha" \
  --sha256 "$small_sha" --size $(( 2 << 20 )) --clients "$CLIENTS" --ca "$STRATA_PKI/ca.pem" \
  --cert "$STRATA_PKI/agent-bench-client.pem" --key "$STRATA_PKI/agent-bench-client.key" 2>"$work/fleet.err" || true)
echo "$fleet"
sort "$work/fleet.err" | uniq -c | head -5
field() { echo "$fleet" | tr ' ' '\n' | awk -F= -v k="$1" '$1 == k { print $2 }'; }

echo "distribution from the site server to the DPs: gRPC chunk streams (1 MiB), 4 at once;"
echo "one stream alone, bytes discarded: grpc_mb_s=$grpc_mb_s ($(awk -v a="$grpc_mb_s" -v c="$curl_mb_s" 'BEGIN { printf "%.2f", a / c }') of curl on nginx)"
ratio=$(awk -v a="$agent_mb_s" -v c="$curl_mb_s" 'BEGIN { printf "%.2f", a / c }')
dvc=$(awk -v a="$distribute_mb_s" -v c="$curl_mb_s" 'BEGIN { printf "%.2f", a / c }')
echo "bench dp: agent_mb_s=$agent_mb_s curl_mb_s=$curl_mb_s ratio_agent_vs_curl=$ratio clients=$CLIENTS clients_ok=$(field ok) aggregate_mb_s=$(field mb_s) p99_s=$(field p99_s) distribute_4dp_s=$distribute_s distribute_mb_s=$distribute_mb_s distribute_vs_curl=$dvc grpc_mb_s=$grpc_mb_s grpc_vs_curl=$(awk -v a="$grpc_mb_s" -v c="$curl_mb_s" 'BEGIN { printf "%.2f", a / c }')"
