# Sourced by deploy/quickstart.sh and bench scripts: run site servers of a
# local hierarchy as background processes, each with its own database.
# Needs deploy/pg.sh's server started (STRATA_PG, PGHOST, PGPORT) and:
# (a site's database lives on the server PGHOST/PGPORT name when the site
# first starts; it is remembered in $STRATA_RUN/<code>.pg, so sites may each
# have a server of their own, as real sites do)
#   STRATA_BUILD  build directory with the binaries
#   STRATA_RUN    run directory (configs, sockets, logs); short path
#   STRATA_PKI    PKI directory made by deploy/pki.sh

# site_start CODE TYPE [PARENT_CODE]   -> starts strata-TYPE for CODE
site_start() {
  local code=$1 type=$2 parent=${3:-} lower
  lower=$(echo "$code" | tr 'A-Z' 'a-z')
  local db="strata_$lower" PGHOST=$PGHOST PGPORT=$PGPORT
  [ -f "$STRATA_RUN/$lower.pg" ] && read -r PGHOST PGPORT < "$STRATA_RUN/$lower.pg"
  echo "$PGHOST $PGPORT" > "$STRATA_RUN/$lower.pg"
  psql -X -q -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1 ||
    psql -X -q -d postgres -c "CREATE DATABASE $db" >/dev/null
  local conf="$STRATA_RUN/$lower.conf"
  {
    echo "site_code: \"$code\""
    echo "database: \"host=$PGHOST port=$PGPORT user=postgres dbname=$db\""
    echo "listen_address: \"unix:$STRATA_RUN/$lower.sock\""
    [ -n "$parent" ] && echo "parent_address: \"unix:$STRATA_RUN/$(echo "$parent" | tr 'A-Z' 'a-z').sock\""
    echo "address_file: \"$STRATA_RUN/$lower.addr\""
    echo "content_library: \"$STRATA_RUN/$lower.content\""
    echo "tls { ca_file: \"$STRATA_PKI/ca.pem\" cert_file: \"$STRATA_PKI/site-$code.pem\" key_file: \"$STRATA_PKI/site-$code.key\" }"
    # The hierarchy's key for runbook assets (deploy/pki.sh makes it).
    [ -f "$STRATA_PKI/assets.key" ] && echo "asset_key_file: \"$STRATA_PKI/assets.key\""
    [ -n "${STRATA_REPLICATION:-}" ] && echo "replication { $STRATA_REPLICATION }"
    # A site with an issuing CA (deploy/pki.sh DIR issuing/CODE) registers clients.
    if [ "$type" != cas ] && [ -f "$STRATA_PKI/issuing-$code.pem" ]; then
      echo "issuing_ca { cert_file: \"$STRATA_PKI/issuing-$code.pem\" key_file: \"$STRATA_PKI/issuing-$code.key\" }"
    fi
    echo "${STRATA_SITE_EXTRA:-}"
  } > "$conf"
  rm -f "$STRATA_RUN/$lower.addr"
  # STRATA_SITE_FLAGS: extra flags for every site server (e.g. --verbose).
  # shellcheck disable=SC2086
  "$STRATA_BUILD/$type/strata-$type" --config "$conf" ${STRATA_SITE_FLAGS:-} >>"$STRATA_RUN/$lower.log" 2>&1 &
  echo $! > "$STRATA_RUN/$lower.pid"
  _wait_serving "$lower" 600 "site $code"
}

# _wait_serving LOWER TENTHS WHAT -> waits until LOWER.addr is written (the
# process serves), or it died, or TENTHS tenths of a second went by.
_wait_serving() {
  local i
  for i in $(seq 1 "$2"); do
    [ -f "$STRATA_RUN/$1.addr" ] && return 0
    kill -0 "$(cat "$STRATA_RUN/$1.pid")" 2>/dev/null || break
    sleep 0.1
  done
  echo "$3 did not start; its log:" >&2
  tail -20 "$STRATA_RUN/$1.log" >&2
  return 1
}

