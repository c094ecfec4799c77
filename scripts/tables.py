#!/usr/bin/python3
"""Markdown tables for docs/ from the JSON files minidl (and scripts/pytorch_peer.py) write.

  tables.py norms DIR              DIR/b{B}_lr{LR}/summary.json -> arms x (batch, lr)
  tables.py sweep DIR [PEER_DIR]   DIR/sweep.json (+ the PyTorch peer's) -> lr x arm, side by side
  tables.py compare DIR [PEER_DIR] DIR/summary.json (+ peer) -> arm rows, steps to 95 % and final accuracy
  tables.py mpi DIR                DIR/runs.csv (scripts/mpi_small_batch.sh) -> per-rank batch x local/sync BN
  tables.py study NAME DIR         DIR/study.json + study.csv (minidl study NAME) -> headline numbers
"""
import csv
import statistics
import glob
import json
import os
import re
import sys


def pct(s):
    if s is None or s.get("median") is None:
        return "-"
    return f"{100 * s['median']:.2f} [{100 * s['min']:.2f}-{100 * s['max']:.2f}]"


def acc_cell(e):
    cell = pct(e["final_test_acc"])
    if e["diverged"]:
        cell += f", diverged {e['diverged']} of {e['n']}"
    return cell


def steps_cell(e, level="0.95"):
    t = e["steps_to"][level]
    if t.get("measured", 1) == 0:
        return "not measured (evaluated only at the end)"
    if t["median"] is None:
        return f"not reached (0 of {e['n']})"
    return f"{t['median']:g} [{t['min']:g}-{t['max']:g}] ({t['reached']} of {e['n']})"


def norms(d):
    cells = {}
    arms = []
    n = None
    for path in sorted(glob.glob(os.path.join(d, "b*_lr*/summary.json"))):
        m = re.search(r"b(\d+)_lr([0-9.]+)", path)
        batch, lr = int(m.group(1)), float(m.group(2))
        s = json.load(open(path))
        n = len(s["seeds"])
        for e in s["summary"]:
            if e["arm"] not in arms:
                arms.append(e["arm"])
            cells[(e["arm"], batch, lr)] = e
    cols = sorted({(b, lr) for (_, b, lr) in cells}, key=lambda c: (-c[0], c[1]))
    print(f"Final test accuracy %, median [min-max] over {n} seeds, one epoch:\n")
    print("| arm | " + " | ".join(f"batch {b}, lr {lr:g}" for b, lr in cols) + " |")
    print("|---|" + "---|" * len(cols))
    for arm in arms:
        print(f"| {arm} | " + " | ".join(acc_cell(cells[(arm, b, lr)]) if (arm, b, lr) in cells else "" for b, lr in cols) + " |")
    print(f"\nSteps to 95 % test accuracy, median [min-max] of the seeds that reached it (k of {n}):\n")
    print("| arm | " + " | ".join(f"batch {b}, lr {lr:g}" for b, lr in cols) + " |")
    print("|---|" + "---|" * len(cols))
    for arm in arms:
        print(f"| {arm} | " + " | ".join(steps_cell(cells[(arm, b, lr)]) if (arm, b, lr) in cells else "" for b, lr in cols) + " |")


def sweep(d, peer=None):
    mine = json.load(open(os.path.join(d, "sweep.json")))
    theirs = json.load(open(os.path.join(peer, "sweep.json"))) if peer else None
    n = len(mine["seeds"])
    print(f"Final test accuracy %, median [min-max] over {n} seeds, one epoch:\n")
    head = "| lr | minidl no BN | minidl BN |" + (" PyTorch no BN | PyTorch BN |" if theirs else "")
    print(head)
    print("|---|---|---|" + ("---|---|" if theirs else ""))

    def find(s, arm, lr):
        for e in s["summary"]:
            if e["arm"] == arm and abs(e["lr"] - lr) <= 1e-6 * abs(lr):  # float32 vs float64 lr
                return e
        return None

    for lr in mine["lrs"]:
        row = [acc_cell(find(mine, a, lr)) for a in ("no_bn", "bn")]
        if theirs:
            row += [acc_cell(find(theirs, a, lr)) if find(theirs, a, lr) else "" for a in ("no_bn", "bn")]
        print(f"| {lr:g} | " + " | ".join(row) + " |")


def compare(d, peer=None):
    sources = [("minidl", json.load(open(os.path.join(d, "summary.json"))))]
    if peer:
        sources.append(("PyTorch", json.load(open(os.path.join(peer, "summary.json")))))
    print("| framework | arm | steps to 95 % | steps to 98 % | final test accuracy % |")
    print("|---|---|---|---|---|")
    for name, s in sources:
        for e in s["summary"]:
            print(f"| {name} | {e['arm']} | {steps_cell(e)} | {steps_cell(e, '0.98')} | {acc_cell(e)} |")


