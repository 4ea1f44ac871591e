#!/usr/bin/env bash
# A hierarchy on separate hosts over real TCP, with a slow WAN link.
#
#   tests/multihost_test.sh BUILD_DIR     (tests/run.sh runs it as root, with
#                                           its PostgreSQL in $STRATA_TEST_PG)
#
# Each host is a network namespace on one bridge, with a host name of its own
# (/etc/netns/NS/hosts, which `ip netns exec` puts in place of /etc/hosts):
# cas.mh.test (10.77.0.1: the CAS and its provider), p01.mh.test (10.77.0.2:
# primary P01), s01.mh.test (10.77.0.3: secondary S01, its MP and DP) and
# agent.mh.test (10.77.0.4: an agent). Every process listens on TCP with a
# certificate from strata-pki naming its host, and is dialled by that name;
# the CRL is in force everywhere. S01 is a branch office behind a WAN link: tc tbf limits
# its interface to 2 Mbit/s each way, and its link to P01 goes through
# tests/wan_relay (75 ms each way, so 150 ms more RTT, and 1 % of reads
# stalled 300 ms as a lost segment would; this kernel has no netem).
#
# It shows: replication keeps up over the slow link (lag p50/p99 of global
# changes from the CAS to S01, two hops) and recovers after the link is cut
# for a minute (nothing lost, either way); content reaches S01's library and
# DP at S01's configured rate limit and finishes; an agent behind S01
# registers, reports its inventory (seen at the CAS) and installs an
# application deployed from the CAS. The last line gives the figures.
#
# Exit 77 (counted as skipped by ctest) where namespaces cannot be made:
# never reported as passed.
set -euo pipefail

build=$(cd "${1:?usage: multihost_test.sh BUILD_DIR}" && pwd)
[ -n "${STRATA_TEST_PG:-}" ] || { echo "multihost_test: STRATA_TEST_PG is not set (run it from tests/run.sh)" >&2; exit 2; }

tag=mh$$
if [ "$(id -u)" != 0 ]; then
  echo "SKIP: network namespaces need root (run tests/run.sh as root)"
  exit 77
fi
if ! err=$(ip netns add "$tag-probe" 2>&1); then
  echo "SKIP: this kernel or sandbox refuses network namespaces: $err"
  exit 77
fi
ip netns del "$tag-probe"

