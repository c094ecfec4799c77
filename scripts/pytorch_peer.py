#!/usr/bin/python3
"""PyTorch peer of `minidl compare` and `minidl sweep`: the same experiments in PyTorch (Debian's
python3-torch), with the same seeds, learning rates, batch order and evaluation points, written
in the same JSON and CSV schema, so that minidl's distribution over seeds can be put beside
PyTorch's (scripts/plot.py and scripts/tables.py take both directories).

  pytorch_peer.py compare --data DIR [--model cnn|mlp] [--act sigmoid|relu|tanh] [--lr 0.05]
                          [--epochs 1 | --steps N] [--batch-size 64] [--momentum 0.9]
                          [--seeds 3|0,1,2] [--eval-every 100|epoch] [--out DIR]
                          [--arch SPEC] [--optimizer sgd|adamw] [--weight-decay W] [--nesterov]
                          [--lr-schedule step:S|multistep:..|cosine|onecycle] [--warmup N]
                          [--augment crop:P,flip]
  pytorch_peer.py sweep   ... [--lrs 0.01,0.05,0.2,1,5] (evaluates only at the end by default)
  pytorch_peer.py init-gradient --from DIR/study.json [--data DIR] [--out DIR]: the arms, seeds
                          and batch of a `minidl study init-gradient` run, in PyTorch: each
                          linear layer's gradient norm at initialization and its growth per layer
  pytorch_peer.py bench   [--model cnn|mlp] [--act ...] [--bn] [--batch-size 64] [--steps 200]
                          [--threads 2]: training and inference images/s on random data, as
                          `minidl bench` measures them (one JSON line; no data set needed)

What is the same as minidl: the models (the reference CNN of ../shared/peers/torch_cnn.py and
the BN paper's 784-100-100-100-10 MLP, BN before each activation, no bias before BN; or any
--arch spec, built by scripts/minidl_spec.py with minidl's module tree), the optimizer, weight
decay and lr schedule (torch.optim's own, which minidl's equal), the augmentation (minidl's
draws per seed, step and position, reimplemented here, so both see the same crops and flips), PyTorch's
default initialization (the distribution minidl copies; the values differ, drawn by
torch.manual_seed(seed)), SGD with momentum, cross-entropy, the data normalization, the batch
order (minidl's PCG32 shuffle of each epoch, reimplemented here bit for bit, so seed s sees the
same batches in both), a last batch of one skipped with BN, the evaluation points and the
divergence rule (a non-finite loss or weight stops the run).
"""
import argparse
import csv
import ctypes
import io
import json
import math
import os
import statistics
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import minidl_spec  # noqa: E402  (minidl's --arch specs as PyTorch modules)

MASK64 = (1 << 64) - 1


# --- minidl's generator (include/minidl/random.h) and batch order (data/idx.h) ------------
class Pcg32:
    INC = 1442695040888963407

    def __init__(self, seed):
        self.state = 0
        self.next_u32()
        self.state = (self.state + seed) & MASK64
        self.next_u32()

    def next_u32(self):
        old = self.state
        self.state = (old * 6364136223846793005 + self.INC) & MASK64
        xorshifted = (((old >> 18) ^ old) >> 27) & 0xFFFFFFFF
        rot = old >> 59
        return ((xorshifted >> rot) | (xorshifted << ((32 - rot) & 31))) & 0xFFFFFFFF

    def below(self, n):
        threshold = ((1 << 32) - n) % n
        while True:
            r = self.next_u32()
            if r >= threshold:
                return r % n


def layer_seed(seed, name):
    h = 1469598103934665603
    for c in name.encode():
        h = ((h ^ c) * 1099511628211) & MASK64
    z = (seed + 0x9E3779B97F4A7C15 * (h | 1)) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def epoch_order(count, gen):
    order = list(range(count))
    for i in range(count - 1, 0, -1):
        j = gen.below(i + 1)
        order[i], order[j] = order[j], order[i]
    return order


