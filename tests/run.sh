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

source deploy/pg.sh
pgdir=$(mktemp -d /tmp/strata-test-pg-XXXXXX)
chmod 755 "$pgdir"
trap 'pg_stop "$pgdir"' EXIT
pg_start "$pgdir"
export STRATA_TEST_PG="$STRATA_PG"

cd "$build"
ctest --output-on-failure --timeout 900 "${ctest_args[@]}"
