#!/usr/bin/env bash
# A long training run watched from outside: resident memory (VmRSS, sampled every 0.5 s from
# /proc) and throughput (images per training second between evaluation points of the --log
# CSV) over STEPS steps. Passes when the median RSS of the last 10 % of the run is within 5 % of
# that of the first 10 % (the first 5 % of the wall time, loading and warm-up, left out); reports
# the throughput of the first and last 10 % of the intervals and their spread.
#   scripts/long_run.sh [STEPS] [OUT_DIR] [-- extra train flags]
# Defaults: 20000 steps of --model cnn --bn, batch 64, on MNIST (scripts/get_mnist.sh), an
# evaluation every 500 steps; out/long_run/{rss.csv,log.csv,summary.json}. Exit 0 when RSS is
# flat, 1 when it is not, 2 when something is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
steps="${1:-20000}"
out="${2:-out/long_run}"
shift $(( $# >= 2 ? 2 : $# ))
[ "${1:-}" = "--" ] && shift
extra=("$@")
[ -x build/minidl ] || scripts/build.sh > /dev/null
data="${MINIDL_DATA:-data/mnist}"
[ -f "$data/train-images-idx3-ubyte" ] || [ -f "$data/train-images-idx3-ubyte.gz" ] || scripts/get_mnist.sh "$data" > /dev/null
mkdir -p "$out"
rm -f "$out/rss.csv" "$out/log.csv"

args=(train --data "$data" --model cnn --bn --batch-size 64 --steps "$steps" --eval-every 500 --quiet
      --log "$out/log.csv" "${extra[@]}")
echo "minidl ${args[*]}"
./build/minidl "${args[@]}" > "$out/train.txt" 2>&1 &
pid=$!
echo "time,rss_kb" > "$out/rss.csv"
while kill -0 "$pid" 2> /dev/null; do
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2> /dev/null || true)
  [ -n "$rss" ] && echo "$(date +%s.%N),$rss" >> "$out/rss.csv"
  sleep 0.5
done
status=0
wait "$pid" || status=$?
cat "$out/train.txt"
[ "$status" = 0 ] || { echo "error: training exited with status $status" >&2; exit 2; }

/usr/bin/python3 - "$out" "$steps" << 'EOF'
import csv, json, statistics, sys
out, steps = sys.argv[1], int(sys.argv[2])
rows = list(csv.DictReader(open(f"{out}/rss.csv")))
t0 = float(rows[0]["time"])
rss = [(float(r["time"]) - t0, int(r["rss_kb"])) for r in rows]
log = list(csv.DictReader(open(f"{out}/log.csv")))
# Throughput per interval between evaluation points (training time only, evaluation excluded).
rates = []
for a, b in zip(log, log[1:]):
    dt = float(b["seconds"]) - float(a["seconds"])
    if dt > 0:
        rates.append((int(b["images"]) - int(a["images"])) / dt)
# The first 5 % of the wall time (loading the data, the first steps) is warm-up.
t_end = rss[-1][0]
steady = [r for t, r in rss if t >= 0.05 * t_end]
n = max(1, len(steady) // 10)
first, last = steady[:n], steady[-n:]
rss_first, rss_last = statistics.median(first), statistics.median(last)
k = max(1, len(rates) // 10)
summary = {
    "steps": steps,
    "wall_seconds": round(t_end, 1),
    "rss_samples": len(rss),
    "rss_first_10pct_mb": round(rss_first / 1024, 1),
    "rss_last_10pct_mb": round(rss_last / 1024, 1),
    "rss_max_mb": round(max(r for _, r in rss) / 1024, 1),
    "rss_change_pct": round(100 * (rss_last - rss_first) / rss_first, 2),
    "images_per_s_intervals": [round(r) for r in rates],
    "images_per_s_first_10pct": round(statistics.median(rates[:k])) if rates else None,
    "images_per_s_last_10pct": round(statistics.median(rates[-k:])) if rates else None,
    "images_per_s_min_max": [round(min(rates)), round(max(rates))] if rates else None,
}
summary["rss_flat"] = abs(summary["rss_change_pct"]) <= 5.0
json.dump(summary, open(f"{out}/summary.json", "w"), indent=2)
print(json.dumps({k: v for k, v in summary.items() if k != "images_per_s_intervals"}, indent=2))
sys.exit(0 if summary["rss_flat"] else 1)
EOF
