#!/usr/bin/env bash
# The main job, from a fresh machine: installs what is missing, builds minidl (Release),
# fetches MNIST, then trains the sigmoid CNN with and without BatchNorm
#   1. compare: 3 seeds, each arm of a seed from the same weights and batches, lr 0.05, one
#      epoch -> out/compare/
#   2. sweep:   lr 0.05, 0.2 and 1, 2 seeds each, one epoch per run -> out/sweep/
# and prints the tables (median [min-max] over seeds, "k of n") and where the plots are. About
# 6 minutes on 2 cores from a fresh clone. scripts/reproduce.sh runs the full 5-seed experiments of docs/, with
# PyTorch beside minidl.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
install_deps build demo
scripts/build.sh
scripts/get_mnist.sh data/mnist
minidl=./build/minidl
"$minidl" bench --bn --steps 50 --repeats 1 | sed -n '1,6p'
echo
echo "== 1/2 compare: BN vs no BN, lr 0.05, one epoch, 3 seeds =="
"$minidl" compare --data data/mnist --act sigmoid --lr 0.05 --epochs 1 --eval-every 50 --seeds 3 --quiet --out out/compare
echo
echo "== 2/2 sweep: learning-rate tolerance, one epoch per run, 2 seeds =="
"$minidl" sweep --data data/mnist --act sigmoid --epochs 1 --lrs 0.05,0.2,1 --seeds 2 --out out/sweep --quiet
echo
echo "Plots: out/compare/compare.png and out/sweep/sweep.png (data beside them: CSV and JSON)"