# --- augmentation (include/minidl/data/augment.h), draw for draw --------------------------------
def augment_draws(seed, step, position, padding, flip):
    """(dy, dx, mirror) of the example at `position` of the global batch of optimizer step `step`."""
    key = ((seed * 0x9E3779B97F4A7C15) ^ (((step + 0x632BE59BD9B4E019) & MASK64) * 0xBF58476D1CE4E5B9)
           ^ ((position + 1) * 0x94D049BB133111EB)) & MASK64
    gen = Pcg32(key)
    dy = gen.below(2 * padding + 1) - padding if padding else 0
    dx = gen.below(2 * padding + 1) - padding if padding else 0
    mirror = bool(flip and gen.below(2) == 1)
    return dy, dx, mirror


def parse_augment(text):
    padding, flip = 0, False
    for item in ([] if text in ("", "none") else text.split(",")):
        if item == "flip":
            flip = True
        elif item.startswith("crop:"):
            padding = int(item[5:])
        else:
            sys.exit(f"--augment: expected crop:P and/or flip, got '{item}'")
    return padding, flip


def augment(xb, padding, flip, black, seed, step, first):
    """Images [B, C, H, W] (normalised; `black` per channel is a black pixel's value), as minidl:
    output (y, x) is the input's (y + dy, (W-1-x if mirrored else x) + dx), black outside."""
    if not padding and not flip:
        return xb
    B, C, H, W = xb.shape
    P = padding
    padded = black.view(1, C, 1, 1).expand(B, C, H + 2 * P, W + 2 * P).clone()
    padded[:, :, P:P + H, P:P + W] = xb
    out = torch.empty_like(xb)
    for b in range(B):
        dy, dx, mirror = augment_draws(seed, step, first + b, P, flip)
        if mirror:
            # sx = (W - 1 - x) + dx for x = 0..W-1: the window [dx, dx + W) read backwards
            out[b] = padded[b, :, P + dy:P + dy + H, P + dx:P + dx + W].flip(-1)
        else:
            out[b] = padded[b, :, P + dy:P + dy + H, P + dx:P + dx + W]
    return out


# --- data ------------------------------------------------------------------------------------
def read_idx(path):
    if not os.path.exists(path) and os.path.exists(path + ".gz"):
        path += ".gz"
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        import gzip
        data = gzip.decompress(data)
    ndim = data[3]
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


MEAN, STD = 0.1307, 0.3081  # minidl's normalization of IDX data (--normalize auto)


def load(d, train_limit=0, test_limit=0):
    def split(prefix, limit):
        x = read_idx(os.path.join(d, f"{prefix}-images-idx3-ubyte")).astype(np.float32) / np.float32(255.0)
        y = read_idx(os.path.join(d, f"{prefix}-labels-idx1-ubyte")).astype(np.int64)
        if limit:
            x, y = x[:limit], y[:limit]
        x = (x - np.float32(MEAN)) / np.float32(STD)
        return torch.from_numpy(np.ascontiguousarray(x)).unsqueeze(1), torch.from_numpy(y)
    return split("train", train_limit), split("t10k", test_limit)


# --- models ------------------------------------------------------------------------------------
# minidl's activation table (include/minidl/kernels/activation.h), by name
ACTS = {"sigmoid": torch.sigmoid, "relu": F.relu, "tanh": torch.tanh, "swish": F.silu}


class Cnn(nn.Module):
    def __init__(self, bn, act):
        super().__init__()
        self.bn, self.act = bn, ACTS[act]
        self.conv1 = nn.Conv2d(1, 16, 5, padding=2, bias=not bn)
        self.conv2 = nn.Conv2d(16, 32, 5, padding=2, bias=not bn)
        self.fc1 = nn.Linear(32 * 7 * 7, 128, bias=not bn)
        self.fc2 = nn.Linear(128, 10)
        if bn:
            self.bn1, self.bn2, self.bn3 = nn.BatchNorm2d(16), nn.BatchNorm2d(32), nn.BatchNorm1d(128)

    def forward(self, x):
        n = (lambda m, v: m(v)) if self.bn else (lambda m, v: v)
        x = F.max_pool2d(self.act(n(getattr(self, "bn1", None), self.conv1(x))), 2)
        x = F.max_pool2d(self.act(n(getattr(self, "bn2", None), self.conv2(x))), 2)
        x = self.act(n(getattr(self, "bn3", None), self.fc1(x.flatten(1))))
        return self.fc2(x)


