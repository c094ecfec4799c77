#!/usr/bin/python3
"""Draws minidl's plots from the CSV/JSON files its commands write.

  plot.py compare DIR [PEER_DIR]  DIR/curves.csv + summary.json -> DIR/compare.png
  plot.py sweep DIR [PEER_DIR]    DIR/sweep.csv + sweep.json   -> DIR/sweep.png
  (PEER_DIR: the same experiment from scripts/pytorch_peer.py, drawn on the same axes)
  plot.py study-NAME DIR          DIR/study.csv + study.json -> DIR/study.png (minidl study NAME)
  plot.py fig1 DIR      DIR/fig1.csv + fig1.json     -> DIR/fig1.png
  plot.py mpi DIR       DIR/runs.csv (scripts/mpi_small_batch.sh) -> DIR/mpi.png

Every figure says where it came from, in a footer and in the PNG's text chunks (Source, Commit,
CPU): the command that made it ($MINIDL_FIGURE_SOURCE, which scripts/reproduce.sh sets to its
stage, else this script's command line), the commit of this checkout, and the CPU.
"""
import csv
import json
import os
import subprocess
import sys
import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

LABELS = {"no_bn": "without BN", "bn": "with BN"}
COLORS = {"no_bn": "tab:blue", "bn": "tab:red"}
PALETTE = ["tab:blue", "tab:red", "tab:green", "tab:purple", "tab:orange", "tab:brown", "tab:pink", "tab:gray"]


def provenance():
    """{"Source", "Commit", "CPU"} of the figure being drawn."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def git(*args):
        try:
            return subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    if commit != "unknown" and git("status", "--porcelain", "--untracked-files=no"):
        commit += " with uncommitted changes"
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    source = os.environ.get("MINIDL_FIGURE_SOURCE") or "scripts/plot.py " + " ".join(
        os.path.basename(a.rstrip("/")) if i == 1 else a for i, a in enumerate(sys.argv[1:]))
    return {"Source": source, "Commit": commit, "CPU": f"{cpu}, {os.cpu_count()} cores"}


def save(fig, path):
    """Saves fig with its provenance as a footer and as PNG text chunks."""
    p = provenance()
    fig.tight_layout(rect=(0, 0.03, 1, 1))  # room for the footer
    fig.text(0.005, 0.003, f"{p['Source']}  |  commit {p['Commit']}  |  {p['CPU']}", fontsize=6, color="0.45",
             ha="left", va="bottom")
    fig.savefig(path, dpi=110, metadata=p)


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def num(v):
    return float(v) if v not in ("", None) else float("nan")


def label(arm):
    return LABELS.get(arm, arm)


def color(arm, i, arms=("no_bn", "bn")):
    return COLORS[arm] if set(arms) <= set(COLORS) else PALETTE[i % len(PALETTE)]


def title(config, with_model=True):
    model = (config.get("arch") or f"{config['model']} {config['act']}") + ", " if with_model else ""
    return (f"{model}{config['optimizer']} lr={config['lr']:g}"
            + (f" momentum={config['momentum']:g}" if config["optimizer"] == "sgd" else "")
            + f", batch {config['batch_size']}")


def median(v):
    v = sorted(x for x in v if x == x)
    if not v:
        return float("nan")
    n = len(v)
    return v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])


def band(curves, key):
    """curves: {seed: [rows]} -> steps, median, min, max of key over the seeds at each step."""
    by_step = {}
    for pts in curves.values():
        for r in pts:
            by_step.setdefault(int(r["step"]), []).append(num(r[key]))
    steps = sorted(by_step)
    vals = [by_step[s] for s in steps]
    return (steps, [median(v) for v in vals], [min(v) for v in vals], [max(v) for v in vals])


def compare_axes(ax_acc, ax_loss, d, prefix="", linestyle="-", alpha=0.18):
    """Draws one compare directory's arms: median over seeds with a min-max band."""
    data = rows(os.path.join(d, "curves.csv"))
    summary = json.load(open(os.path.join(d, "summary.json")))
    arms = [a["name"] for a in summary.get("arms", [])] or sorted({r["arm"] for r in data})
    for i, arm in enumerate(arms):
        curves = {}
        for r in data:
            if r["arm"] == arm:
                curves.setdefault(r["seed"], []).append(r)
        if not curves:
            continue
        c = color(arm, i, arms)
        name = f"{prefix}{label(arm)} (n={len(curves)})"
        steps, med, lo, hi = band(curves, "test_acc")
        ax_acc.plot(steps, [100 * v for v in med], color=c, linestyle=linestyle, label=name)
        ax_acc.fill_between(steps, [100 * v for v in lo], [100 * v for v in hi], color=c, alpha=alpha, linewidth=0)
        steps, med, lo, hi = band(curves, "train_loss")
        ax_loss.plot(steps, med, color=c, linestyle=linestyle, label=name)
        ax_loss.fill_between(steps, lo, hi, color=c, alpha=alpha, linewidth=0)
        for run in summary.get("runs", []):
            if run["arm"] == arm and run.get("diverged"):
                ax_acc.axvline(run["diverged_step"], color=c, linestyle=":", linewidth=0.8)
    return summary


