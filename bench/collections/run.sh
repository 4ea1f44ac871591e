#!/usr/bin/env bash
# Collection evaluation benchmark (issue 4): a primary's database on a
# throwaway PostgreSQL with durable commits, DEVICES simulated devices with
# realistic inventory (80-220 packages each, popular packages on most
# devices) and COLLECTIONS query-rule collections of varied selectivity (see
# bench_collections.cc for what each figure measures).
# Last line: bench collections: devices=… collections=… full_eval_s=…
#   incremental_eval_ms_p99=… sql_baseline_s=… full_vs_sql=…
# Env: DEVICES (100000), COLLECTIONS (200), SAMPLES (200).
set -euo pipefail
cd "$(dirname "$0")/../.."
deploy/build.sh build
source deploy/pg.sh
work=$(mktemp -d /tmp/stc-XXXXXX)
chmod 755 "$work"
trap 'pg_stop "$work/pg"; rm -rf "$work"' EXIT
pg_start "$work/pg" durable
psql -X -q -d postgres -c "CREATE DATABASE bench" >/dev/null
build/bench/collections/strata-bench-collections --db "${STRATA_PG/dbname=postgres/dbname=bench}" \
  --devices "${DEVICES:-100000}" --collections "${COLLECTIONS:-200}" --samples "${SAMPLES:-200}"
