#!/usr/bin/env bash
# Builds Strata and runs every test against a throwaway PostgreSQL 15.
#   tests/run.sh              build (build/) and run all tests
#   tests/run.sh --sanitize   build with AddressSanitizer + UBSan (build-asan/)
#   tests/run.sh -R REGEX     run only the tests matching REGEX (passed to ctest)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

sanitize=0
ctest_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --sanitize) sanitize=1 ;;
    -h|--help) sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) ctest_args+=("$1") ;;
  esac
  shift
done

build=build
cmake_args=()
if [ $sanitize -eq 1 ]; then
  build=build-asan
  cmake_args+=(-DSTRATA_SANITIZE=ON)
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
fi
deploy/build.sh "$build" "${cmake_args[@]}"

# The independent-client test drives the provider with grpc-js (Node, from
# the npm registry): installed here, once per lock file.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "tests: installing nodejs and npm"
  sudo=; [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    nodejs npm >/dev/null
fi
node_dir="$root/$build/node"
if ! cmp -s tests/node/package-lock.json "$node_dir/package-lock.json" ||
   [ ! -d "$node_dir/node_modules" ]; then
  rm -rf "$node_dir" && mkdir -p "$node_dir"
  cp tests/node/package.json tests/node/package-lock.json "$node_dir/"
  (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error) || {
    echo "tests: npm ci failed (the npm registry must be reachable)" >&2; exit 1; }
fi
export STRATA_NODE_MODULES="$node_dir/node_modules"

source deploy/pg.sh
pgdir=$(mktemp -d /tmp/strata-test-pg-XXXXXX)
chmod 755 "$pgdir"
trap 'pg_stop "$pgdir"' EXIT
pg_start "$pgdir"
export STRATA_TEST_PG="$STRATA_PG"
export STRATA_TEST_PGDATA="$pgdir/data"  # for a test that restarts the server

cd "$build"
ctest --output-on-failure --timeout 900 "${ctest_args[@]}"