def finish_compare(fig, ax_acc, ax_loss, heading, path):
    ax_acc.set_xlabel("training step")
    ax_acc.set_ylabel("test accuracy (%)  median, min-max band")
    ax_acc.set_ylim(0, 100)
    ax_acc.grid(alpha=0.3)
    ax_acc.legend(fontsize=8)
    ax_loss.set_xlabel("training step")
    ax_loss.set_ylabel("training loss (mean since previous point)")
    ax_loss.set_yscale("log")
    ax_loss.grid(alpha=0.3)
    ax_loss.legend(fontsize=8)
    fig.suptitle(textwrap.fill(heading, 130), fontsize=10)  # a long --arch spec wraps
    fig.tight_layout()
    save(fig, path)


def compare(d, peer=None):
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(11, 4.2))
    summary = compare_axes(ax_acc, ax_loss, d, prefix="minidl " if peer else "")
    if peer:
        compare_axes(ax_acc, ax_loss, peer, prefix="PyTorch ", linestyle="--", alpha=0.08)
    seeds = summary.get("seeds", [])
    arms = [a["name"] for a in summary.get("arms", [])]
    default = set(arms) <= {"no_bn", "bn"}
    finish_compare(fig, ax_acc, ax_loss, f"{title(summary['config'], default)}, seeds: {len(seeds)}",
                   os.path.join(d, "compare.png"))


def sweep_axes(ax, d, prefix="", marker="o", offset=1.0):
    data = rows(os.path.join(d, "sweep.csv"))
    summary = json.load(open(os.path.join(d, "sweep.json")))
    for i, arm in enumerate(("no_bn", "bn")):
        c = color(arm, i)
        pts = [r for r in data if r["arm"] == arm]
        lrs = sorted({num(r["lr"]) for r in pts})
        med, lo, hi = [], [], []
        for lr in lrs:
            acc = [100 * num(r["final_test_acc"]) if r["diverged"] == "false" else 0.0 for r in pts if num(r["lr"]) == lr]
            med.append(median(acc))
            lo.append(min(acc))
            hi.append(max(acc))
            for a in acc:
                ax.plot([lr * offset], [a], marker=marker, color=c, alpha=0.35, markersize=3, linestyle="none")
        x = [lr * offset for lr in lrs]
        ax.errorbar(x, med, yerr=[[m - l for m, l in zip(med, lo)], [h - m for m, h in zip(med, hi)]], marker=marker,
                    color=c, capsize=3, label=f"{prefix}{label(arm)}")
    return summary


def sweep(d, peer=None):
    fig, ax = plt.subplots(figsize=(7, 4.4))
    summary = sweep_axes(ax, d, prefix="minidl " if peer else "", offset=0.93 if peer else 1.0)
    if peer:
        sweep_axes(ax, peer, prefix="PyTorch ", marker="s", offset=1.07)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("final test accuracy (%)\nmedian, min-max bars, dots: seeds (diverged: 0)")
    ax.set_ylim(-3, 100)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax.set_title(f"Learning-rate tolerance, seeds: {len(summary.get('seeds', []))}\n"
                 + title(summary["config"]).replace(f" lr={summary['config']['lr']:g}", ""), fontsize=10)
    fig.tight_layout()
    save(fig, os.path.join(d, "sweep.png"))


