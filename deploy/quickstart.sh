#!/usr/bin/env bash
# Runs a whole local Strata hierarchy on this machine and shows it working:
#
#            CAS
#          /     \
#        P01     P02
#         |
#        S01
#
# Installs what is missing (apt-get), builds, starts a local PostgreSQL with
# one database per site, makes a development PKI, starts the four site
# servers (mutual TLS over unix sockets), writes a global setting at the CAS
# and a device at P01, shows where they arrived; then starts a management
# point at P01, P02 and S01 and one agent for each (state directories of
# their own, this machine's real inventory), and shows their devices and
# inventory at the CAS; then starts providers at the CAS, P01 and P02, makes
# "alice" the first Full Administrator, writes ~/.config/strata/stratactl.conf
# for her (unless a config not written by the quickstart is there), and uses
# stratactl: sites, devices, a collection evaluated at both primaries, and
# a client setting deployed to a collection reaching the agent at S01; then
# starts a distribution point (strata-dp + nginx) at P01, P02 and S01, makes
# a small package at the CAS, distributes it, shows its content status from
# the CAS and agent 3 downloading it from S01's DP, verified; then makes an
# application of that package at the CAS, deploys it to a collection of the
# three agents and watches its status at the CAS as each installs it; then
# writes a script, has a second administrator (bob) approve it, runs it on
# the agents and watches their output arrive, and asks the agents a live
# query (their listening sockets), rows printed as they answer; then
# publishes a runbook with an encrypted asset and runs it on a worker group
# at S01, its streams printed as they arrive (the secret masked).
# Prints every link's health every 10 seconds.
# Ctrl-C stops everything cleanly.
#
#   deploy/quickstart.sh          run until Ctrl-C
#   deploy/quickstart.sh --once   show it working, then stop (no waiting)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
once=0
case "${1:-}" in
  --once) once=1 ;;
  -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
  "") ;;
  *) echo "quickstart: unknown argument $1 (see --help)" >&2; exit 2 ;;
esac

deploy/build.sh build
source deploy/pg.sh
source deploy/hierarchy.sh
work=$(mktemp -d /tmp/strata-qs-XXXXXX)
chmod 755 "$work"
export STRATA_BUILD=$root/build STRATA_RUN=$work/run STRATA_PKI=$work/pki
mkdir -p "$STRATA_RUN"

ctl_conf=${XDG_CONFIG_HOME:-$HOME/.config}/strata/stratactl.conf
ctl_marker="# written by deploy/quickstart.sh"
stopping=0
shutdown() {
  [ $stopping -eq 1 ] && return
  stopping=1
  echo
  echo "== stopping: agents, management points, S01, P02, P01, CAS, then PostgreSQL"
  for a in 1 2 3; do site_stop "agent-$a"; done
  for d in S01.dp1 P02.dp1 P01.dp1; do dp_stop $d; done
  for p in P02 P01 CAS; do provider_stop $p; done
  if [ -f "$ctl_conf" ] && grep -q "$ctl_marker" "$ctl_conf"; then rm -f "$ctl_conf"; fi
  for m in S01.mp1 P02.mp1 P01.mp1; do mp_stop $m; done
  for s in S01 P02 P01 CAS; do site_stop $s; done
  pg_stop "$work/pg"
  rm -rf "$work"
  echo "== stopped"
}
trap shutdown EXIT
trap 'exit 0' INT TERM

echo "== PostgreSQL (one database per site) in $work/pg"
pg_start "$work/pg"
echo "== development PKI in $STRATA_PKI"
deploy/pki.sh "$STRATA_PKI" site/CAS site/P01 site/P02 site/S01 issuing/P01 issuing/P02 \
  issuing/S01 mp/P01.mp1 mp/P02.mp1 mp/S01.mp1 provider/CAS provider/P01 provider/P02 \
  dp/P01.dp1 dp/P02.dp1 dp/S01.dp1 admin/alice admin/bob >/dev/null
echo "== starting site servers (logs in $STRATA_RUN/*.log)"
site_start CAS cas && echo "   CAS  central administration site"
site_start P01 primary CAS && echo "   P01  primary site under CAS"
site_start P02 primary CAS && echo "   P02  primary site under CAS"
site_start S01 secondary P01 && echo "   S01  secondary site under P01"

