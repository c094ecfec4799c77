#!/usr/bin/python3
"""Markdown tables for the README from the JSON files minidl (and scripts/pytorch_peer.py) write.

  tables.py norms DIR              DIR/b{B}_lr{LR}/summary.json -> arms x (batch, lr)
  tables.py sweep DIR [PEER_DIR]   DIR/sweep.json (+ the PyTorch peer's) -> lr x arm, side by side
  tables.py compare DIR [PEER_DIR] DIR/summary.json (+ peer) -> arm rows, steps to 95 % and final accuracy
  tables.py mpi DIR                DIR/runs.csv (scripts/mpi_small_batch.sh) -> per-rank batch x local/sync BN
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


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] not in ("norms", "sweep", "compare", "mpi"):
        sys.exit(__doc__)
    {"norms": norms, "sweep": sweep, "compare": compare, "mpi": mpi}[sys.argv[1]](*sys.argv[2:])