# site_stop CODE   -> SIGTERM and wait
site_stop() {
  local lower pid
  lower=$(echo "$1" | tr 'A-Z' 'a-z')
  [ -f "$STRATA_RUN/$lower.pid" ] || return 0
  pid=$(cat "$STRATA_RUN/$lower.pid")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -f "$STRATA_RUN/$lower.pid"
}

# mp_start NAME   -> starts strata-mp NAME (e.g. P01.mp1) for site NAME%%.*,
# listening on unix:$STRATA_RUN/<name>.sock; needs mp-NAME.pem in the PKI.
mp_start() {
  local name=$1 site lower
  site=$(echo "${name%%.*}" | tr 'A-Z' 'a-z')
  lower=$(echo "$name" | tr 'A-Z.' 'a-z-')
  mkdir -p "$STRATA_RUN/$lower.spool"
  rm -f "$STRATA_RUN/$lower.addr"
  # STRATA_MP_FLAGS: extra flags (e.g. --verbose).
  # shellcheck disable=SC2086
  "$STRATA_BUILD/mp/strata-mp" --name "$name" --site "unix:$STRATA_RUN/$site.sock" \
    --listen "unix:$STRATA_RUN/$lower.sock" --spool_dir "$STRATA_RUN/$lower.spool" \
    --address_file "$STRATA_RUN/$lower.addr" --tls_ca "$STRATA_PKI/ca.pem" \
    --tls_cert "$STRATA_PKI/mp-$name.pem" --tls_key "$STRATA_PKI/mp-$name.key" ${STRATA_MP_FLAGS:-} \
    >>"$STRATA_RUN/$lower.log" 2>&1 &
  echo $! > "$STRATA_RUN/$lower.pid"
  _wait_serving "$lower" 200 "management point $name"
}

# mp_stop NAME   -> SIGTERM and wait
mp_stop() { site_stop "$(echo "$1" | tr 'A-Z.' 'a-z-')"; }

# mp_address NAME   -> the address agents dial
mp_address() { echo "unix:$STRATA_RUN/$(echo "$1" | tr 'A-Z.' 'a-z-').sock"; }

# dp_start NAME [LISTEN]   -> starts strata-dp NAME (e.g. P01.dp1) for site
# NAME%%.*, nginx listening on LISTEN (default unix:$STRATA_RUN/<name>.sock;
# 127.0.0.1:0 for any free TCP port); needs dp-NAME.pem in the PKI.
# STRATA_DP_EXTRA: more configuration lines (pull_from: "…").
dp_start() {
  local name=$1 listen=${2:-} site lower
  site=$(echo "${name%%.*}" | tr 'A-Z' 'a-z')
  lower=$(echo "$name" | tr 'A-Z.' 'a-z-')
  listen=${listen:-unix:$STRATA_RUN/$lower.sock}
  rm -f "$STRATA_RUN/$lower.addr"
  {
    echo "name: \"$name\""
    echo "site_address: \"unix:$STRATA_RUN/$site.sock\""
    echo "listen_address: \"$listen\""
    echo "content_library: \"$STRATA_RUN/$lower.content\""
    echo "state_dir: \"$STRATA_RUN/$lower.state\""
    echo "address_file: \"$STRATA_RUN/$lower.addr\""
    echo "tls { ca_file: \"$STRATA_PKI/ca.pem\" cert_file: \"$STRATA_PKI/dp-$name.pem\" key_file: \"$STRATA_PKI/dp-$name.key\" }"
    echo "${STRATA_DP_EXTRA:-}"
  } > "$STRATA_RUN/$lower.conf"
  "$STRATA_BUILD/dp/strata-dp" --config "$STRATA_RUN/$lower.conf" >>"$STRATA_RUN/$lower.log" 2>&1 &
  echo $! > "$STRATA_RUN/$lower.pid"
  _wait_serving "$lower" 200 "distribution point $name"
}

