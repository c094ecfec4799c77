#!/usr/bin/env bash
# Regenerates every result table and figure of docs/ from scratch: minidl and its PyTorch
# peer over 5 seeds (lr sweep, steps to 95 % at lr 0.05), the BN paper's Figure 1 in two setups,
# and BN vs GroupNorm vs LayerNorm. Results land in out/; plots are copied to docs/; the
# tables are printed (and kept in out/tables.md).
#   scripts/reproduce.sh [STAGE ...]   stages: sweep compare fig1 norms studies depth mpi fashion tables
#                                      (default: all)
# Running time on 2 cores: see docs/results.md "Reproducing the results". Every figure is
# stamped with its stage, the commit and the CPU (scripts/plot.py).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
install_deps build demo
command -v /usr/bin/python3 > /dev/null && /usr/bin/python3 -c 'import torch' 2> /dev/null || install_deps torch
[ -x build/minidl ] || scripts/build.sh
scripts/get_mnist.sh > /dev/null
stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(sweep compare fig1 norms studies depth mpi fashion tables)
minidl="${MINIDL:-./build/minidl}"  # MINIDL=path runs another binary (e.g. a copy while you rebuild)
peer="/usr/bin/python3 scripts/pytorch_peer.py"
seeds=5
mkdir -p out docs
stamp() { echo "[$(date +%H:%M:%S)] $*" >&2; }
for stage in "${stages[@]}"; do
  export MINIDL_FIGURE_SOURCE="scripts/reproduce.sh $stage"
  case "$stage" in
    sweep)
      stamp "minidl sweep, $seeds seeds"
      "$minidl" sweep --data data/mnist --lrs 0.01,0.05,0.2,1,5 --seeds $seeds --quiet --out out/sweep > out/sweep.txt
      stamp "PyTorch sweep, $seeds seeds"
      $peer sweep --data data/mnist --lrs 0.01,0.05,0.2,1,5 --seeds $seeds --quiet --out out/pytorch-sweep > out/pytorch-sweep.txt
      /usr/bin/python3 scripts/plot.py sweep out/sweep out/pytorch-sweep
      cp out/sweep/sweep.png docs/sweep.png
      ;;
    compare)
      for lr in 0.05; do
        stamp "minidl compare lr $lr, $seeds seeds"
        "$minidl" compare --data data/mnist --lr $lr --eval-every 50 --seeds $seeds --quiet --out out/compare-lr$lr > out/compare-lr$lr.txt
        stamp "PyTorch compare lr $lr, $seeds seeds"
        $peer compare --data data/mnist --lr $lr --eval-every 50 --seeds $seeds --quiet --out out/pytorch-compare-lr$lr > out/pytorch-compare-lr$lr.txt
        /usr/bin/python3 scripts/plot.py compare out/compare-lr$lr out/pytorch-compare-lr$lr
        cp out/compare-lr$lr/compare.png docs/compare_lr${lr/./}.png
      done
      ;;
    fig1)
      stamp "paper-fig1, PyTorch's uniform init and momentum 0.9"
      "$minidl" paper-fig1 --data data/mnist --quiet --out out/fig1 > out/fig1.txt
      cp out/fig1/fig1.png docs/fig1.png
      stamp "paper-fig1, Gaussian init (std 0.1) and plain SGD"
      "$minidl" paper-fig1 --data data/mnist --init normal:0.1 --momentum 0 --quiet --out out/fig1-gauss > out/fig1-gauss.txt
      cp out/fig1-gauss/fig1.png docs/fig1_gauss.png
      ;;
    norms)
      scripts/norm_compare.sh 3 > out/norms.txt
      for d in out/norms/b64_lr0.05 out/norms/b4_lr0.05; do
        /usr/bin/python3 scripts/plot.py compare "$d"
        cp "$d/compare.png" "docs/norms_$(basename "$d" | tr -d .).png"
      done
      ;;
    studies)
      for study in detached noisy ics landscape init; do
        stamp "study $study, 3 seeds"
        "$minidl" study $study --data data/mnist --seeds 3 --quiet --out out/study-$study > out/study-$study.txt
        cp out/study-$study/study.png docs/study_$study.png
      done
      ;;
    depth)
      # Studies II (docs/studies.md): depth, init-gradient, skipinit, weight-decay at their
      # defaults (3 seeds), with PyTorch beside them where the peer measures the same thing.
      for study in depth init-gradient skipinit weight-decay; do
        stamp "study $study, 3 seeds"
        "$minidl" study $study --data data/mnist --quiet --out out/study-$study > out/study-$study.txt
        cp out/study-$study/study.png "docs/study_${study//-/_}.png"
      done
      stamp "PyTorch: gradient norms at init of the same arms, seeds and batch"
      $peer init-gradient --from out/study-init-gradient/study.json --quiet --out out/pytorch-init-gradient > out/pytorch-init-gradient.txt
      stamp "PyTorch: the depth study's sigmoid MLPs, sweep per depth"
      for depth in 2 4 8 16 32; do
        spec="flatten$(for _ in $(seq "$depth"); do printf ' linear(100) bn sigmoid'; done) linear(10)"
        $peer sweep --data data/mnist --arch "$spec" --lrs 0.05,0.5,2 --steps 1000 --eval-every 100 --seeds 3 --quiet \
          --out out/pytorch-depth/d$depth > out/pytorch-depth-d$depth.txt
      done
      stamp "PyTorch: the skipinit study at 16 blocks (BN and none; SkipInit)"
      lin="linear(64)"
      bn_spec="flatten $lin bn relu$(for _ in $(seq 16); do printf ' res(%s bn relu %s bn) relu' "$lin" "$lin"; done) linear(10)"
      si_spec="flatten $lin relu$(for _ in $(seq 16); do printf ' res(%s relu %s gain(0)) relu' "$lin" "$lin"; done) linear(10)"
      $peer sweep --data data/mnist --arch "$bn_spec" --act relu --lrs 0.01,0.03,0.1,0.3,1,3 --steps 500 --seeds 3 --quiet \
        --out out/pytorch-skipinit/bn_none > out/pytorch-skipinit-bn_none.txt
      $peer sweep --data data/mnist --arch "$si_spec" --act relu --arms bn --lrs 0.01,0.03,0.1,0.3,1,3 --steps 500 --seeds 3 \
        --quiet --out out/pytorch-skipinit/skipinit > out/pytorch-skipinit-skipinit.txt
      stamp "PyTorch: the weight-decay study's BN CNN, conv2's norm with and without decay"
      for wd in 0 0.005; do
        $peer compare --data data/mnist --model cnn --act relu --steps 1500 --eval-every 200 --seeds 3 --arms bn \
          --weight-decay $wd --track-norm conv2.weight --quiet --out out/pytorch-weight-decay/wd$wd > out/pytorch-weight-decay-wd$wd.txt
      done
      ;;
    mpi)
      stamp "BN with a small per-rank batch: local BN vs SyncBN, 3 seeds"
      MINIDL="$minidl" scripts/mpi_small_batch.sh 3 --mpi > out/mpi.txt
      /usr/bin/python3 scripts/plot.py mpi out/mpi
      cp out/mpi/mpi.png docs/mpi_small_batch.png
      ;;
    tables)
      {
        echo "## lr sweep"; /usr/bin/python3 scripts/tables.py sweep out/sweep out/pytorch-sweep
        for lr in 0.05; do echo; echo "## compare lr $lr"; /usr/bin/python3 scripts/tables.py compare out/compare-lr$lr out/pytorch-compare-lr$lr; done
        echo; echo "## normalizations"; /usr/bin/python3 scripts/tables.py norms out/norms
        echo; echo "## small per-rank batches"; /usr/bin/python3 scripts/tables.py mpi out/mpi
      } | tee out/tables.md
      ;;
    fashion)
      # A small residual net with and without BN on Fashion-MNIST (Debian's dataset-fashion-mnist):
      # 5 epochs, crop+flip, cosine schedule, SGD with weight decay; 3 seeds, minidl and PyTorch.
      fashion=/usr/share/datasets/fashion-mnist
      install_deps fashion
      arch="conv(16,3,pad=1) bn relu maxpool(2) res(conv(16,3,pad=1) bn relu conv(16,3,pad=1) bn) relu res(conv(32,3,stride=2,pad=1) bn relu conv(32,3,pad=1) bn) relu globalavgpool flatten linear(10)"
      flags=(--data "$fashion" --arch "$arch" --epochs 5 --lr 0.05 --weight-decay 5e-4 --lr-schedule cosine --augment crop:2,flip --eval-every epoch --seeds 3 --quiet)
      stamp "minidl compare, residual net on Fashion-MNIST, 3 seeds"
      "$minidl" compare "${flags[@]}" --out out/fashion-res > out/fashion-res.txt
      stamp "PyTorch compare, the same"
      $peer compare "${flags[@]}" --out out/pytorch-fashion-res > out/pytorch-fashion-res.txt
      /usr/bin/python3 scripts/plot.py compare out/fashion-res out/pytorch-fashion-res
      cp out/fashion-res/compare.png docs/fashion_res.png
      ;;
    *) echo "reproduce.sh: unknown stage '$stage' (sweep compare fig1 norms studies depth mpi fashion tables)" >&2; exit 1 ;;
  esac
done
stamp "done"