all_linked() {
  site_status CAS cas | grep -Eq '^P01 +child +active' && site_status CAS cas | grep -Eq '^P02 +child +active' &&
    site_status S01 secondary | grep -Eq '^P01 +parent +active'
}
wait_until 60 all_linked || { echo "links did not come up; see $STRATA_RUN/*.log" >&2; exit 1; }

echo
echo "== global data flows down: a setting written at the CAS"
site_sql CAS "INSERT INTO global_settings (name, value) VALUES ('inventory.cycle', '7 days')" >/dev/null
echo "== site data flows up: a device discovered at P01"
site_sql P01 "INSERT INTO devices (id, name, site_code) VALUES (gen_random_uuid(), 'laptop-0042', 'P01')" >/dev/null
arrived() {
  [ "$(site_sql S01 "SELECT count(*) FROM global_settings WHERE name = 'inventory.cycle'")" = 1 ] &&
    [ "$(site_sql P02 "SELECT count(*) FROM global_settings WHERE name = 'inventory.cycle'")" = 1 ] &&
    [ "$(site_sql CAS "SELECT count(*) FROM devices WHERE name = 'laptop-0042'")" = 1 ]
}
wait_until 30 arrived || { echo "changes did not replicate; see $STRATA_RUN/*.log" >&2; exit 1; }
printf '   %-4s %-28s %s\n' SITE "setting inventory.cycle" "devices"
for s in CAS P01 P02 S01; do
  printf '   %-4s %-28s %s\n' "$s" \
    "$(site_sql $s "SELECT coalesce((SELECT value || ' (from ' || _origin || ')' FROM global_settings WHERE name = 'inventory.cycle'), '-')")" \
    "$(site_sql $s "SELECT coalesce(string_agg(name || ' (from ' || _origin || ')', ', '), '-') FROM devices")"
done
echo "   (a device is site data: it goes up to the CAS, never down or across)"

echo
echo "== providers (the admin API) at the CAS, P01 and P02; alice is the first Full Administrator"
provider_start CAS alice && echo "   CAS  $(provider_address CAS)"
provider_start P01 && echo "   P01  $(provider_address P01)"
provider_start P02 && echo "   P02  $(provider_address P02)"
ctl="$STRATA_BUILD/provider/stratactl --config $STRATA_RUN/stratactl.conf"
{
  echo "$ctl_marker (removed when it stops)"
  echo "server: \"$(provider_address CAS)\""
  echo "ca_file: \"$STRATA_PKI/ca.pem\""
  echo "cert_file: \"$STRATA_PKI/admin-alice.pem\""
  echo "key_file: \"$STRATA_PKI/admin-alice.key\""
} > "$STRATA_RUN/stratactl.conf"
if [ ! -f "$ctl_conf" ] || grep -q "$ctl_marker" "$ctl_conf"; then
  mkdir -p "$(dirname "$ctl_conf")" && cp "$STRATA_RUN/stratactl.conf" "$ctl_conf"
  echo "   wrote $ctl_conf: stratactl now works without arguments"
else
  echo "   kept your $ctl_conf; use: $ctl"
fi
echo "\$ stratactl get sites"
$ctl get sites | sed 's/^/   /'
echo
echo "== management points at P01, P02 and S01 (agents' contact; logs in $STRATA_RUN/*-mp1.log)"
for m in P01.mp1 P02.mp1 S01.mp1; do mp_start $m && echo "   $m  $(mp_address $m)"; done
echo "\$ stratactl create enrollment-token quickstart --valid-for 1d   (shown once; global data: every site accepts it)"
token=$($ctl create enrollment-token quickstart --valid-for 1d --description "quickstart agents" -o json |
  sed -n 's/.*"token": "\([^"]*\)".*/\1/p')