# dp_stop NAME   -> SIGTERM (the DP stops its nginx) and wait
dp_stop() { site_stop "$(echo "$1" | tr 'A-Z.' 'a-z-')"; }

# dp_address NAME   -> where clients download from
dp_address() { tr -d '\n' < "$STRATA_RUN/$(echo "$1" | tr 'A-Z.' 'a-z-').addr"; }

# provider_start CODE [BOOTSTRAP_ADMIN]   -> starts strata-provider for site CODE
# (a CAS or primary) on unix:$STRATA_RUN/<code>-provider.sock; needs
# provider-CODE.pem in the PKI. BOOTSTRAP_ADMIN (a certificate CN) becomes a
# Full Administrator if the hierarchy has none yet.
provider_start() {
  local code=$1 admin=${2:-} lower PGHOST=$PGHOST PGPORT=$PGPORT
  lower=$(echo "$code" | tr 'A-Z' 'a-z')
  [ -f "$STRATA_RUN/$lower.pg" ] && read -r PGHOST PGPORT < "$STRATA_RUN/$lower.pg"
  rm -f "$STRATA_RUN/$lower-provider.addr"
  "$STRATA_BUILD/provider/strata-provider" --database "host=$PGHOST port=$PGPORT user=postgres dbname=strata_$lower" \
    --listen "unix:$STRATA_RUN/$lower-provider.sock" --address_file "$STRATA_RUN/$lower-provider.addr" \
    --site "unix:$STRATA_RUN/$lower.sock" \
    --tls_ca "$STRATA_PKI/ca.pem" --tls_cert "$STRATA_PKI/provider-$code.pem" \
    --tls_key "$STRATA_PKI/provider-$code.key" ${admin:+--bootstrap_admin "$admin"} \
    --asset_key_file "$STRATA_PKI/assets.key" \
    >>"$STRATA_RUN/$lower-provider.log" 2>&1 &
  echo $! > "$STRATA_RUN/$lower-provider.pid"
  _wait_serving "$lower-provider" 200 "provider $code"
}

# provider_stop CODE   -> SIGTERM and wait
provider_stop() { site_stop "$1-provider"; }

# provider_address CODE   -> the address stratactl dials
provider_address() { echo "unix:$STRATA_RUN/$(echo "$1" | tr 'A-Z' 'a-z')-provider.sock"; }

# add_enrollment_token CODE TOKEN   -> lets agents register with TOKEN
# (global data: written at CODE, it reaches every site)
add_enrollment_token() {
  site_sql "$1" "INSERT INTO enrollment_tokens (token_sha256, description)
    VALUES (encode(sha256(convert_to('$2', 'UTF8')), 'hex'), 'local hierarchy')
    ON CONFLICT DO NOTHING" >/dev/null
}

# site_status CODE TYPE   -> prints `strata-TYPE status`
site_status() {
  local lower
  lower=$(echo "$1" | tr 'A-Z' 'a-z')
  "$STRATA_BUILD/$2/strata-$2" status --config "$STRATA_RUN/$lower.conf"
}

# site_sql CODE SQL   -> runs SQL on the site's database, unaligned output
site_sql() {
  local lower PGHOST=$PGHOST PGPORT=$PGPORT
  lower=$(echo "$1" | tr 'A-Z' 'a-z')
  [ -f "$STRATA_RUN/$lower.pg" ] && read -r PGHOST PGPORT < "$STRATA_RUN/$lower.pg"
  psql -X -q -d "strata_$lower" -tAc "$2"
}

# wait_until SECONDS CMD...   -> retries CMD every POLL_S (0.05) s until it succeeds
wait_until() {
  local limit=$1; shift
  local end=$(( $(date +%s) + limit ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -ge "$end" ] && return 1
    sleep "${POLL_S:-0.05}"
  done
}