def fig1(d):
    data = rows(os.path.join(d, "fig1.csv"))
    summary = json.load(open(os.path.join(d, "fig1.json")))
    seeds = sorted({r["seed"] for r in data}, key=int)
    first = seeds[0]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.9))
    for run in ("no_bn", "bn"):
        curves = {}
        for r in data:
            if r["run"] == run:
                curves.setdefault(r["seed"], []).append(r)
        steps, med, lo, hi = band(curves, "test_acc")
        axes[0].plot(steps, med, label=f"{LABELS[run]} (n={len(curves)})", color=COLORS[run])
        if len(curves) > 1:
            axes[0].fill_between(steps, lo, hi, color=COLORS[run], alpha=0.18, linewidth=0)
    axes[0].set_xlabel("training step")
    axes[0].set_ylabel("test accuracy")
    axes[0].set_title("(a) test accuracy")
    axes[0].legend()
    axes[0].grid(alpha=0.3)
    for ax, run, letter in ((axes[1], "no_bn", "b"), (axes[2], "bn", "c")):
        pts = [r for r in data if r["run"] == run and r["seed"] == first]
        steps = [int(r["step"]) for r in pts]
        for key, style in (("p15", "--"), ("p50", "-"), ("p85", "--")):
            ax.plot(steps, [num(r[key]) for r in pts], style, color=COLORS[run],
                    label=f"unit {summary['unit']}: {key[1:]}th pct")
        for key in ("m15", "m50", "m85"):
            ax.plot(steps, [num(r[key]) for r in pts], ":", color="black", linewidth=1,
                    label="median over units" if key == "m50" else None)
        ax.set_xlabel("training step")
        ax.set_ylabel("input to a last-hidden-layer sigmoid")
        ax.set_title(f"({letter}) {LABELS[run]}, seed {first}")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    c = summary["config"]
    init = "Gaussian init" if c.get("init_std") else "PyTorch's uniform init"
    fig.suptitle(f"BN paper, Figure 1 on MNIST: {title(c)}, {init}", fontsize=10)
    fig.tight_layout()
    save(fig, os.path.join(d, "fig1.png"))


def study_series(d, value_cols, group_cols, x="step"):
    """study.csv -> {group tuple: {x: [values over seeds]}} per value column."""
    data = rows(os.path.join(d, "study.csv"))
    out = {v: {} for v in value_cols}
    for r in data:
        g = tuple(r[c] for c in group_cols)
        for v in value_cols:
            out[v].setdefault(g, {}).setdefault(float(r[x]), []).append(num(r[v]))
    return out


