#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan) and runs each for SECONDS (default 200)
# from the seed corpora in tests/fuzz/corpus/. Findings (crash-*, leak-*, timeout-* files) are
# written to out/fuzz/; keep any as regression inputs in tests/fuzz/regressions/.
#   scripts/fuzz.sh [SECONDS]
# FUZZ_JOBS=2 runs two targets at a time (one core each; libFuzzer runs one process per target);
# FUZZ_TARGETS="cifar image_folder" runs only those (default: all seven).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-200}"
source scripts/deps.sh
install_deps build fuzz
CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMINIDL_FUZZ=ON \
  -DMINIDL_BUILD_TESTS=OFF -DMINIDL_BUILD_APPS=OFF -DMINIDL_BUILD_BENCHMARKS=OFF > build-fuzz.configure.log
cmake --build build-fuzz -j "$(nproc)" --target fuzz_idx fuzz_safetensors fuzz_image fuzz_spec fuzz_lr_schedule fuzz_cifar fuzz_image_folder
mkdir -p out/fuzz
jobs="${FUZZ_JOBS:-1}"
export OMP_NUM_THREADS=1
run_target() {
  local target=$1 work="out/fuzz/corpus-$1"
  mkdir -p "$work"
  # The regression inputs are replayed first (as part of the corpus); -rss_limit_mb bounds
  # memory so that a giant allocation is a finding, not a hang.
  local rc=0
  (cd out/fuzz && ASAN_OPTIONS=detect_leaks=1 ../../build-fuzz/fuzz/fuzz_$target -max_total_time="$seconds" \
      -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 "../../$work" "../../tests/fuzz/corpus/$target" \
      $( [ -d "../../tests/fuzz/regressions/$target" ] && echo "../../tests/fuzz/regressions/$target" ) \
      > "log-$target.txt" 2>&1) || rc=1
  { echo "== fuzz_$target for ${seconds}s (exit $rc)"; tail -n 12 "out/fuzz/log-$target.txt"; } > "out/fuzz/summary-$target.txt"
  return $rc
}
status=0
pids=()
for target in ${FUZZ_TARGETS:-image idx safetensors spec lr_schedule cifar image_folder}; do
  run_target "$target" &
  pids+=($!)
  if [ ${#pids[@]} -ge "$jobs" ]; then
    wait "${pids[0]}" || status=1
    pids=("${pids[@]:1}")
  fi
done
for p in "${pids[@]}"; do wait "$p" || status=1; done
for target in ${FUZZ_TARGETS:-image idx safetensors spec lr_schedule cifar image_folder}; do cat "out/fuzz/summary-$target.txt"; done
exit $status
