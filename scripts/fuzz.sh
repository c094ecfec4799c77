#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan) and runs each for SECONDS (default 200)
# from the seed corpora in tests/fuzz/corpus/. Findings (crash-*, leak-*, timeout-* files) are
# written to out/fuzz/; keep any as regression inputs in tests/fuzz/regressions/.
#   scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-200}"
source scripts/deps.sh
install_deps build fuzz
CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMINIDL_FUZZ=ON \
  -DMINIDL_BUILD_TESTS=OFF -DMINIDL_BUILD_APPS=OFF -DMINIDL_BUILD_BENCHMARKS=OFF > build-fuzz.configure.log
cmake --build build-fuzz -j "$(nproc)" --target fuzz_idx fuzz_safetensors fuzz_image
mkdir -p out/fuzz
status=0
for target in idx safetensors image; do
  work="out/fuzz/corpus-$target"
  mkdir -p "$work"
  echo "== fuzz_$target for ${seconds}s"
  # The regression inputs are replayed first (as part of the corpus); -rss_limit_mb bounds
  # memory so that a giant allocation is a finding, not a hang.
  (cd out/fuzz && ASAN_OPTIONS=detect_leaks=1 ../../build-fuzz/fuzz/fuzz_$target -max_total_time="$seconds" \
      -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 "../../$work" "../../tests/fuzz/corpus/$target" \
      $( [ -d "../../tests/fuzz/regressions/$target" ] && echo "../../tests/fuzz/regressions/$target" ) \
      2>&1 | tail -n 12) || status=1
done
exit $status