class Mlp(nn.Module):
    def __init__(self, bn, act):
        super().__init__()
        self.bn, self.act = bn, ACTS[act]
        self.fc1 = nn.Linear(784, 100, bias=not bn)
        self.fc2 = nn.Linear(100, 100, bias=not bn)
        self.fc3 = nn.Linear(100, 100, bias=not bn)
        self.fc4 = nn.Linear(100, 10)
        if bn:
            self.bn1, self.bn2, self.bn3 = nn.BatchNorm1d(100), nn.BatchNorm1d(100), nn.BatchNorm1d(100)

    def forward(self, x):
        x = x.flatten(1)
        for i in (1, 2, 3):
            x = getattr(self, f"fc{i}")(x)
            if self.bn:
                x = getattr(self, f"bn{i}")(x)
            x = self.act(x)
        return self.fc4(x)


def evaluate(net, x, y, batch=500):
    net.eval()
    correct, loss = 0, 0.0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            out = net(x[i:i + batch])
            loss += F.cross_entropy(out, y[i:i + batch], reduction="sum").item()
            correct += (out.argmax(1) == y[i:i + batch]).sum().item()
    net.train()
    return loss / len(x), correct / len(x)


# --- one run -------------------------------------------------------------------------------------
def train_run(a, data, bn, lr, seed, eval_every):
    (xtr, ytr), (xte, yte) = data
    torch.manual_seed(seed)
    if a.arch:
        spec = a.arch if bn else minidl_spec.without(a.arch, "bn")
        net = minidl_spec.build(spec, tuple(xtr.shape[1:]), classes=10)
    else:
        net = (Cnn if a.model == "cnn" else Mlp)(bn, a.act)
    if a.optimizer == "sgd":
        opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=a.momentum, weight_decay=a.weight_decay,
                              nesterov=a.nesterov)
    else:
        opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=a.weight_decay)
    n = len(xtr)
    per_epoch = (n + a.batch_size - 1) // a.batch_size
    total = a.steps if a.steps else math.ceil((a.epochs or 1.0) * per_epoch)
    sched = make_scheduler(opt, a.lr_schedule, a.warmup, lr, total)
    padding, flip = parse_augment(a.augment)
    black = torch.full((xtr.shape[1],), -MEAN / STD)
    eval_each_epoch = eval_every == "epoch"
    evaluated_epoch = 0
    gen = Pcg32(layer_seed(seed, "data-order"))
    curve, step, epoch, batch_in_epoch = [], 0, 0, 0
    order = None
    loss_since, correct_since, seen_since, images, seconds = 0.0, 0, 0, 0, 0.0
    diverged, diverged_step, reason = False, None, None
    used_lr = lr
    tracked = [] if getattr(a, "track_norm", "") else None

    def point():
        nonlocal loss_since, correct_since, seen_since
        tl, ta = evaluate(net, xte, yte)
        curve.append({"step": step, "epoch": epoch + batch_in_epoch / per_epoch, "images": images,
                      "train_loss": loss_since / seen_since if seen_since else float("nan"),
                      "train_acc": correct_since / seen_since if seen_since else float("nan"),
                      "test_loss": tl, "test_acc": ta, "lr": used_lr, "seconds": seconds})
        loss_since, correct_since, seen_since = 0.0, 0, 0
        return tl, ta

    net.train()
    while step < total:
        t0 = time.perf_counter()
        if order is None:
            order = torch.tensor(epoch_order(n, gen)) if not a.no_shuffle else torch.arange(n)
        begin = batch_in_epoch * a.batch_size
        end = min(begin + a.batch_size, n)
        idx = order[begin:end]
        batch_in_epoch += 1
        if batch_in_epoch == per_epoch:
            batch_in_epoch, epoch, order = 0, epoch + 1, None
        if bn and end - begin < 2:
            continue
        xb, yb = augment(xtr[idx], padding, flip, black, seed, step, begin), ytr[idx]
        opt.zero_grad()
        out = net(xb)
        loss = F.cross_entropy(out, yb)
        lv = loss.item()
        if not math.isfinite(lv):
            diverged, diverged_step, reason = True, step + 1, f"loss is {lv} at step {step + 1}"
            break
        loss.backward()
        if tracked is not None:  # --track-norm: before the update, as minidl's study weight-decay
            tracked.append(dict(net.named_parameters())[a.track_norm].detach().norm().item())
        used_lr = opt.param_groups[0]["lr"]  # the curve's lr: the last step's, as minidl's
        opt.step()
        if sched:
            sched.step()
        step += 1
        bad = next((k for k, p in net.named_parameters() if not torch.isfinite(p).all()), None)
        if bad:
            diverged, diverged_step, reason = True, step, f"parameter '{bad}' became non-finite at step {step}"
            break
        b = end - begin
        loss_since += lv * b
        correct_since += (out.argmax(1) == yb).sum().item()
        seen_since += b
        images += b
        seconds += time.perf_counter() - t0
        if step == total:
            break
        if eval_each_epoch:
            if epoch > evaluated_epoch:
                point()
                evaluated_epoch = epoch
        elif eval_every and step % eval_every == 0:
            point()
    final = None if diverged else point()
    return curve, {"diverged": diverged, "diverged_step": diverged_step, "diverged_reason": reason, "steps": step,
                   "final_test_acc": final[1] if final else None, "final_test_loss": final[0] if final else None,
                   "images_per_s": images / seconds if seconds else 0.0, "train_seconds": seconds,
                   **({"tracked_norms": tracked} if tracked is not None else {})}


