#!/usr/bin/env bash
# The main job, from a fresh machine: installs what is missing, builds minidl (Release),
# fetches MNIST, then trains the sigmoid CNN with and without BatchNorm
#   1. compare: same seed, same batches, lr 0.05, one epoch -> out/compare/
#   2. sweep:   lr 0.01 .. 5, one epoch each, with and without BN -> out/sweep/
# and prints the tables and where the plots are. About 5 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
install_deps build demo
scripts/build.sh
scripts/get_mnist.sh data/mnist
minidl=./build/minidl
"$minidl" bench --bn --steps 50 --repeats 1 | sed -n '1,6p'
echo
echo "== 1/2 compare: BN vs no BN, lr 0.05, one epoch =="
"$minidl" compare --data data/mnist --act sigmoid --lr 0.05 --epochs 1 --eval-every 50 --out out/compare
echo
echo "== 2/2 sweep: learning-rate tolerance, one epoch per run =="
"$minidl" sweep --data data/mnist --act sigmoid --epochs 1 --lrs 0.01,0.05,0.2,1,5 --out out/sweep --quiet
echo
echo "Plots: out/compare/compare.png and out/sweep/sweep.png (data beside them: CSV and JSON)"
