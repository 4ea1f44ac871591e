# Sourced by bench/deploy/run.sh and bench/live/run.sh: the hierarchy they
# measure (start_hierarchy, stop_bench, ctl), and CLIENTS simulated
# agents (bench/clientsim) in one simulator per MP — 40 % at P01.mp1, 40 % at
# P02.mp1, 20 % at S01.mp1 — commands through a FIFO each (as
# bench/mp/run.sh), and the helpers that drive them. Needs work,
# STRATA_BUILD, STRATA_PKI, CLIENTS, CONCURRENCY, the sim_pids and sim_fds
# arrays (the caller's cleanup closes and stops them) and mp_address
# (deploy/hierarchy.sh); the enrollment token is bench-token.

# The benchmark hierarchy, each site on a throwaway PostgreSQL server of its
# own (as real sites; deploy/hierarchy.sh remembers which) with durable
# commits: CAS <- P01 <- S01, CAS <- P02, an MP at each of P01, P02 and S01 (no
# registration rate limit), a provider at the CAS with the administrator
# "bench" (ctl below), and the enrollment token bench-token at every site.
start_hierarchy() {
  printf 'register_per_source_per_minute: -1\nregister_per_minute: -1\n' > "$work/mp.conf"
  export STRATA_MP_FLAGS="--config $work/mp.conf"
  deploy/pki.sh "$STRATA_PKI" site/CAS site/P01 site/P02 site/S01 issuing/P01 issuing/P02 \
    issuing/S01 mp/P01.mp1 mp/P02.mp1 mp/S01.mp1 provider/CAS admin/bench >/dev/null
  pg_start "$work/pg-cas" durable
  echo "postgres (one server per site): fsync=$(psql -X -d postgres -tAc 'SHOW fsync') synchronous_commit=$(psql -X -d postgres -tAc 'SHOW synchronous_commit')"
  site_start CAS cas
  pg_start "$work/pg-p01" durable
  site_start P01 primary CAS
  pg_start "$work/pg-p02" durable
  site_start P02 primary CAS
  pg_start "$work/pg-s01" durable
  site_start S01 secondary P01
  local mp s
  for mp in P01.mp1 P02.mp1 S01.mp1; do mp_start $mp; done
  provider_start CAS bench
  add_enrollment_token CAS bench-token
  for s in P01 P02 S01; do
    wait_until 120 sql_is $s "SELECT count(*) FROM enrollment_tokens" 1
  done
}

# Stops the simulators and the hierarchy (for the caller's EXIT trap).
stop_bench() {
  local fd pid mp s
  for fd in "${sim_fds[@]:-}"; do [ -n "$fd" ] && eval "exec $fd>&-"; done
  for pid in "${sim_pids[@]:-}"; do [ -n "$pid" ] && { kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; }; done
  for mp in P01.mp1 P02.mp1 S01.mp1; do mp_stop $mp; done
  provider_stop CAS
  for s in S01 P01 P02 CAS; do site_stop $s; done
  for s in s01 p02 p01 cas; do pg_stop "$work/pg-$s"; done
}

# stratactl as the administrator "bench", at the CAS's provider.
ctl() {
  "$STRATA_BUILD/provider/stratactl" --server "$(provider_address CAS)" --ca "$STRATA_PKI/ca.pem" \
    --cert "$STRATA_PKI/admin-bench.pem" --key "$STRATA_PKI/admin-bench.key" --timeout 120 "$@"
}

# Conditions for wait_until (evaluated on every look, not once):
sql_is() { [ "$(site_sql "$1" "$2")" = "$3" ]; }                  # SITE SQL VALUE
awaiting() { { grep -h '^awaiting' "$work"/sim*.out 2>/dev/null || true; } | wc -l; }
awaiting_at_least() { [ "$(awaiting)" -ge "$1" ]; }               # N simulators waiting

start_fleet() {
  p01=$(( CLIENTS * 4 / 10 )); p02=$(( CLIENTS * 4 / 10 )); s01=$(( CLIENTS - p01 - p02 ))
  local k=0 first=0 spec mp n fd
  for spec in "P01.mp1 $p01" "P02.mp1 $p02" "S01.mp1 $s01"; do
    read -r mp n <<<"$spec"
    mkfifo "$work/sim$k.in"
    "$STRATA_BUILD/bench/clientsim/strata-clientsim" --mp "$(mp_address "$mp")" \
      --ca "$STRATA_PKI/ca.pem" --token bench-token --clients "$n" --first "$first" \
      --concurrency "$CONCURRENCY" < "$work/sim$k.in" > "$work/sim$k.out" 2> "$work/sim$k.log" &
    sim_pids+=($!)
    exec {fd}>"$work/sim$k.in"
    sim_fds+=("$fd")
    first=$(( first + n )); k=$(( k + 1 ))
  done
  sims=$k
}
results() { grep -hv '^awaiting' "$work"/sim*.out | awk -v c="$1" '$1 == c' ; }
sim_all() {  # CMD... -> runs it on every simulator, prints their result lines
  local before
  before=$(results "$1" | wc -l)
  for fd in "${sim_fds[@]}"; do echo "$*" >&"$fd"; done
  sim_results "$1" $(( before + sims ))
}
sim_results() {  # CMD COUNT -> waits for COUNT result lines of CMD, prints each simulator's last
  local end
  end=$(( $(date +%s) + 3600 ))
  until [ "$(results "$1" | wc -l)" -ge "$2" ]; do
    [ "$(date +%s)" -ge "$end" ] && { echo "simulators did not finish '$1'" >&2; exit 1; }
    for pid in "${sim_pids[@]}"; do
      kill -0 "$pid" 2>/dev/null || { echo "a simulator died:" >&2; tail -5 "$work"/sim*.log >&2; exit 1; }
    done
    sleep 0.2
  done
  for f in "$work"/sim*.out; do grep -v '^awaiting' "$f" | awk -v c="$1" '$1 == c' | tail -n 1; done
}
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p"; }
sum() { field "$1" | awk '{ s += $1 } END { printf "%.15g\n", s }'; }
calc() { awk "BEGIN { printf \"%.2f\", $1 }"; }
now_ms() { date +%s%3N; }

