#!/usr/bin/env bash
# BN with a small per-rank batch (docs/distributed.md): full MNIST, sigmoid CNN, lr 0.05,
# one epoch, 4 ranks, per-rank batch B in 2 4 8 16 32, local BN vs SyncBN, over SEEDS seeds.
#   scripts/mpi_small_batch.sh [SEEDS (default 3)] [--mpi]
# By the equalities ctest checks (tests/test_mpi.cpp), 4 ranks x B with local BN train exactly as
# one process with batch 4B and --ghost-batch B --ghost-stats first, and 4 ranks x B with
# --sync-bn exactly as one process with batch 4B; this script runs those one-process forms (4
# processes on 2 cores would only add oversubscription). With --mpi it also runs the B = 8 arms
# through mpirun -np 4 for seed 0, to show the two forms agree on the full data set.
# Writes out/mpi/runs.csv and prints the table; scripts/plot.py mpi out/mpi draws the figure.
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=3
with_mpi=0
for a in "$@"; do
  case "$a" in
    --mpi) with_mpi=1 ;;
    *) seeds="$a" ;;
  esac
done
minidl="${MINIDL:-./build/minidl}"
[ -x "$minidl" ] || scripts/build.sh
scripts/get_mnist.sh > /dev/null
out=out/mpi
mkdir -p "$out/logs"
ranks=4
common=(train --data data/mnist --model cnn --bn --lr 0.05 --eval-every 0 --quiet)
csv="$out/runs.csv"
[ -f "$csv" ] || echo "form,arm,per_rank_batch,ranks,seed,final_test_acc" > "$csv"
stamp() { echo "[$(date +%H:%M:%S)] $*" >&2; }
done_already() { grep -q "^$1,$2,$3,$ranks,$4," "$csv"; }
accuracy() { sed -n 's/.*test accuracy \([0-9.]*\)%.*/\1/p' "$1"; }

for b in 2 4 8 16 32; do
  for seed in $(seq 0 $((seeds - 1))); do
    g=$((ranks * b))
    if ! done_already equivalent local "$b" "$seed"; then
      stamp "local BN: $ranks x $b (batch $g, ghost $b), seed $seed"
      "$minidl" "${common[@]}" --batch-size $g --ghost-batch $b --ghost-stats first --seed "$seed" > "$out/logs/local_b${b}_s$seed.txt"
      echo "equivalent,local,$b,$ranks,$seed,$(accuracy "$out/logs/local_b${b}_s$seed.txt")" >> "$csv"
    fi
    if ! done_already equivalent sync "$b" "$seed"; then
      stamp "SyncBN: $ranks x $b (batch $g), seed $seed"
      "$minidl" "${common[@]}" --batch-size $g --seed "$seed" > "$out/logs/sync_b${b}_s$seed.txt"
      echo "equivalent,sync,$b,$ranks,$seed,$(accuracy "$out/logs/sync_b${b}_s$seed.txt")" >> "$csv"
    fi
  done
done

if [ "$with_mpi" = 1 ]; then
  mpi=(env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpiexec --oversubscribe -np $ranks)
  for arm in local sync; do
    if ! done_already mpirun "$arm" 8 0; then
      stamp "mpirun -np $ranks, batch 8, $arm BN, seed 0"
      flag=(); [ "$arm" = sync ] && flag=(--sync-bn)
      "${mpi[@]}" "$minidl" "${common[@]}" --batch-size 8 --threads 1 "${flag[@]}" --seed 0 > "$out/logs/mpirun_${arm}_b8_s0.txt"
      echo "mpirun,$arm,8,$ranks,0,$(accuracy "$out/logs/mpirun_${arm}_b8_s0.txt")" >> "$csv"
    fi
  done
fi

/usr/bin/python3 scripts/tables.py mpi "$out"
