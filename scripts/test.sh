#!/usr/bin/env bash
# Installs what is missing, builds minidl and runs the whole test suite with ctest.
#   scripts/test.sh              Release build in build/
#   scripts/test.sh --sanitize   AddressSanitizer + UndefinedBehaviorSanitizer build in build-asan/
set -euo pipefail
cd "$(dirname "$0")/.."
# python3-torch: the PyTorch peer's schema test (it skips, saying so, where torch is missing)
source scripts/deps.sh
install_deps torch || echo "test.sh: python3-torch could not be installed; the PyTorch peer test will say it skipped"
if [ "${1:-}" = "--sanitize" ]; then
  export MINIDL_BUILD_DIR=build-asan
  # Without MPI: LeakSanitizer reports OpenMPI's own allocations at exit (the MPI tests say they skipped).
  scripts/build.sh -DMINIDL_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMINIDL_BUILD_BENCHMARKS=OFF -DMINIDL_MPI=OFF
  export ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
else
  export MINIDL_BUILD_DIR=build
  scripts/build.sh
fi
cd "$MINIDL_BUILD_DIR"
ctest --output-on-failure -j "$(nproc)"
