# Sourced by tests/run.sh, bench scripts and deploy/quickstart.sh: start and
# stop a throwaway PostgreSQL 15 server in a directory of its own.
#   pg_start DIR [durable]   -> exports PGHOST (socket dir), PGPORT, PGUSER, STRATA_PG
#   pg_stop DIR
# The server runs with wal_level = logical: site servers read their changes
# from the WAL (logical decoding), and refuse to start without it.
# Runs the server as the postgres user when invoked as root (PostgreSQL
# refuses to run as root). The socket lives in a short path under /tmp.

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}

_pg_as() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

pg_start() {
  local dir=$1 mode=${2:-fast}
  mkdir -p "$dir"
  local sock
  sock=$(mktemp -d /tmp/stpg-XXXXXX)
  if [ "$(id -u)" -eq 0 ]; then
    chown postgres "$dir" "$sock"
  fi
  chmod 755 "$sock"
  _pg_as "$PG_BIN/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --no-instructions >"$dir/initdb.log" 2>&1 || {
    cat "$dir/initdb.log" >&2; return 1; }
  local port=$(( 20000 + RANDOM % 20000 ))
  # wal_level=logical: site servers read changes from the WAL (one slot per link).
  local opts="-c listen_addresses='' -c unix_socket_directories='$sock' -p $port -c max_connections=300 -c shared_buffers=256MB"
  opts="$opts -c wal_level=logical -c max_replication_slots=64 -c max_wal_senders=64"
  if [ "$mode" = "durable" ]; then
    opts="$opts -c fsync=on -c synchronous_commit=on"
  else
    # Test data is throwaway: no fsync keeps the suite fast on slow disks.
    opts="$opts -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
  fi
  _pg_as "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 -o "$opts" start >/dev/null || {
    cat "$dir/server.log" >&2; return 1; }
  echo "$sock" > "$dir/socket_dir"
  export PGHOST=$sock PGPORT=$port PGUSER=postgres
  export STRATA_PG="host=$sock port=$port user=postgres dbname=postgres"
}

pg_stop() {
  local dir=$1
  [ -d "$dir/data" ] || return 0
  _pg_as "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
  [ -f "$dir/socket_dir" ] && rm -rf "$(cat "$dir/socket_dir")"
  rm -rf "$dir"
}