def mpi(d):
    with open(os.path.join(d, "runs.csv")) as f:
        runs = list(csv.DictReader(f))

    def cell(form, arm, b):
        v = [float(r["final_test_acc"]) for r in runs
             if r["form"] == form and r["arm"] == arm and int(r["per_rank_batch"]) == b and r["final_test_acc"]]
        if not v:
            return "-", 0
        if len(v) == 1:
            return f"{v[0]:.2f}", 1
        return f"{statistics.median(v):.2f} [{min(v):.2f}-{max(v):.2f}]", len(v)

    ranks = runs[0]["ranks"] if runs else "?"
    batches = sorted({int(r["per_rank_batch"]) for r in runs if r["form"] == "equivalent"})
    n = max((cell("equivalent", "local", b)[1] for b in batches), default=0)
    print(f"Final test accuracy %, median [min-max] over {n} seeds, {ranks} ranks, one epoch:")
    print()
    print("| per-rank batch | global batch | local BN | SyncBN |")
    print("|---|---|---|---|")
    for b in batches:
        print(f"| {b} | {int(ranks) * b} | {cell('equivalent', 'local', b)[0]} | {cell('equivalent', 'sync', b)[0]} |")
    real = [r for r in runs if r["form"] == "mpirun"]
    if real:
        print()
        print("Through mpirun (seed 0) beside the one-process form of the same run:")
        print()
        print("| run | mpirun | one process |")
        print("|---|---|---|")
        for r in real:
            b = int(r["per_rank_batch"])
            same = [x for x in runs if x["form"] == "equivalent" and x["arm"] == r["arm"] and int(x["per_rank_batch"]) == b
                    and x["seed"] == r["seed"]]
            print(f"| {r['arm']} BN, {ranks} x {b} | {float(r['final_test_acc']):.2f} | "
                  f"{float(same[0]['final_test_acc']):.2f} |" if same else f"| {r['arm']} | {r['final_test_acc']} | - |")


def med_range(v, fmt="{:.3g}"):
    v = sorted(x for x in v if x == x)
    if not v:
        return "-"
    return (fmt + " [" + fmt + "-" + fmt + "]").format(statistics.median(v), v[0], v[-1])


def study(name, d):
    j = json.load(open(os.path.join(d, "study.json")))
    with open(os.path.join(d, "study.csv")) as f:
        data = list(csv.DictReader(f))
    n = len(j["seeds"])
    print(f"study {name}, {n} seeds; final test accuracy %, median [min-max]:")
    print()
    print("| arm | lr | final test accuracy % |")
    print("|---|---|---|")
    for e in j["summary"]:
        print(f"| {e['arm']} | {e['lr']:g} | {acc_cell(e)} |")
    print()

    def per_seed(rows, key, reduce=statistics.median):
        # one value per seed (reduce over that seed's rows), then median [min-max] over seeds
        by = {}
        for r in rows:
            if r[key] not in ("", "nan", "inf"):
                by.setdefault(r["seed"], []).append(float(r[key]))
        return [reduce(v) for v in by.values()]

    if name == "detached":
        for arm, g in j.get("bias_growth", {}).items():
            print(f"- {arm}: pre-BN bias norm, last step / first step (per layer and seed): {med_range(g['values'])}")
        for arm in ("bn", "detached"):
            rows = [r for r in data if r["arm"] == arm]
            last = max(int(r["step"]) for r in rows)
            for k in (1, 2, 3):
                first = [float(r[f"bias{k}_norm"]) for r in rows if int(r["step"]) == min(int(x["step"]) for x in rows)]
                end = [float(r[f"bias{k}_norm"]) for r in rows if int(r["step"]) == last]
                print(f"- {arm}, bias {k}: norm at the first logged step {med_range(first)}, at step {last} {med_range(end)}")
    elif name == "noisy":
        layers = sorted({r["layer"] for r in data}, key=int)
        print("| arm | layer | mean change of a unit's mean per step | of its variance |")
        print("|---|---|---|---|")
        for arm in [a["name"] for a in j["arms"]]:
            for layer in layers:
                rows = [r for r in data if r["arm"] == arm and r["layer"] == layer]
                print(f"| {arm} | {layer} | {med_range(per_seed(rows, 'mean_shift'))} | {med_range(per_seed(rows, 'var_shift'))} |")
        print("\n(per seed the median over the logged steps; then median [min-max] over seeds)")
    elif name == "ics":
        layers = sorted({(r["layer"], r["name"]) for r in data}, key=lambda x: int(x[0]))
        print("| arm | layer | ||G - G'|| / ||G|| | cos(G, G') |")
        print("|---|---|---|---|")
        for arm in [a["name"] for a in j["arms"]]:
            for layer, lname in layers:
                rows = [r for r in data if r["arm"] == arm and r["layer"] == layer]
                print(f"| {arm} | {lname} | {med_range(per_seed(rows, 'relative_l2'))} | {med_range(per_seed(rows, 'cosine'))} |")
        print("\n(per seed the median over the measurement steps; then median [min-max] over seeds)")
    elif name == "landscape":
        print("| arm | lr | steps | loss range | gradient predictiveness | effective beta-smoothness |")
        print("|---|---|---|---|---|---|")
        for arm in [a["name"] for a in j["arms"]]:
            for lr in sorted({r["lr"] for r in data}, key=float):
                rows = [r for r in data if r["arm"] == arm and r["lr"] == lr]
                if not rows:
                    continue
                last = max(int(r["step"]) for r in rows)
                for label, part in (("first 10 %", [r for r in rows if int(r["step"]) <= last / 10]), ("all", rows)):
                    print(f"| {arm} | {float(lr):g} | {label} | {med_range(per_seed(part, 'loss_range'))} | "
                          f"{med_range(per_seed(part, 'grad_predictiveness'))} | {med_range(per_seed(part, 'beta_smoothness'))} |")
        print("\n(per seed the median over the measurement steps; then median [min-max] over seeds)")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "study":
        study(sys.argv[2], sys.argv[3])
        sys.exit(0)
    if len(sys.argv) < 3 or sys.argv[1] not in ("norms", "sweep", "compare", "mpi"):
        sys.exit(__doc__)
    {"norms": norms, "sweep": sweep, "compare": compare, "mpi": mpi}[sys.argv[1]](*sys.argv[2:])