# --- records and summaries: the schema of apps/minidl/experiment.h --------------------------------
LEVELS = (0.9, 0.95, 0.97, 0.98)


def key(level):
    return f"{level:g}"


def make_scheduler(opt, text, warmup, lr, total):
    """torch.optim.lr_scheduler for minidl's --lr-schedule and --warmup (include/minidl/schedule.h),
    stepped once per optimizer step."""
    S = torch.optim.lr_scheduler
    kind, _, rest = text.partition(":")
    parts = rest.split(":") if rest else []
    if kind == "constant":
        main = None
    elif kind == "step":
        main = S.StepLR(opt, step_size=int(parts[0]), gamma=float(parts[1]) if len(parts) > 1 else 0.1)
    elif kind == "multistep":
        main = S.MultiStepLR(opt, milestones=[int(m) for m in parts[0].split("/")],
                             gamma=float(parts[1]) if len(parts) > 1 else 0.1)
    elif kind == "cosine":
        main = S.CosineAnnealingLR(opt, T_max=total, eta_min=float(parts[0]) if parts else 0.0)
    elif kind == "onecycle":
        main = S.OneCycleLR(opt, max_lr=lr, total_steps=total, pct_start=float(parts[0]) if parts else 0.3)
    else:
        sys.exit(f"--lr-schedule: unknown '{text}'")
    if not warmup:
        return main
    warm = S.LinearLR(opt, start_factor=1 / 3, total_iters=warmup)
    return warm if main is None else S.ChainedScheduler([warm, main])


def run_record(arm, lr, seed, curve, r):
    measured = len(curve) >= 2  # one evaluation at the end says nothing of when a level was reached
    steps_to = {}
    for level in LEVELS:
        steps_to[key(level)] = next((p["step"] for p in curve if p["test_acc"] >= level), None) if measured else None
    return dict({"arm": arm, "lr": lr, "seed": seed, "steps_to": steps_to, "steps_to_measured": measured}, **r)


def stats(v):
    if not v:
        return {"median": None, "mean": None, "std": None, "min": None, "max": None}
    v = sorted(v)
    n = len(v)
    med = v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])
    mean = sum(v) / n
    return {"median": med, "mean": mean, "std": math.sqrt(sum((x - mean) ** 2 for x in v) / n), "min": v[0], "max": v[-1]}


def summarize(runs):
    cells = []
    for r in runs:
        if (r["arm"], r["lr"]) not in cells:
            cells.append((r["arm"], r["lr"]))
    out = []
    for arm, lr in cells:
        rs = [r for r in runs if r["arm"] == arm and r["lr"] == lr]
        acc = [r["final_test_acc"] for r in rs if r["final_test_acc"] is not None]
        steps_to = {}
        for level in LEVELS:
            v = [r["steps_to"][key(level)] for r in rs if r["steps_to"][key(level)] is not None]
            s = stats(v)
            steps_to[key(level)] = {"reached": len(v), "measured": sum(1 for r in rs if r["steps_to_measured"]),
                                    "median": s["median"], "min": s["min"], "max": s["max"]}
        out.append({"arm": arm, "lr": lr, "n": len(rs), "finished": len(acc), "final_test_acc": stats(acc),
                    "steps_to": steps_to, "diverged": sum(1 for r in rs if r["diverged"])})
    return out