# What a run killed by ctest's timeout left (its EXIT trap never ran):
# namespaces, their hosts files and databases of runs no longer alive.
for ns in $(ip netns list | awk '{print $1}' | grep -E '^mh[0-9]+-' || true); do
  pid=${ns%%-*}; pid=${pid#mh}
  kill -0 "$pid" 2>/dev/null && continue
  ip netns pids "$ns" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "/etc/netns/$ns"
done
for db in $(psql "$STRATA_TEST_PG" -X -q -tAc "SELECT datname FROM pg_database WHERE datname ~ '^mh[0-9]+_'"); do
  pid=${db%%_*}; pid=${pid#mh}
  kill -0 "$pid" 2>/dev/null || psql "$STRATA_TEST_PG" -X -q -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
done

work=$(mktemp -d /tmp/strata-mh-XXXXXX)
chmod 755 "$work"
pids=()
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
pass() { echo "ok    $*"; }
cleanup() {
  local rc=$?
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  # Whatever still runs in the test's namespaces (nginx workers) goes too.
  for ns in cas p01 s01 agent sw; do
    ip netns pids "$tag-$ns" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
    ip netns del "$tag-$ns" 2>/dev/null || true
    rm -rf "/etc/netns/$tag-$ns"
  done
  for db in cas p01 s01; do
    psql "$STRATA_TEST_PG" -X -q -c "DROP DATABASE IF EXISTS ${tag}_$db WITH (FORCE)" >/dev/null 2>&1 || true
  done
  if [ $rc -ne 0 ] || [ $failures -ne 0 ]; then
    echo "== logs (last lines)"
    for f in "$work"/*.log; do echo "-- $f"; tail -15 "$f"; done
  fi
  rm -rf "$work"
}
trap cleanup EXIT

in_ns() { local ns=$1; shift; ip netns exec "$tag-$ns" "$@"; }
# start NS NAME CMD... -> a process in a namespace, logging to $work/NAME.log
start() {
  local ns=$1 name=$2; shift 2
  ip netns exec "$tag-$ns" "$@" >>"$work/$name.log" 2>&1 &
  pids+=($!)
}
# wait_for SECONDS CMD... -> polls CMD every 0.2 s. No wait goes past the
# run's deadline, well inside ctest's 900 s, so the EXIT trap always runs.
deadline=$(( $(date +%s) + 780 ))
wait_for() {
  local end=$(( $(date +%s) + $1 )); shift
  [ "$end" -gt "$deadline" ] && end=$deadline
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -ge "$end" ] && return 1
    sleep 0.2
  done
}
now_ms() { date +%s%3N; }
sql() { psql "$STRATA_TEST_PG dbname=${tag}_$1" -X -q -tAc "$2"; }

echo "== hosts: network namespaces on one bridge; S01 behind a 2 Mbit/s link"
ip netns add "$tag-sw"
ip -n "$tag-sw" link add br0 type bridge
ip -n "$tag-sw" link set br0 up
declare -A addr=([cas]=10.77.0.1 [p01]=10.77.0.2 [s01]=10.77.0.3 [agent]=10.77.0.4)
declare -A name=([cas]=cas.mh.test [p01]=p01.mh.test [s01]=s01.mh.test [agent]=agent.mh.test)
for host in cas p01 s01 agent; do
  ip netns add "$tag-$host"
  mkdir -p "/etc/netns/$tag-$host"
  {
    echo "127.0.0.1 localhost"
    for h in cas p01 s01 agent; do echo "${addr[$h]} ${name[$h]}"; done
  } > "/etc/netns/$tag-$host/hosts"
  ip link add "h$tag$host" type veth peer name "b$tag$host"
  ip link set "h$tag$host" netns "$tag-$host"
  ip link set "b$tag$host" netns "$tag-sw"
  ip -n "$tag-$host" addr add "${addr[$host]}/24" dev "h$tag$host"
  ip -n "$tag-$host" link set lo up
  ip -n "$tag-$host" link set "h$tag$host" up
  ip -n "$tag-sw" link set "b$tag$host" master br0 up
done
link_kbps=2000
in_ns s01 tc qdisc add dev "h${tag}s01" root tbf rate ${link_kbps}kbit burst 32kbit latency 400ms
ip netns exec "$tag-sw" tc qdisc add dev "b${tag}s01" root tbf rate ${link_kbps}kbit burst 32kbit latency 400ms

echo "== PKI: strata-pki, a root with a passphrase, certificates naming each host"
pki="$build/pki/strata-pki --dir $work/pki --passphrase-file $work/passphrase"
echo "multihost test root passphrase" > "$work/passphrase"
$pki init --name "Multihost Test Root" >/dev/null
certs=$work/certs
mkdir -p "$certs"
issue() { $pki issue "$@" >/dev/null; }
# The host's name (how peers dial it) and address (how `status` reaches the
# listen address on the host itself).
host_names() { echo "--dns ${name[$1]} --ip ${addr[$1]}"; }
issue site CAS $(host_names cas) --out "$certs/site-CAS"
issue site P01 $(host_names p01) --out "$certs/site-P01"
issue site S01 $(host_names s01) --out "$certs/site-S01"
issue issuing P01 --out "$certs/issuing-P01"
issue issuing S01 --out "$certs/issuing-S01"
issue mp S01.mp1 $(host_names s01) --out "$certs/mp-S01.mp1"
issue dp S01.dp1 $(host_names s01) --out "$certs/dp-S01.dp1"
issue provider CAS --dns localhost $(host_names cas) --out "$certs/provider-CAS"
issue admin alice --out "$certs/admin-alice"
cp "$work/pki/root.pem" "$certs/ca.pem"
cp "$work/pki/crl.pem" "$certs/crl.pem"
openssl rand -hex 32 > "$certs/assets.key"
tls() { echo "tls { ca_file: \"$certs/ca.pem\" cert_file: \"$certs/$1.pem\" key_file: \"$certs/$1.key\" crl_file: \"$certs/crl.pem\" }"; }

echo "== site servers: CAS <- P01 <- (WAN relay) <- S01, each on its own host"
for db in cas p01 s01; do psql "$STRATA_TEST_PG" -X -q -c "CREATE DATABASE ${tag}_$db" >/dev/null; done
site_conf() {  # CODE HOST PARENT_ADDRESS EXTRA
  local code=$1 host=$2 parent=$3 extra=${4:-}
  {
    echo "site_code: \"$code\""
    echo "database: \"$STRATA_TEST_PG dbname=${tag}_$host\""
    echo "listen_address: \"${addr[$host]}:7001\""
    [ -n "$parent" ] && echo "parent_address: \"$parent\""
    echo "address_file: \"$work/$host.addr\""
    echo "content_library: \"$work/$host.content\""
    tls "site-$code"
    echo "asset_key_file: \"$certs/assets.key\""
    [ -f "$certs/issuing-$code.pem" ] &&
      echo "issuing_ca { cert_file: \"$certs/issuing-$code.pem\" key_file: \"$certs/issuing-$code.key\" }"
    echo "client_maintenance_seconds: 2"
    echo "$extra"
  } > "$work/$host.conf"
}
relay_port=7102
content_limit=65536  # S01 takes content from P01 at 64 KiB/s at most
site_conf CAS cas ""
site_conf P01 p01 "${name[cas]}:7001"
site_conf S01 s01 "${name[p01]}:$relay_port" "content_from_parent { max_bytes_per_second: $content_limit }"
start cas cas "$build/cas/strata-cas" --config "$work/cas.conf"
start p01 p01 "$build/primary/strata-primary" --config "$work/p01.conf"
start p01 relay "$build/tests/wan_relay" --listen "${addr[p01]}:$relay_port" --to "${addr[p01]}:7001" \
  --delay-ms 75 --loss 0.01 --stall-ms 300
start s01 s01 "$build/secondary/strata-secondary" --config "$work/s01.conf"
status() { in_ns "$1" "$build/$2/strata-$2" status --config "$work/$1.conf"; }
linked() {
  # grep reads all of it (no -q): under pipefail an early exit would fail the pipe
  status cas cas | grep -E '^P01 +child +active' >/dev/null &&
    status s01 secondary | grep -E '^P01 +parent +active' >/dev/null
}
if wait_for 90 linked; then pass "CAS, P01 and S01 linked over TCP and mutual TLS (S01 through the WAN link)"
else fail "the links did not come up"; exit 1; fi

echo "== replication over the slow link: 20 changes a second at the CAS for 30 s, timed at S01"
# Arrival times at S01, stamped by a trigger (ENABLE ALWAYS: the applier runs as a replica).
sql s01 "CREATE TABLE mh_arrivals (name text PRIMARY KEY, sent_ms bigint, arrived_ms bigint);
  CREATE FUNCTION mh_arrived() RETURNS trigger LANGUAGE plpgsql AS \$\$ BEGIN
    IF NEW.name LIKE 'mh.%' THEN INSERT INTO mh_arrivals VALUES (NEW.name, NEW.value::bigint,
      (extract(epoch FROM clock_timestamp()) * 1000)::bigint) ON CONFLICT DO NOTHING; END IF;
    RETURN NEW; END \$\$;
  CREATE TRIGGER mh_arrived AFTER INSERT OR UPDATE ON global_settings FOR EACH ROW EXECUTE FUNCTION mh_arrived();
  ALTER TABLE global_settings ENABLE ALWAYS TRIGGER mh_arrived;" >/dev/null
write_settings() {  # PREFIX COUNT SLEEP_S: one transaction a change
  sql cas "DO \$\$ BEGIN FOR i IN 1..$2 LOOP
      INSERT INTO global_settings (name, value) VALUES ('mh.$1.' || i,
        ((extract(epoch FROM clock_timestamp()) * 1000)::bigint)::text);
      COMMIT; PERFORM pg_sleep($3); END LOOP; END \$\$" >/dev/null
}
write_settings load 600 0.05
arrived() { [ "$(sql s01 "SELECT count(*) FROM mh_arrivals WHERE name LIKE 'mh.$1.%'")" = "$2" ]; }
if wait_for 120 arrived load 600; then pass "600 changes written at the CAS arrived at S01, two hops down"
else fail "only $(sql s01 "SELECT count(*) FROM mh_arrivals WHERE name LIKE 'mh.load.%'") of 600 changes reached S01"; fi
read -r lag_p50 lag_p99 lag_max <<<"$(sql s01 "SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY arrived_ms - sent_ms),
  percentile_disc(0.99) WITHIN GROUP (ORDER BY arrived_ms - sent_ms), max(arrived_ms - sent_ms)
  FROM mh_arrivals WHERE name LIKE 'mh.load.%'" | tr '|' ' ')"
echo "      lag CAS -> S01: p50 ${lag_p50} ms, p99 ${lag_p99} ms, max ${lag_max} ms"

echo "== the WAN link cut for 60 s: changes go on at both ends, then it is restored"
ip -n "$tag-sw" link set "b${tag}s01" down
cut_started=$(date +%s)
write_settings cut 100 0.2 &
writer=$!
sql s01 "INSERT INTO devices (id, name, site_code) VALUES (gen_random_uuid(), 'branch-laptop-1', 'S01')" >/dev/null
p01_sees_failed() { status p01 primary | grep -E '^S01 +child +failed' >/dev/null; }
if wait_for 58 p01_sees_failed; then pass "P01 shows its link to S01 failed while the link is cut"
else fail "P01 never showed the cut link as failed"; status p01 primary || true; fi
wait "$writer"
sleep $(( 60 - ($(date +%s) - cut_started) > 0 ? 60 - ($(date +%s) - cut_started) : 0 ))
ip -n "$tag-sw" link set "b${tag}s01" up
restored=$(now_ms)
caught_up() {
  arrived cut 100 && [ "$(sql cas "SELECT count(*) FROM devices WHERE name = 'branch-laptop-1'")" = 1 ]
}
if wait_for 180 caught_up; then
  catchup_s=$(awk "BEGIN { printf \"%.1f\", ($(now_ms) - $restored) / 1000 }")
  pass "restored: the 100 changes made meanwhile reached S01 and S01's device reached the CAS (${catchup_s} s)"
else
  catchup_s=-1
  fail "after the cut: $(sql s01 "SELECT count(*) FROM mh_arrivals WHERE name LIKE 'mh.cut.%'")/100 changes at S01"
fi
same_settings() {
  local q="SELECT count(*) || ' ' || md5(string_agg(name || '=' || value, ',' ORDER BY name))
    FROM global_settings WHERE name LIKE 'mh.%'"
  [ "$(sql cas "$q")" = "$(sql s01 "$q")" ]
}
if same_settings; then pass "S01 holds exactly the CAS's 700 settings, values and all"
else fail "S01's settings differ from the CAS's: $(sql s01 "SELECT count(*) FROM global_settings WHERE name LIKE 'mh.%'") at S01"; fi
wait_for 60 linked && pass "the links are active again" || fail "the links did not come back"

echo "== the provider at the CAS, an MP and a DP at S01"
cat > "$work/provider.conf" <<EOF
database: "$STRATA_TEST_PG dbname=${tag}_cas"
listen_address: "unix:$work/provider.sock"
address_file: "$work/provider.addr"
site_address: "${name[cas]}:7001"
bootstrap_admin: "alice"
asset_key_file: "$certs/assets.key"
$(tls provider-CAS)
EOF
start cas provider "$build/provider/strata-provider" --config "$work/provider.conf"
mkdir -p "$work/mp.spool"
cat > "$work/mp.conf" <<EOF
name: "S01.mp1"
site_address: "${name[s01]}:7001"
listen_address: "${addr[s01]}:7301"
public_address: "${name[s01]}:7301"
nudge_listen_address: "${addr[s01]}:7302"
nudge_public_address: "${name[s01]}:7302"
spool_dir: "$work/mp.spool"
address_file: "$work/mp.addr"
$(tls mp-S01.mp1)
EOF
start s01 mp "$build/mp/strata-mp" --config "$work/mp.conf"
cat > "$work/dp.conf" <<EOF
name: "S01.dp1"
site_address: "${name[s01]}:7001"
listen_address: "${addr[s01]}:7401"
public_address: "${name[s01]}:7401"
content_library: "$work/dp.content"
state_dir: "$work/dp.state"
address_file: "$work/dp.addr"
$(tls dp-S01.dp1)
EOF
start s01 dp "$build/dp/strata-dp" --config "$work/dp.conf"
wait_for 30 test -f "$work/provider.addr" && wait_for 30 test -f "$work/mp.addr" &&
  wait_for 30 test -f "$work/dp.addr" || { fail "the provider, MP or DP did not start"; exit 1; }
cat > "$work/stratactl.conf" <<EOF
server: "unix:$work/provider.sock"
ca_file: "$certs/ca.pem"
cert_file: "$certs/admin-alice.pem"
key_file: "$certs/admin-alice.key"
EOF
ctl() { in_ns cas "$build/provider/stratactl" --config "$work/stratactl.conf" "$@"; }
dp_online() { [ "$(sql cas "SELECT count(*) FROM site_systems WHERE role = 'dp' AND state = 'online'")" = 1 ]; }
wait_for 60 dp_online && pass "S01.dp1 attached (seen at the CAS)" || fail "S01.dp1 is not online at the CAS"

echo "== content: 2 MiB to S01's DP, S01 taking it from P01 at ${content_limit} B/s at most"
mkdir -p "$work/tools/bin"
printf '#!/bin/sh\necho "hello from a Strata package"\n' > "$work/tools/bin/hello"
chmod 755 "$work/tools/bin/hello"
head -c 2097152 /dev/urandom > "$work/tools/data.bin"
content_bytes=$(du -cb "$work/tools/bin/hello" "$work/tools/data.bin" | tail -1 | cut -f1)
ctl create package Tools --source "$work/tools" >/dev/null
ctl distribute package Tools --dp S01.dp1 >/dev/null
at_s01() { [ "$(sql s01 "SELECT count(*) FROM content_status WHERE package = 'Tools' AND state = 'installed' AND site_code = 'S01' AND location = 'site'")" -ge 1 ]; }
at_dp() { [ "$(sql cas "SELECT count(*) FROM content_status WHERE package = 'Tools' AND state = 'installed' AND location = 'S01.dp1'")" = 1 ]; }
# S01's transfer is timed from when its library starts on it (P01 takes it
# from the CAS first, on the bridge at full speed) to when it is installed.
s01_started() { [ "$(sql s01 "SELECT count(*) FROM content_status WHERE package = 'Tools' AND site_code = 'S01' AND location = 'site'")" -ge 1 ]; }
wait_for 120 s01_started || true
s01_start=$(now_ms)
if wait_for 240 at_s01; then
  s01_done=$(now_ms)
  content_s=$(awk "BEGIN { printf \"%.1f\", ($s01_done - $s01_start) / 1000 }")
  content_rate=$(awk "BEGIN { printf \"%.0f\", $content_bytes / (($s01_done - $s01_start) / 1000) }")
  pass "S01's library holds Tools: ${content_bytes} bytes over the WAN link in ${content_s} s (${content_rate} B/s)"
  # The limit is a ceiling: a burst the size of the limiter's bucket aside.
  awk "BEGIN { exit !($content_rate <= $content_limit * 1.15) }" &&
    pass "the transfer kept to S01's limit (${content_rate} <= ${content_limit} B/s, 15 % for the first burst)" ||
    fail "S01 took content at ${content_rate} B/s, over its limit of ${content_limit}"
else
  content_s=-1 content_rate=-1
  fail "Tools never reached S01's library"
  sql s01 "SELECT * FROM content_status" || true
fi
wait_for 60 at_dp && pass "S01.dp1 holds Tools (seen at the CAS)" || fail "S01.dp1 does not hold Tools"

echo "== an agent behind S01: registers, reports, installs an application deployed from the CAS"
token=$(ctl create enrollment-token multihost --valid-for 1d -o json | sed -n 's/.*"token": "\([^"]*\)".*/\1/p')
[ -n "$token" ] || { fail "no enrollment token"; exit 1; }
token_at_s01() { [ "$(sql s01 "SELECT count(*) FROM enrollment_tokens")" -ge 1 ]; }
wait_for 60 token_at_s01 || fail "the enrollment token did not reach S01"
mkdir -p "$work/agent"
agent_started=$(now_ms)
start agent agent "$build/agent/strata-agent" --mp "${name[s01]}:7301" --ca "$certs/ca.pem" \
  --state_dir "$work/agent" --token "$token" --hardware_id "multihost-agent-1" --hostname mh-agent1
inventory_at_cas() { [ "$(sql cas "SELECT count(*) FROM devices WHERE name = 'mh-agent1' AND inventory_seq > 0")" = 1 ]; }
if wait_for 180 inventory_at_cas; then
  agent_s=$(awk "BEGIN { printf \"%.1f\", ($(now_ms) - $agent_started) / 1000 }")
  pass "the agent registered at S01 and its inventory reached the CAS in ${agent_s} s ($(sql cas "SELECT count(*) FROM device_software s JOIN devices d ON d.id = s.device_id WHERE d.name = 'mh-agent1'") packages)"
else
  agent_s=-1
  fail "the agent's inventory did not reach the CAS"
fi
printf '#!/bin/sh\ntest -x "$STRATA_AGENT_DIR/apps/hello" && echo installed\n' > "$work/detect-hello.sh"
ctl create application Hello --content Tools --software-version 1.0 \
  --install 'mkdir -p "$STRATA_AGENT_DIR/apps" && cp bin/hello "$STRATA_AGENT_DIR/apps/"' \
  --uninstall 'rm -f "$STRATA_AGENT_DIR/apps/hello"' --detect-script "$work/detect-hello.sh" >/dev/null
ctl create collection "Branch agents" --query 'device.name = "mh-agent1"' >/dev/null
collected() { [ "$(sql cas "SELECT count(*) FROM collection_members WHERE collection = 'Branch agents'")" = 1 ]; }
wait_for 90 collected || fail "the agent did not join the collection"
deployed=$(now_ms)
ctl deploy application Hello --collection "Branch agents" >/dev/null
installed() {
  [ -x "$work/agent/apps/hello" ] &&
    ctl get deployment-status "Hello to Branch agents" | grep 'mh-agent1.*installed' >/dev/null
}
if wait_for 240 installed; then
  deploy_s=$(awk "BEGIN { printf \"%.1f\", ($(now_ms) - $deployed) / 1000 }")
  pass "the agent installed Hello from S01.dp1 and the CAS sees it installed (${deploy_s} s): $(in_ns agent "$work/agent/apps/hello")"
else
  deploy_s=-1
  fail "the deployment did not complete"
  ctl get deployment-status "Hello to Branch agents" || true
fi

echo
if [ $failures -ne 0 ]; then echo "multihost_test: $failures check(s) failed"; exit 1; fi
echo "bench multihost: link_kbit_s=$link_kbps relay_rtt_added_ms=150 lag_p50_ms=$lag_p50 lag_p99_ms=$lag_p99 lag_max_ms=$lag_max catchup_after_60s_cut_s=$catchup_s content_bytes=$content_bytes content_s=$content_s content_B_s=$content_rate content_limit_B_s=$content_limit content_vs_limit=$(awk "BEGIN { printf \"%.2f\", $content_rate / $content_limit }") content_vs_link=$(awk "BEGIN { printf \"%.2f\", $content_rate * 8 / ($link_kbps * 1000) }") agent_inventory_s=$agent_s deploy_s=$deploy_s"
