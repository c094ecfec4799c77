#!/usr/bin/env bash
# BN vs GroupNorm vs LayerNorm vs no normalization on the reference CNN (sigmoid, SGD momentum
# 0.9, one epoch of MNIST), at lr 0.05 and 1.0, batch 64 and batch 4, over seeds: the table of
# docs/results.md "BatchNorm, GroupNorm, LayerNorm". Writes out/norms/b{B}_lr{LR}/ and prints the table.
#   scripts/norm_compare.sh [SEEDS]   (default 3)
# A configuration whose summary.json exists is kept (delete out/norms to start over).
# THREADS=1 runs on one core (e.g. beside another job; OMP_WAIT_POLICY=PASSIVE is then set).
set -euo pipefail
cd "$(dirname "$0")/.."
seeds="${1:-3}"
minidl=./build/minidl
[ -x "$minidl" ] || scripts/build.sh
scripts/get_mnist.sh > /dev/null
cnn() {  # cnn NORM_CONV NORM_FC: the reference CNN with a normalization after each conv and fc1
  echo "conv(16,5,pad=2) $1 sigmoid maxpool(2) conv(32,5,pad=2) $1 sigmoid maxpool(2) flatten linear(128) $2 sigmoid linear(10)"
}
mkdir -p out/norms
[ -n "${THREADS:-}" ] && export OMP_WAIT_POLICY=PASSIVE
for batch in 64 4; do
  # one evaluation per 6,400 images at batch 64 and per 4,000 at batch 4
  every=$([ "$batch" = 64 ] && echo 100 || echo 1000)
  for lr in 0.05 1.0; do
    out="out/norms/b${batch}_lr${lr}"
    if [ -f "$out/summary.json" ] && /usr/bin/python3 -c "import json,sys; s=json.load(open('$out/summary.json')); sys.exit(len(s['runs']) != 4 * len(s['seeds']))"; then
      echo "== batch $batch, lr $lr: kept $out (complete)" >&2; continue
    fi
    echo "== batch $batch, lr $lr -> $out" >&2
    "$minidl" compare --data data/mnist --epochs 1 --batch-size "$batch" --lr "$lr" --eval-every "$every" \
      --seeds "$seeds" --quiet --out "$out" ${THREADS:+--threads "$THREADS"} \
      --arm "bn=$(cnn bn bn)" --arm "gn=$(cnn 'groupnorm(8)' 'groupnorm(8)')" \
      --arm "ln=$(cnn layernorm layernorm)" --arm "none=$(cnn '' '')" > "$out.txt" 2>&1 || { cat "$out.txt"; exit 1; }
  done
done
/usr/bin/python3 scripts/tables.py norms out/norms