def paired(runs, a="bn", b="no_bn"):
    out = []
    lrs = []
    for r in runs:
        if r["lr"] not in lrs:
            lrs.append(r["lr"])
    score = lambda r: -1.0 if r["final_test_acc"] is None else r["final_test_acc"]
    for lr in lrs:
        better = n = 0
        for ra in runs:
            if ra["arm"] != a or ra["lr"] != lr:
                continue
            for rb in runs:
                if rb["arm"] == b and rb["lr"] == lr and rb["seed"] == ra["seed"]:
                    n += 1
                    better += score(ra) > score(rb)
        if n:
            out.append({"lr": lr, "a": a, "b": b, "a_better_on": better, "n": n, "bn_better_on": better})
    return out


def parse_seeds(text):
    if "," not in text:
        return list(range(int(text)))
    seeds = [int(s) for s in text.split(",")]
    if len(set(seeds)) != len(seeds):
        sys.exit(f"--seeds: the list '{text}' repeats a seed")
    return seeds


def config_json(a, lr):
    j = {"model": "spec" if a.arch else a.model, "act": a.act, "bn_impl": "pytorch", "optimizer": a.optimizer, "lr": lr,
         "momentum": a.momentum, "weight_decay": a.weight_decay, "batch_size": a.batch_size, "epochs": a.epochs or 0.0,
         "steps": a.steps or 0, "seed": 0, "shuffle": not a.no_shuffle,
         "eval_every": 0 if a.eval_every == "epoch" else a.eval_every, "framework": f"pytorch {torch.__version__}"}
    if a.arch:
        j["arch"] = a.arch
    if a.eval_every == "epoch":
        j["eval_each_epoch"] = True
    if a.augment not in ("", "none"):
        j["augment"] = a.augment
    if a.lr_schedule != "constant" or a.warmup:
        j["lr_schedule"] = a.lr_schedule + (f" warmup:{a.warmup}" if a.warmup else "")
    if a.nesterov:
        j["nesterov"] = True
    return j


def write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def log(a, msg):
    if not a.quiet:
        print(msg, file=sys.stderr, flush=True)