def draw_bands(ax, series, label_of, log=False):
    for i, (g, pts) in enumerate(sorted(series.items())):
        xs = sorted(pts)
        med = [median(pts[x]) for x in xs]
        c = PALETTE[i % len(PALETTE)]
        ax.plot(xs, med, color=c, label=label_of(g))
        if any(len(pts[x]) > 1 for x in xs):
            ax.fill_between(xs, [min(pts[x]) for x in xs], [max(pts[x]) for x in xs], color=c, alpha=0.15, linewidth=0)
    if log:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def study(kind, d):
    summary = json.load(open(os.path.join(d, "study.json")))
    heading = f"study {kind}: {title(summary['config'])}, seeds: {len(summary['seeds'])} (median, min-max band)"
    if kind == "detached":
        fig, axes = plt.subplots(1, 4, figsize=(16, 3.8))
        s = study_series(d, ["bias1_norm", "bias2_norm", "bias3_norm", "loss"], ["arm"])
        for k, ax in enumerate(axes[:3]):
            draw_bands(ax, s[f"bias{k + 1}_norm"], lambda g: g[0])
            ax.set_title(f"norm of pre-BN bias {k + 1}")
            ax.set_xlabel("step")
        draw_bands(axes[3], s["loss"], lambda g: g[0], log=True)
        axes[3].set_title("training loss")
        axes[3].set_xlabel("step")
    elif kind == "noisy":
        fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
        data = rows(os.path.join(d, "study.csv"))
        layers = sorted({r["layer"] for r in data}, key=int)
        s = study_series(d, ["mean_shift", "var_shift"], ["arm", "layer"])
        for ax, key in zip(axes[:2], ("mean_shift", "var_shift")):
            draw_bands(ax, {g: v for g, v in s[key].items() if g[1] == layers[-1]}, lambda g: g[0], log=True)
            ax.set_title(f"layer {layers[-1]}: mean over units of |change of the unit's {key.split('_')[0]}| per step", fontsize=8)
            ax.set_xlabel("step")
        accs = {}
        for r in summary["runs"]:
            accs.setdefault(r["arm"], []).append(100 * (r["final_test_acc"] or 0))
        names = list(accs)
        axes[2].bar(range(len(names)), [median(accs[n]) for n in names], color=PALETTE[:len(names)])
        for i, n in enumerate(names):
            axes[2].plot([i] * len(accs[n]), accs[n], "k.", alpha=0.6)
        axes[2].set_xticks(range(len(names)))
        axes[2].set_xticklabels(names, fontsize=8)
        axes[2].set_title("final test accuracy % (bars: median, dots: seeds)")
    elif kind == "ics":
        data = rows(os.path.join(d, "study.csv"))
        layers = sorted({r["layer"] for r in data}, key=int)
        fig, axes = plt.subplots(2, len(layers), figsize=(4 * len(layers), 6.5), squeeze=False)
        s = study_series(d, ["relative_l2", "cosine"], ["arm", "layer"])
        for j, layer in enumerate(layers):
            for i, key in enumerate(("relative_l2", "cosine")):
                ax = axes[i][j]
                draw_bands(ax, {g: v for g, v in s[key].items() if g[1] == layer}, lambda g: g[0], log=(key == "relative_l2"))
                name = next(r["name"] for r in data if r["layer"] == layer)
                ax.set_title(f"{name}: " + ("||G - G'|| / ||G||" if key == "relative_l2" else "cos(G, G')"), fontsize=9)
                ax.set_xlabel("step")
    elif kind == "landscape":
        fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
        s = study_series(d, ["loss_range", "grad_predictiveness", "beta_smoothness"], ["arm", "lr"])
        for ax, key in zip(axes, ("loss_range", "grad_predictiveness", "beta_smoothness")):
            draw_bands(ax, s[key], lambda g: f"{g[0]} lr {float(g[1]):g}", log=True)
            ax.set_title(key.replace("_", " "))
            ax.set_xlabel("step")
    elif kind == "init":
        fig, ax = plt.subplots(figsize=(6.5, 4.2))
        for i, arm in enumerate(("no_bn", "bn")):
            pts = {}
            for r in summary["runs"]:
                name, scale = r["arm"].split("@")
                if name == arm:
                    pts.setdefault(float(scale), []).append(100 * (r["final_test_acc"] or 0))
            xs = sorted(pts)
            med = [median(pts[x]) for x in xs]
            ax.errorbar(xs, med, yerr=[[m - min(pts[x]) for m, x in zip(med, xs)], [max(pts[x]) - m for m, x in zip(med, xs)]],
                        marker="o", capsize=3, color=COLORS[arm], label=LABELS[arm])
        ax.set_xscale("log")
        ax.set_xlabel("scale of the initial weights")
        ax.set_ylabel("final test accuracy (%)")
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    elif kind == "init-gradient":
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
        data = rows(os.path.join(d, "study.csv"))
        depth = max(int(r["depth"]) for r in data)
        s = study_series(d, ["grad_norm"], ["arm"], x="layer")
        kinds = ("no_bn", "bn", "res")
        names = {"no_bn": "no BN", "bn": "BN", "res": "BN, residual"}
        for i, k in enumerate(kinds):
            pts = s["grad_norm"].get((f"{k}@{depth}",), {})
            xs = sorted(pts)
            if not xs:
                continue
            med = [median(pts[x]) for x in xs]
            axes[0].plot(xs, med, marker=".", color=PALETTE[i], label=names[k])
            axes[0].fill_between(xs, [min(pts[x]) for x in xs], [max(pts[x]) for x in xs], color=PALETTE[i], alpha=0.15,
                                 linewidth=0)
        axes[0].set_yscale("log")
        axes[0].set_xlabel("linear layer (1 = input side)")
        axes[0].set_ylabel("||dL/dW|| at initialization")
        axes[0].set_title(f"depth {depth}: gradient norm per layer", fontsize=9)
        for i, k in enumerate(kinds):
            pts = {}
            for r in summary["runs"]:
                name, dd = r["arm"].split("@")
                if name == k and r.get("growth_per_layer") is not None:
                    pts.setdefault(int(dd), []).append(r["growth_per_layer"])
            xs = sorted(pts)
            med = [median(pts[x]) for x in xs]
            axes[1].errorbar(xs, med, yerr=[[m - min(pts[x]) for m, x in zip(med, xs)], [max(pts[x]) - m for m, x in zip(med, xs)]],
                             marker="o", capsize=3, color=PALETTE[i], label=names[k])
        axes[1].axhline(1.0, color="gray", linewidth=0.8)
        axes[1].set_xscale("log", base=2)
        axes[1].set_xlabel("hidden layers")
        axes[1].set_ylabel("growth of ||dL/dW|| per layer toward the input")
        axes[1].set_title("fitted growth per layer (layers 2..D)", fontsize=9)
        for ax in axes:
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=8)
    elif kind == "depth":
        fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
        lrs = sorted({r["lr"] for r in summary["runs"]})
        styles = ["-", "--", ":", "-."]
        for i, arm in enumerate(("no_bn", "bn")):
            for k, lr in enumerate(lrs):
                acc, steps = {}, {}
                for r in summary["runs"]:
                    name, depth = r["arm"].split("@")
                    if name != arm or r["lr"] != lr:
                        continue
                    acc.setdefault(int(depth), []).append(100 * (r["final_test_acc"] or 0))
                    steps.setdefault(int(depth), []).append(r.get("steps_to_90"))
                xs = sorted(acc)
                med = [median(acc[x]) for x in xs]
                axes[0].errorbar(xs, med, yerr=[[m - min(acc[x]) for m, x in zip(med, xs)], [max(acc[x]) - m for m, x in zip(med, xs)]],
                                 marker="o", capsize=3, color=COLORS[arm], linestyle=styles[k % 4], label=f"{LABELS[arm]}, lr {lr:g}")
                reached = [(x, median([v for v in steps[x] if v is not None])) for x in xs if any(v is not None for v in steps[x])]
                if reached:
                    axes[1].plot([x for x, _ in reached], [y for _, y in reached], marker="o", color=COLORS[arm],
                                 linestyle=styles[k % 4], label=f"{LABELS[arm]}, lr {lr:g}")
        axes[0].set_ylabel("final test accuracy (%)")
        axes[1].set_ylabel("steps to 90 % (median of the seeds that got there)")
        data = rows(os.path.join(d, "study.csv"))
        deepest = max(int(r["depth"]) for r in data)
        mid = lrs[len(lrs) // 2]
        for i, arm in enumerate(("no_bn", "bn")):
            last = {}
            for r in data:
                if r["arm"] == f"{arm}@{deepest}" and float(r["lr"]) == mid:
                    last.setdefault(int(r["seed"]), {})[int(r["layer"])] = (int(r["step"]), float(r["saturated"]))
            per_layer = {}
            for seed, layers in last.items():
                for layer, (s, f) in layers.items():
                    per_layer.setdefault(layer, []).append(f)
            xs = sorted(per_layer)
            axes[2].plot(xs, [median(per_layer[x]) for x in xs], marker=".", color=COLORS[arm], label=LABELS[arm])
        axes[2].set_xlabel("hidden layer")
        axes[2].set_ylabel("fraction with |pre-activation| > 4")
        axes[2].set_title(f"depth {deepest}, lr {mid:g}: saturated units at the last measurement", fontsize=9)
        for ax in axes[:2]:
            ax.set_xscale("log", base=2)
            ax.set_xlabel("hidden layers")
        for ax in axes:
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=7)
    elif kind == "skipinit":
        fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
        kinds = ("bn", "none", "skipinit")
        names = {"bn": "BN", "none": "no normalization", "skipinit": "SkipInit (no normalization)"}
        table = summary.get("skipinit", {})
        for i, k in enumerate(kinds):
            for ax, key, scale in ((axes[0], "largest_stable_lr", 1), (axes[1], "best_test_acc", 1)):
                pts = {int(arm.split("@")[1]): v[key] for arm, v in table.items() if arm.split("@")[0] == k}
                xs = sorted(pts)
                if not xs:
                    continue
                med = [median(pts[x]) for x in xs]
                ax.errorbar(xs, med, yerr=[[m - min(pts[x]) for m, x in zip(med, xs)], [max(pts[x]) - m for m, x in zip(med, xs)]],
                            marker="o", capsize=3, color=PALETTE[i], label=names[k])
        axes[0].set_yscale("log")
        axes[0].set_ylabel("largest stable lr of the grid (> 50 %, not diverged)")
        axes[1].set_ylabel("best final test accuracy over the grid (%)")
        data = rows(os.path.join(d, "study.csv"))
        deepest = max(int(r["depth"]) for r in data)
        first_lr = min(float(r["lr"]) for r in data)
        s2 = {}
        for r in data:
            if int(r["depth"]) == deepest and float(r["lr"]) == first_lr:
                s2.setdefault(r["arm"].split("@")[0], {}).setdefault(int(r["block"]), []).append(float(r["branch_var_ratio"]))
        for i, k in enumerate(kinds):
            pts = s2.get(k, {})
            xs = [x for x in sorted(pts) if median(pts[x]) > 0]
            if xs:
                axes[2].plot(xs, [median(pts[x]) for x in xs], marker=".", color=PALETTE[i], label=names[k])
        axes[2].set_yscale("log")
        axes[2].set_xlabel("residual block")
        axes[2].set_ylabel("Var(branch output) / Var(block input)")
        axes[2].set_title(f"depth {deepest}, at initialization (SkipInit: exactly 0, not drawn)", fontsize=9)
        for ax in axes[:2]:
            ax.set_xscale("log", base=2)
            ax.set_xlabel("residual blocks")
        for ax in axes:
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=8)
    elif kind == "weight-decay":
        fig, axes = plt.subplots(1, 3, figsize=(16, 4))
        s = study_series(d, ["weight_norm", "effective_lr", "cos_w_g", "grad_scale_ratio"], ["arm"])
        draw_bands(axes[0], s["weight_norm"], lambda g: g[0])
        axes[0].set_title("||w|| of the followed layer", fontsize=9)
        draw_bands(axes[1], s["effective_lr"], lambda g: g[0], log=True)
        axes[1].set_title("effective learning rate lr / ||w||^2", fontsize=9)
        err = {("|cos(w, g)|, " + g[0],): {x: [abs(v) for v in vs] for x, vs in pts.items()} for g, pts in s["cos_w_g"].items()}
        err.update({("|2||g(2w)||/||g(w)|| - 1|, " + g[0],): {x: [abs(v - 1) for v in vs] for x, vs in pts.items()}
                    for g, pts in s["grad_scale_ratio"].items()})
        draw_bands(axes[2], err, lambda g: g[0], log=True)
        axes[2].set_title("scale invariance, checked every step", fontsize=9)
        for ax in axes:
            ax.set_xlabel("step")
    else:
        sys.exit(f"plot.py: unknown study {kind}")
    fig.suptitle(heading, fontsize=9)
    fig.tight_layout()
    save(fig, os.path.join(d, "study.png"))