[ -n "$token" ] || { echo "stratactl did not make an enrollment token" >&2; exit 1; }
echo "== three agents on this machine (state in $STRATA_RUN/agent-N), one per MP"
# agent_start N MP: strata-agent as a service, its own identity and state.
agent_start() {
  local dir="$STRATA_RUN/agent-$1"
  mkdir -p "$dir"
  "$STRATA_BUILD/agent/strata-agent" --mp "$(mp_address "$2")" --ca "$STRATA_PKI/ca.pem" \
    --state_dir "$dir" --token "$token" --hardware_id "quickstart-agent-$1" \
    --hostname "$(hostname)-agent$1" >>"$STRATA_RUN/agent-$1.log" 2>&1 &
  echo $! > "$STRATA_RUN/agent-$1.pid"
  echo "   agent $1 -> $2"
}
tokens_everywhere() {
  for s in P01 P02 S01; do [ "$(site_sql $s "SELECT count(*) FROM enrollment_tokens")" = 1 ] || return 1; done
}
wait_until 30 tokens_everywhere || { echo "the enrollment token did not replicate" >&2; exit 1; }
agent_start 1 P01.mp1
agent_start 2 P02.mp1
agent_start 3 S01.mp1
inventories_at_cas() {
  [ "$(site_sql CAS "SELECT count(*) FROM devices WHERE inventory_seq > 0")" -ge 3 ]
}
wait_until 120 inventories_at_cas || { echo "agents' inventory did not reach the CAS; see $STRATA_RUN/agent-*.log" >&2; exit 1; }
echo "== the agents' devices and inventory, as the CAS sees them"
site_sql CAS "SELECT format('   %-22s site %s via %s  %s, %s kB RAM, %s packages, %s NICs',
    d.name, d.site_code, d.registered_via, o.pretty_name, m.total_kb,
    (SELECT count(*) FROM device_software s WHERE s.device_id = d.id),
    (SELECT count(*) FROM device_network n WHERE n.device_id = d.id))
  FROM devices d JOIN device_os o ON o.device_id = d.id JOIN device_memory m ON m.device_id = d.id
  WHERE d.inventory_seq > 0 ORDER BY d.name"
echo "   ($(dpkg-query -W -f='${db:Status-Abbrev}\n' | grep -c '^ii') packages installed here, per dpkg-query)"

echo "\$ stratactl create collection \"Has libssl3\" --query 'software.name = \"libssl3\"'"
$ctl create collection "Has libssl3" --query 'software.name = "libssl3"' | sed 's/^/   /'
evaluated() {
  [ "$(site_sql CAS "SELECT count(*) FROM collection_members WHERE collection = 'Has libssl3'")" = \
    "$(site_sql CAS "SELECT count(DISTINCT device_id) FROM device_software WHERE name = 'libssl3'")" ]
}
wait_until 60 evaluated || { echo "the collection was not evaluated; see $STRATA_RUN/p0*.log" >&2; exit 1; }
echo "\$ stratactl get collections   (evaluated at P01 and P02, members seen at the CAS)"
$ctl get collections | sed 's/^/   /'
echo "\$ stratactl get devices --filter 'memory.total_mb >= 1024'"
$ctl get devices --filter 'memory.total_mb >= 1024' | sed 's/^/   /'
echo "\$ stratactl create collection \"Branch agents\" --query 'device.name like \"%-agent3\"'"
$ctl create collection "Branch agents" --query "device.name like \"%-agent3\"" | sed 's/^/   /'
echo "\$ stratactl create client-setting \"Quick poll\" --policy-poll 10m --priority 1"
$ctl create client-setting "Quick poll" --policy-poll 10m --priority 1 | sed 's/^/   /'
echo "\$ stratactl deploy client-setting \"Quick poll\" --collection \"Branch agents\""
$ctl deploy client-setting "Quick poll" --collection "Branch agents" | sed 's/^/   /'
# P01 resolves agent 3's settings (its clients include S01's), the
# assignment replicates down to S01, whose MP sends the agent its new policy
# on its nudge channel (source=nudge: no fetch, no waiting for a poll).
agent3_polls_quickly() { grep -q 'agent.policy .*poll_s=600' "$STRATA_RUN/agent-3.log"; }
wait_until 60 agent3_polls_quickly || { echo "agent 3 did not get the client setting; see $STRATA_RUN/agent-3.log" >&2; exit 1; }
echo "   agent 3 (at S01) now: $(grep 'agent.policy ' "$STRATA_RUN/agent-3.log" | tail -n 1 | grep -o 'source=[a-z]* poll_s=[0-9]*')," \
  "agent 1 (at P01): $(grep 'agent.policy ' "$STRATA_RUN/agent-1.log" | tail -n 1 | grep -o 'poll_s=[0-9]*')"
