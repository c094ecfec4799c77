#!/usr/bin/env bash
# Throughput over architectures, minidl beside the same torch.nn.Sequential (scripts/minidl_spec.py
# builds it from the spec; the presets are the peer's own Cnn and Mlp): batch 64, 2 threads, SGD
# with momentum on random images, inference batch 1000 in eval mode without grad. Each run times
# every architecture once, minidl then PyTorch, and the table holds the medians over RUNS runs
# (default 5) with minidl's share of the FMA peak it measured in the same run.
#   scripts/bench_archs.sh [RUNS] [NAME ...]       (names: the first column of the list below)
# Writes the table to stdout (markdown) and the raw runs to out/bench_archs.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-5}"
shift || true
[ -x build/minidl ] || scripts/build.sh > /dev/null
/usr/bin/python3 -c 'import torch' 2> /dev/null || { echo "error: needs python3-torch (apt-get install python3-torch)" >&2; exit 2; }

# name | minidl model flags (a preset) or a spec | input shape | timed training steps
archs=(
  "cnn-bn|--model cnn --act relu --bn|1,28,28|200"
  "cnn|--model cnn --act relu --no-bn|1,28,28|200"
  "cnn-bn-spec|conv(16,5,pad=2) bn relu maxpool(2) conv(32,5,pad=2) bn relu maxpool(2) flatten linear(128) bn relu linear(10)|1,28,28|200"
  "mlp-bn (BN paper)|--model mlp --act sigmoid --bn|1,28,28|2000"
  "mlp|--model mlp --act sigmoid --no-bn|1,28,28|2000"
  "vgg-bn|conv(32,3,pad=1) bn relu conv(32,3,pad=1) bn relu maxpool(2) conv(64,3,pad=1) bn relu conv(64,3,pad=1) bn relu maxpool(2) flatten linear(10)|1,28,28|50"
  "strided|conv(32,3,stride=2,pad=1) bn relu conv(64,3,stride=2,pad=1) bn relu flatten linear(10)|1,28,28|200"
  "lenet5|conv(6,5) tanh maxpool(2) conv(16,5) tanh maxpool(2) flatten linear(120) tanh linear(84) tanh linear(10)|1,28,28|500"
  "groupnorm-cnn|conv(16,5,pad=2) groupnorm(4) relu maxpool(2) conv(32,5,pad=2) groupnorm(4) relu maxpool(2) flatten linear(128) relu linear(10)|1,28,28|100"
  "layernorm-mlp|flatten linear(100) layernorm sigmoid linear(100) layernorm sigmoid linear(100) layernorm sigmoid linear(10)|1,28,28|2000"
  "resnet-small|conv(16,3,pad=1) bn relu res(conv(16,3,pad=1) bn relu conv(16,3,pad=1) bn) relu maxpool(2) res(conv(32,3,pad=1) bn relu conv(32,3,pad=1) bn) relu maxpool(2) flatten linear(10)|1,28,28|50"
  "cifar-vgg-bn|conv(32,3,pad=1) bn relu conv(32,3,pad=1) bn relu maxpool(2) conv(64,3,pad=1) bn relu conv(64,3,pad=1) bn relu maxpool(2) flatten linear(10)|3,32,32|30"
)
wanted=("$@")
mkdir -p out
raw=out/bench_archs.jsonl
: > "$raw"
tag() { /usr/bin/python3 -c "import sys,json; d=json.load(sys.stdin); d['who']='$1'; d['name']=sys.argv[1]; print(json.dumps(d))" "$2"; }
for r in $(seq "$runs"); do
  for entry in "${archs[@]}"; do
    IFS='|' read -r name model shape steps <<< "$entry"
    if [ ${#wanted[@]} -gt 0 ] && ! printf '%s\n' "${wanted[@]}" | grep -qxF "$name"; then continue; fi
    echo "run $r/$runs: $name" >&2
    if [ "${model#--}" != "$model" ]; then
      # shellcheck disable=SC2086
      ./build/minidl bench $model --threads 2 --batch-size 64 --steps "$steps" --repeats 1 --json | tag minidl "$name" >> "$raw"
      IFS=' ' read -r -a mf <<< "$model"
      pflags=(--model "${mf[1]}" --act "${mf[3]}")
      [ "${mf[4]}" = --bn ] && pflags+=(--bn)
      /usr/bin/python3 scripts/pytorch_peer.py bench "${pflags[@]}" --threads 2 --batch-size 64 --steps "$steps" |
        tag pytorch "$name" >> "$raw"
    else
      ./build/minidl bench --arch "$model" --input-shape "$shape" --threads 2 --batch-size 64 --steps "$steps" --repeats 1 \
        --json | tag minidl "$name" >> "$raw"
      /usr/bin/python3 scripts/pytorch_peer.py bench --arch "$model" --input-shape "$shape" --threads 2 --batch-size 64 \
        --steps "$steps" | tag pytorch "$name" >> "$raw"
    fi
  done
done
/usr/bin/python3 - "$raw" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
names = list(dict.fromkeys(r["name"] for r in rows))
def med(who, n, k):
    return statistics.median(r[k] for r in rows if r["who"] == who and r["name"] == n)
runs = len([r for r in rows if r["who"] == "minidl" and r["name"] == names[0]])
m0 = next(r for r in rows if r["who"] == "minidl")
print(f"Medians of {runs} interleaved runs; 2 threads, batch 64 (inference 1000); minidl kernels {m0['isa']}, "
      f"FMA peak {statistics.median(r['fma_peak_gflops'] for r in rows if r['who'] == 'minidl'):.0f} GFLOP/s "
      f"({m0['fma_peak_isa']}, median of the runs); {next(r['framework'] for r in rows if r['who'] == 'pytorch')}.\n")
print("| model | input | train img/s minidl | PyTorch | ratio | % of FMA peak | infer img/s minidl | PyTorch | ratio | % of FMA peak | infer/train |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for n in names:
    mt, pt = med("minidl", n, "train_images_per_s"), med("pytorch", n, "train_images_per_s")
    mi, pi = med("minidl", n, "infer_images_per_s"), med("pytorch", n, "infer_images_per_s")
    shape = "x".join(str(v) for v in next(r["input_shape"] for r in rows if r["who"] == "minidl" and r["name"] == n))
    print(f"| {n} | {shape} | {mt:,.0f} | {pt:,.0f} | {mt/pt:.2f} | {med('minidl', n, 'train_pct_of_fma_peak'):.0f} % | "
          f"{mi:,.0f} | {pi:,.0f} | {mi/pi:.2f} | {med('minidl', n, 'infer_pct_of_fma_peak'):.0f} % | {mi/mt:.2f} |")
PY
