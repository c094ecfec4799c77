#!/usr/bin/env bash
# Side-by-side throughput, minidl against the PyTorch peer (scripts/pytorch_peer.py bench: the
# same models in Debian's python3-torch), batch 64, 2 threads, SGD with momentum, random images.
# Every configuration runs RUNS times (default 3), minidl and PyTorch interleaved; the table has
# medians and their ratios, training and inference (batch 1000, eval, no grad), and minidl's
# efficiency (training GFLOP/s over sgemm 2048^3 on the same threads, in the same run).
#   scripts/bench_vs_pytorch.sh [RUNS] [CONFIGS]
# CONFIGS: space-separated model:act:bn|nobn (default: every preset of the docs/performance.md table).
# Both frameworks use the same OpenBLAS kernels: minidl's own choice for this CPU (docs/design.md
# "OpenBLAS's kernels"), or MINIDL_BENCH_CORETYPE when set. Other flags for minidl (e.g. --no-fuse) go
# in MINIDL_BENCH_FLAGS. Writes the table to stdout and the raw runs to out/bench_vs_pytorch.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-3}"
configs="${2:-cnn:sigmoid:bn cnn:sigmoid:nobn cnn:relu:bn cnn:relu:nobn cnn:tanh:bn cnn:tanh:nobn mlp:sigmoid:bn mlp:sigmoid:nobn}"
[ -x build/minidl ] || scripts/build.sh > /dev/null
/usr/bin/python3 -c 'import torch' 2> /dev/null || { echo "error: needs python3-torch (apt-get install python3-torch)" >&2; exit 2; }
core="${MINIDL_BENCH_CORETYPE:-$(env -u OPENBLAS_CORETYPE ./build/minidl bench --steps 1 --warmup 0 --repeats 1 --infer-batch-size 1 --json | /usr/bin/python3 -c 'import sys,json; print(json.load(sys.stdin)["blas_core"])')}"
export OPENBLAS_CORETYPE="$core"
mkdir -p out
raw=out/bench_vs_pytorch.jsonl
: > "$raw"
for r in $(seq "$runs"); do
  for c in $configs; do
    IFS=: read -r model act bn <<< "$c"
    mflag=--no-bn; pflag=""
    # A step of the MLP takes well under a millisecond: time 2,000 of them, not 200.
    steps=200; [ "$model" = mlp ] && steps=2000
    [ "$bn" = bn ] && { mflag=--bn; pflag=--bn; }
    # shellcheck disable=SC2086
    ./build/minidl bench --model "$model" --act "$act" $mflag --threads 2 --batch-size 64 --steps "$steps" --repeats 1 \
      --json ${MINIDL_BENCH_FLAGS:-} | /usr/bin/python3 -c "import sys,json; d=json.load(sys.stdin); d['who']='minidl'; d['config']='$c'; print(json.dumps(d))" >> "$raw"
    # shellcheck disable=SC2086
    /usr/bin/python3 scripts/pytorch_peer.py bench --model "$model" --act "$act" $pflag --threads 2 --batch-size 64 \
      --steps "$steps" | /usr/bin/python3 -c "import sys,json; d=json.load(sys.stdin); d['who']='pytorch'; d['config']='$c'; print(json.dumps(d))" >> "$raw"
  done
done
/usr/bin/python3 - "$raw" "$core" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
configs = list(dict.fromkeys(r["config"] for r in rows))
med = lambda who, c, k: statistics.median(r[k] for r in rows if r["who"] == who and r["config"] == c)
n = len([r for r in rows if r["who"] == "minidl" and r["config"] == configs[0]])
print(f"medians of {n} interleaved runs; OPENBLAS_CORETYPE={sys.argv[2]} for both")
print(f"{'config':20} {'train minidl':>12} {'pytorch':>8} {'ratio':>6} | {'infer minidl':>12} {'pytorch':>8} {'ratio':>6} |"
      f" {'efficiency':>10} {'infer/train':>11}")
for c in configs:
    mt, pt = med("minidl", c, "train_images_per_s"), med("pytorch", c, "train_images_per_s")
    mi, pi = med("minidl", c, "infer_images_per_s"), med("pytorch", c, "infer_images_per_s")
    eff = med("minidl", c, "efficiency")
    ratio = statistics.median(r["infer_to_train"] for r in rows if r["who"] == "minidl" and r["config"] == c)
    print(f"{c:20} {mt:12.0f} {pt:8.0f} {mt/pt:6.2f} | {mi:12.0f} {pi:8.0f} {mi/pi:6.2f} | {100*eff:9.1f}% {ratio:11.2f}")
print("sgemm 2048^3 (minidl runs): median", round(statistics.median(r["sgemm_gflops"] for r in rows if r["who"] == "minidl")),
      "GFLOP/s;", rows[0].get("framework") or next(r["framework"] for r in rows if r["who"] == "pytorch"))
PY