echo "\$ stratactl get client-settings"
$ctl get client-settings | sed 's/^/   /'
echo "\$ stratactl get enrollment-tokens"
$ctl get enrollment-tokens | sed 's/^/   /'
# Each MP reports the agents holding its nudge channel within seconds of a change.
mps_report_agents() {
  [ "$(site_sql CAS "SELECT count(*) FROM site_systems WHERE role = 'mp' AND clients_connected >= 1")" = 3 ]
}
wait_until 30 mps_report_agents || echo "   (the MPs have not reported their agents yet)"
echo "\$ stratactl get site-systems   (every site's MPs as their site servers see them; CLIENTS: agents on its nudge channel)"
$ctl get site-systems | sed 's/^/   /'
echo "\$ stratactl get audit"
$ctl get audit | sed 's/^/   /'

echo
echo "== distribution points at P01, P02 and S01 (strata-dp + nginx; logs in $STRATA_RUN/*-dp1.log)"
for d in P01.dp1 P02.dp1 S01.dp1; do dp_start $d && echo "   $d  https via $(dp_address $d)"; done
dps_known() { [ "$(site_sql CAS "SELECT count(*) FROM site_systems WHERE role = 'dp' AND state = 'online'")" = 3 ]; }
wait_until 30 dps_known || { echo "the DPs did not attach; see $STRATA_RUN/*-dp1.log" >&2; exit 1; }
mkdir -p "$work/tools/bin" "$work/tools/doc"
printf '#!/bin/sh\necho "hello from a Strata package"\n' > "$work/tools/bin/hello"
chmod 755 "$work/tools/bin/hello"
head -c 1048576 /dev/urandom > "$work/tools/doc/data.bin"
echo "\$ stratactl create package Tools --source $work/tools"
$ctl create package Tools --source "$work/tools" --description "quickstart tools" | sed 's/^/   /'
echo "\$ stratactl create dp-group Branches --dp S01.dp1"
$ctl create dp-group Branches --dp S01.dp1 | sed 's/^/   /'
echo "\$ stratactl distribute package Tools --dp P01.dp1 --dp P02.dp1 --dp-group Branches"
$ctl distribute package Tools --dp P01.dp1 --dp P02.dp1 --dp-group Branches | sed 's/^/   /'
content_everywhere() {
  [ "$(site_sql CAS "SELECT count(*) FROM content_status WHERE package = 'Tools' AND state = 'installed'")" = 7 ]
}
wait_until 60 content_everywhere || echo "   (not every library holds it yet)"
echo "\$ stratactl get content-status Tools   (4 site libraries, 3 DPs, seen from the CAS)"
$ctl get content-status Tools | sed 's/^/   /'
echo "\$ strata-agent download Tools --dest $work/agent3-tools   (agent 3, at S01)"
"$STRATA_BUILD/agent/strata-agent" --mp "$(mp_address S01.mp1)" --ca "$STRATA_PKI/ca.pem" \
  --state_dir "$STRATA_RUN/agent-3" download Tools --dest "$work/agent3-tools" 2>>"$STRATA_RUN/agent-3.log" |
  sed 's/^/   /'
echo "   $("$work/agent3-tools/bin/hello")   (sha256 of doc/data.bin matches the source: $(
  [ "$(sha256sum < "$work/tools/doc/data.bin")" = "$(sha256sum < "$work/agent3-tools/doc/data.bin")" ] && echo yes || echo NO))"

echo
echo "== an application made at the CAS and deployed to the agents; its status from the CAS as each installs it"
printf '#!/bin/sh\ntest -x "$STRATA_AGENT_DIR/apps/hello" && echo installed\n' > "$work/detect-hello.sh"
echo "\$ stratactl create application Hello --content Tools --install 'mkdir -p \"\$STRATA_AGENT_DIR/apps\" && cp bin/hello \"\$STRATA_AGENT_DIR/apps/\"' --detect-script detect-hello.sh"
$ctl create application Hello --content Tools --software-version 1.0 \
  --install 'mkdir -p "$STRATA_AGENT_DIR/apps" && cp bin/hello "$STRATA_AGENT_DIR/apps/"' \
  --uninstall 'rm -f "$STRATA_AGENT_DIR/apps/hello"' --detect-script "$work/detect-hello.sh" |
  sed 's/^/   /'
