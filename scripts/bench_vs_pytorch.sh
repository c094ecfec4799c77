#!/usr/bin/env bash
# Side-by-side training throughput, minidl vs the PyTorch peer (../shared/peers/torch_cnn.py,
# Debian's python3-torch), same model, batch 64, 2 threads, sigmoid CNN, SGD with momentum.
# Runs each configuration RUNS times (default 3), interleaved, and prints medians and ratios.
#   scripts/bench_vs_pytorch.sh [RUNS] [MNIST_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-3}"
mnist="${2:-data/mnist}"
peer=../shared/peers/torch_cnn.py
[ -x build/minidl ] || scripts/build.sh > /dev/null
[ -f "$peer" ] || { echo "error: $peer not found" >&2; exit 2; }
[ -f "$mnist/train-images-idx3-ubyte" ] || scripts/get_mnist.sh "$mnist"
/usr/bin/python3 -c 'import torch' 2> /dev/null || { echo "error: needs python3-torch (apt-get install python3-torch)" >&2; exit 2; }
tmp="$(mktemp)"
trap 'rm -f "$tmp"' EXIT
for r in $(seq "$runs"); do
  for bn in --no-bn --bn; do
    ./build/minidl bench $bn --threads 2 --batch-size 64 --steps 200 --repeats 1 --json \
      | python3 -c "import sys,json; d=json.load(sys.stdin); print('minidl', '$bn', d['train_images_per_s'], d['blas_core'])" >> "$tmp"
    torch_bn=""; [ "$bn" = --bn ] && torch_bn=--bn
    /usr/bin/python3 "$peer" "$mnist" bench $torch_bn --threads 2 --batch 64 --steps 200 \
      | python3 -c "import sys,json; d=json.load(sys.stdin); print('pytorch', '$bn', d['images_per_s'], d['version'])" >> "$tmp"
  done
done
python3 - "$tmp" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
print(f"{'config':8} {'minidl img/s':>14} {'pytorch img/s':>14} {'ratio':>7}   (medians of {len(rows)//4} runs)")
for bn in ("--no-bn", "--bn"):
    m = statistics.median(float(r[2]) for r in rows if r[0] == "minidl" and r[1] == bn)
    p = statistics.median(float(r[2]) for r in rows if r[0] == "pytorch" and r[1] == bn)
    print(f"{bn[2:]:8} {m:14.0f} {p:14.0f} {m/p:7.2f}")
cores = {r[3] for r in rows if r[0] == "minidl"}
print("minidl BLAS core:", ", ".join(sorted(cores)), "| pytorch", {r[3] for r in rows if r[0] == "pytorch"}.pop())
PY