def bench(a):
    """Training steps (SGD with momentum, cross-entropy) and inference (eval, no grad) on random
    normal images, timed after 10 warm-up steps, like `minidl bench`."""
    # glibc returns a freed block above its mmap threshold (128 KB until a larger block has been
    # freed) to the system, so each step's 3 MB activations would cost fresh pages: measured 2.5x
    # slower training than after loading MNIST, which raises the threshold as a side effect (the
    # reference peer ../shared/peers/torch_cnn.py does). Set it as that leaves it, explicitly.
    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(-3, 64 << 20)   # M_MMAP_THRESHOLD
    libc.mallopt(-1, 128 << 20)  # M_TRIM_THRESHOLD
    torch.manual_seed(0)
    shape = tuple(int(v) for v in a.input_shape.split(","))
    if a.arch:
        net = minidl_spec.build(a.arch, shape, classes=a.classes)
    else:
        net = (Cnn if a.model == "cnn" else Mlp)(a.bn, a.act)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(a.batch_size, *shape)
    y = torch.randint(0, a.classes, (a.batch_size,))

    def step():
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()

    for _ in range(10):
        step()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    train = a.steps * a.batch_size / (time.perf_counter() - t0)
    net.eval()
    xi = torch.randn(a.infer_batch_size, *shape)
    batches = max(1, 20000 // a.infer_batch_size)
    with torch.no_grad():
        net(xi)
        t0 = time.perf_counter()
        for _ in range(batches):
            net(xi)
        infer = batches * a.infer_batch_size / (time.perf_counter() - t0)
    print(json.dumps({"framework": f"pytorch {torch.__version__}", "model": a.arch or a.model, "act": a.act, "bn": a.bn,
                      "input_shape": list(shape),
                      "batch_size": a.batch_size, "threads": a.threads, "steps": a.steps,
                      "train_images_per_s": train, "infer_images_per_s": infer,
                      "infer_batch_size": a.infer_batch_size}))


def growth_per_layer(norms):
    """exp(-slope) of log ||grad W_l|| on l over layers 2..D (minidl's fit in cmd_study.cpp)."""
    xs = list(range(2, len(norms)))
    ys = [math.log(norms[x - 1]) for x in xs]
    m = len(xs)
    sx, sy = sum(xs), sum(ys)
    sxx, sxy = sum(x * x for x in xs), sum(x * y for x, y in zip(xs, ys))
    return math.exp(-(m * sxy - sx * sy) / (m * sxx - sx * sx))


def init_gradient(a):
    study = json.load(open(a.from_))
    cfg = study["config"]
    data = load(a.data)
    (xtr, ytr), _ = data
    batch = cfg["batch_size"]
    runs, growth = [], {}
    for seed in study["seeds"]:
        gen = Pcg32(layer_seed(seed, "data-order"))
        order = torch.tensor(epoch_order(len(xtr), gen)) if cfg.get("shuffle", True) else torch.arange(len(xtr))
        idx = order[:batch]
        for arm in study["arms"]:
            torch.manual_seed(seed)
            net = minidl_spec.build(arm["model"], tuple(xtr.shape[1:]), classes=10)
            net.train()
            net.zero_grad()
            F.cross_entropy(net(xtr[idx]), ytr[idx]).backward()
            norms = [p.grad.norm().item() for p in net.parameters() if p.dim() == 2]
            g = growth_per_layer(norms)
            runs.append({"arm": arm["name"], "seed": seed, "grad_norms": norms, "growth_per_layer": g})
            growth.setdefault(arm["name"], []).append(g)
            log(a, f"[pytorch {arm['name']} seed {seed}] growth per layer {g:.4f}")
    table = {k: {"median": statistics.median(v), "min": min(v), "max": max(v), "n": len(v)} for k, v in growth.items()}
    out = a.out or "out/pytorch-init-gradient"
    os.makedirs(out, exist_ok=True)
    write_atomic(os.path.join(out, "study.json"),
                 json.dumps({"study": "init-gradient", "framework": "pytorch " + torch.__version__, "seeds": study["seeds"],
                             "arms": study["arms"], "runs": runs, "growth_per_layer": table}, indent=2) + "\n")
    for k, v in table.items():
        print(f"{k:10s} gradient growth per layer toward the input: {v['median']:.4f} [{v['min']:.4f}-{v['max']:.4f}] over {v['n']} seeds")
    print(f"results: {out}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=["compare", "sweep", "bench", "init-gradient"])
    p.add_argument("--arms", default="no_bn,bn", help="compare, sweep: the arms to run (no_bn, bn or both)")
    p.add_argument("--track-norm", default="", help="compare: record this parameter's norm at every step (before the update)")
    p.add_argument("--from", dest="from_", default="", help="init-gradient: the study.json of minidl's run")
    p.add_argument("--bn", action="store_true", help="bench: the model with BN")
    p.add_argument("--infer-batch-size", type=int, default=1000)
    p.add_argument("--input-shape", default="1,28,28", help="bench: C,H,W of the random images (with --arch)")
    p.add_argument("--classes", type=int, default=10, help="bench: classes of the random labels (with --arch)")
    p.add_argument("--data", default="data/mnist")
    p.add_argument("--model", default="cnn", choices=["cnn", "mlp"])
    p.add_argument("--act", default="sigmoid", choices=list(ACTS))
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--lrs", default="0.01,0.05,0.2,1,5")
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--arch", default="", help="a minidl spec (scripts/minidl_spec.py); the no-BN arm drops its bn layers")
    p.add_argument("--optimizer", default="sgd", choices=["sgd", "adamw"])
    p.add_argument("--weight-decay", type=float, default=None, help="SGD's coupled L2 (0), AdamW's decoupled (0.01)")
    p.add_argument("--nesterov", action="store_true")
    p.add_argument("--lr-schedule", default="constant")
    p.add_argument("--warmup", type=int, default=0)
    p.add_argument("--augment", default="none")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--epochs", type=float, default=0.0)
    p.add_argument("--steps", type=int, default=0)
    p.add_argument("--seeds", default="3")
    p.add_argument("--eval-every", default=None, help="N steps, 0 (only at the end) or epoch")
    p.add_argument("--train-limit", type=int, default=0)
    p.add_argument("--test-limit", type=int, default=0)
    p.add_argument("--no-shuffle", action="store_true")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None)
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args()
    if a.command == "init-gradient":
        torch.set_num_threads(a.threads)
        if not a.from_:
            sys.exit("init-gradient needs --from DIR/study.json (a minidl study init-gradient run)")
        init_gradient(a)
        return
    if a.command == "bench":
        torch.set_num_threads(a.threads)
        a.steps = a.steps or 200
        bench(a)
        return
    if a.epochs and a.steps:
        sys.exit("--epochs and --steps cannot both be given")
    if a.eval_every is None:
        a.eval_every = 100 if a.command == "compare" else 0
    elif a.eval_every != "epoch":
        a.eval_every = int(a.eval_every)
    if a.weight_decay is None:
        a.weight_decay = 0.01 if a.optimizer == "adamw" else 0.0
    a.out = a.out or f"out/pytorch-{a.command}"
    torch.set_num_threads(a.threads)
    seeds = parse_seeds(a.seeds)
    data = load(a.data, a.train_limit, a.test_limit)
    os.makedirs(a.out, exist_ok=True)
    lrs = [a.lr] if a.command == "compare" else [float(x) for x in a.lrs.split(",")]
    runs, curves_csv = [], io.StringIO()
    w = csv.writer(curves_csv, lineterminator="\n")
    cols = ["step", "epoch", "images", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "seconds"]
    w.writerow(["arm", "seed"] + cols)
    sweep_rows = [["lr", "arm", "seed", "final_test_acc", "final_test_loss", "diverged", "diverged_step", "steps",
                   "images_per_s"]]
    for lr in lrs:
        for seed in seeds:
            for arm in [x for x in ("no_bn", "bn") if x in a.arms.split(",")]:
                curve, r = train_run(a, data, arm == "bn", lr, seed, a.eval_every)
                rec = run_record(arm, lr, seed, curve, r)
                runs.append(rec)
                for pt in curve:
                    w.writerow([arm, seed] + [pt[c] for c in cols])
                sweep_rows.append([lr, arm, seed, "" if rec["final_test_acc"] is None else rec["final_test_acc"],
                                   "" if rec["final_test_loss"] is None else rec["final_test_loss"],
                                   "true" if rec["diverged"] else "false",
                                   "" if rec["diverged_step"] is None else rec["diverged_step"], rec["steps"],
                                   rec["images_per_s"]])
                log(a, f"[pytorch {arm} lr={lr:g} seed {seed}] "
                       + (f"diverged at step {rec['diverged_step']}" if rec["diverged"]
                          else f"test accuracy {100 * rec['final_test_acc']:.2f}%"))
    summary = summarize(runs)
    common = {"config": config_json(a, lrs[0]), "seeds": seeds, "runs": runs, "summary": summary,
              "paired": paired(runs), "train_images": len(data[0][0]), "test_images": len(data[1][0])}
    if a.command == "compare":
        if a.arch:
            common["arms"] = [{"name": "no_bn", "model": minidl_spec.without(a.arch, "bn")}, {"name": "bn", "model": a.arch}]
        else:
            common["arms"] = [{"name": "no_bn", "model": f"{a.model} {a.act} without BN"},
                              {"name": "bn", "model": f"{a.model} {a.act} with BN"}]
        write_atomic(os.path.join(a.out, "curves.csv"), curves_csv.getvalue())
        write_atomic(os.path.join(a.out, "summary.json"), json.dumps(common, indent=2) + "\n")
    else:
        common["lrs"] = lrs
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(sweep_rows)
        write_atomic(os.path.join(a.out, "sweep.csv"), buf.getvalue())
        write_atomic(os.path.join(a.out, "sweep.json"), json.dumps(common, indent=2) + "\n")
    for s in summary:
        acc = s["final_test_acc"]
        cell = "-" if acc["median"] is None else f"{100 * acc['median']:.2f} [{100 * acc['min']:.2f}-{100 * acc['max']:.2f}]"
        print(f"{s['arm']:6s} lr {s['lr']:<6g} {cell}  diverged {s['diverged']} of {s['n']}")
    print(f"results: {a.out}")


if __name__ == "__main__":
    main()
