#!/usr/bin/env bash
# Installs what is missing, builds minidl and runs the whole test suite with ctest.
#   scripts/test.sh              Release build in build/
#   scripts/test.sh --sanitize   AddressSanitizer + UndefinedBehaviorSanitizer build in build-asan/
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--sanitize" ]; then
  export MINIDL_BUILD_DIR=build-asan
  scripts/build.sh -DMINIDL_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMINIDL_BUILD_BENCHMARKS=OFF
  export ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
else
  export MINIDL_BUILD_DIR=build
  scripts/build.sh
fi
cd "$MINIDL_BUILD_DIR"
ctest --output-on-failure -j "$(nproc)"
