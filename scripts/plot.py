#!/usr/bin/python3
"""Draws minidl's plots from the CSV/JSON files its commands write.

  plot.py compare DIR   DIR/curves.csv + summary.json -> DIR/compare.png
  plot.py sweep DIR     DIR/sweep.csv + sweep.json   -> DIR/sweep.png
  plot.py fig1 DIR      DIR/fig1.csv + fig1.json     -> DIR/fig1.png
"""
import csv
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

LABELS = {"no_bn": "without BN", "bn": "with BN"}
COLORS = {"no_bn": "tab:blue", "bn": "tab:red"}


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def num(v):
    return float(v) if v not in ("", None) else float("nan")


def title(config):
    return (f"{config['model']} {config['act']}, {config['optimizer']} lr={config['lr']:g}"
            + (f" momentum={config['momentum']:g}" if config["optimizer"] == "sgd" else "")
            + f", batch {config['batch_size']}, seed {config['seed']}")


def compare(d):
    data = rows(os.path.join(d, "curves.csv"))
    summary = json.load(open(os.path.join(d, "summary.json")))
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(11, 4.2))
    for run in ("no_bn", "bn"):
        pts = [r for r in data if r["run"] == run]
        steps = [int(r["step"]) for r in pts]
        ax_acc.plot(steps, [100 * num(r["test_acc"]) for r in pts], label=LABELS[run], color=COLORS[run])
        ax_loss.plot(steps, [num(r["train_loss"]) for r in pts], label=LABELS[run], color=COLORS[run])
        info = summary["runs"].get(run, {})
        if info.get("diverged"):
            ax_acc.axvline(info["diverged_step"], color=COLORS[run], linestyle=":", label=f"{LABELS[run]} diverged")
    ax_acc.set_xlabel("training step")
    ax_acc.set_ylabel("test accuracy (%)")
    ax_acc.set_ylim(0, 100)
    ax_acc.grid(alpha=0.3)
    ax_acc.legend()
    ax_loss.set_xlabel("training step")
    ax_loss.set_ylabel("training loss (mean since previous point)")
    ax_loss.set_yscale("log")
    ax_loss.grid(alpha=0.3)
    ax_loss.legend()
    fig.suptitle("BN vs no BN: " + title(summary["config"]))
    fig.tight_layout()
    fig.savefig(os.path.join(d, "compare.png"), dpi=110)


def sweep(d):
    data = rows(os.path.join(d, "sweep.csv"))
    summary = json.load(open(os.path.join(d, "sweep.json")))
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for run, flag in (("no_bn", "false"), ("bn", "true")):
        pts = sorted((num(r["lr"]), r) for r in data if r["bn"] == flag)
        lrs = [lr for lr, _ in pts]
        acc = [100 * num(r["final_test_acc"]) if r["diverged"] == "false" else float("nan") for _, r in pts]
        ax.plot(lrs, acc, marker="o", label=LABELS[run], color=COLORS[run])
        for lr, r in pts:
            if r["diverged"] == "true":
                ax.plot([lr], [0], marker="x", color=COLORS[run], markersize=10)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("final test accuracy (%)  (x: diverged)")
    ax.set_ylim(-3, 100)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    ax.set_title("Learning-rate tolerance\n" + title(summary["config"]).replace(f" lr={summary['config']['lr']:g}", ""),
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(os.path.join(d, "sweep.png"), dpi=110)


def fig1(d):
    data = rows(os.path.join(d, "fig1.csv"))
    summary = json.load(open(os.path.join(d, "fig1.json")))
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for run in ("no_bn", "bn"):
        pts = [r for r in data if r["run"] == run]
        axes[0].plot([int(r["step"]) for r in pts], [num(r["test_acc"]) for r in pts], label=LABELS[run], color=COLORS[run])
    axes[0].set_xlabel("training step")
    axes[0].set_ylabel("test accuracy")
    axes[0].set_title("(a) test accuracy")
    axes[0].legend()
    axes[0].grid(alpha=0.3)
    for ax, run, letter in ((axes[1], "no_bn", "b"), (axes[2], "bn", "c")):
        pts = [r for r in data if r["run"] == run]
        steps = [int(r["step"]) for r in pts]
        for key, style in (("p15", "--"), ("p50", "-"), ("p85", "--")):
            ax.plot(steps, [num(r[key]) for r in pts], style, color=COLORS[run], label=key.replace("p", "") + "th pct")
        ax.set_xlabel("training step")
        ax.set_ylabel(f"input to sigmoid unit {summary['unit']}")
        ax.set_title(f"({letter}) {LABELS[run]}")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle("BN paper, Figure 1 on MNIST: " + title(summary["config"]))
    fig.tight_layout()
    fig.savefig(os.path.join(d, "fig1.png"), dpi=110)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("compare", "sweep", "fig1"):
        sys.exit(__doc__)
    {"compare": compare, "sweep": sweep, "fig1": fig1}[sys.argv[1]](sys.argv[2])