def mpi(d):
    runs = [r for r in rows(os.path.join(d, "runs.csv")) if r["form"] == "equivalent" and r["final_test_acc"]]
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (arm, name) in enumerate((("local", "local BN (each rank its own batch)"), ("sync", "SyncBN (global batch)"))):
        batches = sorted({int(r["per_rank_batch"]) for r in runs if r["arm"] == arm})
        med, lo, hi = [], [], []
        for b in batches:
            v = [float(r["final_test_acc"]) for r in runs if r["arm"] == arm and int(r["per_rank_batch"]) == b]
            med.append(median(v))
            lo.append(med[-1] - min(v))
            hi.append(max(v) - med[-1])
            ax.scatter([b * (0.96 if i == 0 else 1.04)] * len(v), v, s=10, color=PALETTE[i], alpha=0.5)
        ax.errorbar([b * (0.96 if i == 0 else 1.04) for b in batches], med, yerr=[lo, hi], marker="o", capsize=3,
                    color=PALETTE[i], label=name)
    ranks = runs[0]["ranks"] if runs else "?"
    n = len({r["seed"] for r in runs})
    ax.set_xscale("log", base=2)
    ax.set_xlabel(f"per-rank batch ({ranks} ranks)")
    ax.set_ylabel("test accuracy after one epoch (%)")
    ax.set_title(f"sigmoid CNN, lr 0.05: median and min-max over {n} seeds", fontsize=9)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save(fig, os.path.join(d, "mpi.png"))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "mpi":
        mpi(sys.argv[2])
        sys.exit(0)
    if len(sys.argv) == 3 and sys.argv[1].startswith("study-"):
        study(sys.argv[1][len("study-"):], sys.argv[2])
        sys.exit(0)
    if len(sys.argv) not in (3, 4) or sys.argv[1] not in ("compare", "sweep", "fig1"):
        sys.exit(__doc__)
    if sys.argv[1] == "fig1":
        fig1(sys.argv[2])
    else:
        {"compare": compare, "sweep": sweep}[sys.argv[1]](sys.argv[2], *sys.argv[3:])