echo "\$ stratactl create collection \"Quickstart agents\" --query 'device.name like \"%-agent_\"'"
$ctl create collection "Quickstart agents" --query "device.name like \"%-agent_\"" | sed 's/^/   /'
agents_collected() {
  [ "$(site_sql CAS "SELECT count(*) FROM collection_members WHERE collection = 'Quickstart agents'")" = 3 ]
}
wait_until 60 agents_collected || echo "   (the collection has not every agent yet)"
echo "\$ stratactl deploy application Hello --collection \"Quickstart agents\""
$ctl deploy application Hello --collection "Quickstart agents" | sed 's/^/   /'
echo "\$ stratactl get deployment-status \"Hello to Quickstart agents\" --watch"
timeout 120 $ctl get deployment-status "Hello to Quickstart agents" --watch 2>&1 | sed 's/^/   /' ||
  echo "   (not every agent has settled in 120 s; see $STRATA_RUN/agent-*.log)"
echo "   agent 2 runs it: $("$STRATA_RUN/agent-2/apps/hello" 2>&1)"

echo
echo "== a script approved by another administrator and run on the agents; a live query of their sockets"
bob="$STRATA_BUILD/provider/stratactl --server $(provider_address CAS) --ca $STRATA_PKI/ca.pem \
  --cert $STRATA_PKI/admin-bob.pem --key $STRATA_PKI/admin-bob.key"
echo "\$ stratactl set admin bob --role \"Script Approver\""
$ctl set admin bob --role "Script Approver" | sed 's/^/   /'
printf 'echo "up $(cut -d. -f1 /proc/uptime) s; hello, $who"\n' > "$work/uptime.sh"
echo "\$ stratactl create script uptime --body uptime.sh --param 'who:string:required:regex=^[a-z]+\$'"
$ctl create script uptime --body "$work/uptime.sh" --param 'who:string:required:regex=^[a-z]+$' |
  sed 's/^/   /'
echo "\$ stratactl approve script uptime   (as bob: an author may not approve their own script)"
$bob approve script uptime --comment "read it" | sed 's/^/   /'
echo "\$ stratactl run script uptime --collection \"Quickstart agents\" --param who=world --watch"
timeout 60 $ctl run script uptime --collection "Quickstart agents" --param who=world --watch 2>&1 |
  sed 's/^/   /' || echo "   (not every agent succeeded within 60 s; see $STRATA_RUN/agent-*.log)"
echo "\$ stratactl query 'socket.protocol like \"tcp%\"' --select device.name,socket.port,socket.process --collection \"Quickstart agents\""
$ctl query 'socket.protocol like "tcp%"' --select device.name,socket.port,socket.process \
  --collection "Quickstart agents" --wait 20 2>&1 | sed 's/^/   /'

echo
echo "== a runbook published at the CAS, run on a worker group at S01 (its agent), with an encrypted asset"
echo "\$ stratactl create worker-group remote --site S01 --collection \"Quickstart agents\""
$ctl create worker-group remote --site S01 --collection "Quickstart agents" | sed 's/^/   /'
echo "\$ stratactl create asset motd --value-file - --encrypted   (the value on standard input)"
echo "welcome to S01" | $ctl create asset motd --value-file - --encrypted | sed 's/^/   /'
printf 'echo "runbook on $(hostname) says: $STRATA_ASSET_motd, $who"\necho "step done" >> "$STRATA_VERBOSE_FILE"\n' > "$work/hello-rb.sh"
echo "\$ stratactl create runbook hello --body hello-rb.sh --param who:string:required --asset motd"
$ctl create runbook hello --body "$work/hello-rb.sh" --param who:string:required --asset motd | sed 's/^/   /'
echo "\$ stratactl publish runbook hello"
$ctl publish runbook hello | sed 's/^/   /'
echo "\$ stratactl start runbook hello --group remote --param who=world --watch"
timeout 60 $ctl start runbook hello --group remote --param who=world --watch 2>&1 |
  sed 's/^/   /' || echo "   (the job did not complete within 60 s; see $STRATA_RUN/agent-3.log)"

show_health() {
  echo
  echo "== link health $(date +%T)"
  site_status CAS cas; echo
  site_status P01 primary; echo
  site_status P02 primary; echo
  site_status S01 secondary
}
show_health
if [ $once -eq 1 ]; then
  exit 0
fi
echo
echo "== running; status again every 10 s. Try: psql \"host=$PGHOST port=$PGPORT user=postgres dbname=strata_p02\""
echo "   or $STRATA_BUILD/primary/strata-primary status --config $STRATA_RUN/p01.conf. Ctrl-C stops."
while true; do
  sleep 10
  show_health
done
