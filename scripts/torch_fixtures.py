#!/usr/bin/python3
"""Regenerates tests/fixtures/torch_reference.json: small cases computed by PyTorch (Debian's
python3-torch) that the Catch2 suite replays in minidl, number for number.

Usage: scripts/torch_fixtures.py [OUT_JSON]
"""
import json
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import minidl_spec  # noqa: E402

torch.manual_seed(0)
cases = {}


def t(x):
    return {"shape": list(x.shape), "data": [float(v) for v in x.detach().reshape(-1).tolist()]}


def bn_case(shape, training):
    C = shape[1]
    x = (torch.randn(*shape) * 2 + 0.5).requires_grad_()
    bn = torch.nn.BatchNorm2d(C) if len(shape) == 4 else torch.nn.BatchNorm1d(C)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2.0)
        bn.bias.uniform_(-1, 1)
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    init = {k: t(v) for k, v in bn.state_dict().items() if k != "num_batches_tracked"}
    bn.train(training)
    y = bn(x)
    r = torch.randn_like(y)
    (y * r).sum().backward()
    return {"x": t(x), "r": t(r), "init": init, "training": training, "y": t(y), "dx": t(x.grad),
            "dweight": t(bn.weight.grad), "dbias": t(bn.bias.grad),
            "running_mean": t(bn.running_mean), "running_var": t(bn.running_var)}


cases["bn2d_train"] = bn_case((4, 3, 3, 2), True)
cases["bn2d_eval"] = bn_case((4, 3, 3, 2), False)
cases["bn1d_train"] = bn_case((6, 4), True)

x = torch.randn(2, 3, 7, 6, requires_grad=True)
w = torch.randn(4, 3, 3, 3, requires_grad=True)
b = torch.randn(4, requires_grad=True)
y = F.conv2d(x, w, b, stride=2, padding=1)
r = torch.randn_like(y)
(y * r).sum().backward()
cases["conv2d"] = {"x": t(x), "w": t(w), "b": t(b), "stride": 2, "padding": 1, "r": t(r), "y": t(y),
                   "dx": t(x.grad), "dw": t(w.grad), "db": t(b.grad)}

logits = torch.randn(5, 10, requires_grad=True)
labels = torch.tensor([3, 0, 9, 9, 1])
loss = F.cross_entropy(logits, labels)
loss.backward()
cases["cross_entropy"] = {"logits": t(logits), "labels": labels.tolist(), "loss": float(loss),
                          "dlogits": t(logits.grad)}


def optimizer_case(make, steps=3):
    p = torch.randn(6, requires_grad=True)
    p0 = p.detach().clone()
    opt = make([p])
    grads = []
    for _ in range(steps):
        g = torch.randn(6)
        grads.append(t(g))
        p.grad = g.clone()
        opt.step()
    return {"p0": t(p0), "grads": grads, "p": t(p)}


cases["sgd_momentum"] = optimizer_case(lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01))
cases["sgd_nesterov"] = optimizer_case(lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.8, nesterov=True))
cases["sgd_plain"] = optimizer_case(lambda ps: torch.optim.SGD(ps, lr=0.3))
cases["adam"] = optimizer_case(lambda ps: torch.optim.Adam(ps, lr=0.01, betas=(0.8, 0.95), weight_decay=0.1), steps=4)
cases["adamw"] = optimizer_case(lambda ps: torch.optim.AdamW(ps, lr=0.01, betas=(0.8, 0.95), weight_decay=0.1), steps=4)


def schedule_case(make, steps=40, lr=0.2, momentum=0.9):
    """The lr (and SGD momentum) before each of `steps` optimizer steps, the scheduler stepped after each."""
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=lr, momentum=momentum)
    sched = make(opt)
    lrs, moms = [], []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        moms.append(opt.param_groups[0]["momentum"])
        p.grad = torch.ones(1)
        opt.step()
        sched.step()
    return {"lr": lr, "steps": steps, "lrs": lrs, "momenta": moms}


S = torch.optim.lr_scheduler
warm = lambda o, n: S.LinearLR(o, start_factor=1.0 / 3.0, total_iters=n)
cases["schedules"] = {
    "step:7:0.5": schedule_case(lambda o: S.StepLR(o, step_size=7, gamma=0.5)),
    "multistep:5/12/30:0.3": schedule_case(lambda o: S.MultiStepLR(o, milestones=[5, 12, 30], gamma=0.3)),
    "cosine:0.001": schedule_case(lambda o: S.CosineAnnealingLR(o, T_max=40, eta_min=0.001)),
    "onecycle:0.25": schedule_case(lambda o: S.OneCycleLR(o, max_lr=0.2, total_steps=40, pct_start=0.25)),
    "cosine warmup:6": schedule_case(lambda o: S.ChainedScheduler([warm(o, 6), S.CosineAnnealingLR(o, T_max=40)])),
    "step:10 warmup:5": schedule_case(lambda o: S.ChainedScheduler([warm(o, 5), S.StepLR(o, step_size=10)])),
}

def norm_case(module, shape, scale=2.0, shift=0.5):
    """Float32 inputs and parameters; the expected values are computed in float64 from them,
    since PyTorch's float32 GroupNorm loses ~1e-3 relative on a group of mean 100, std 0.01
    (measured) where minidl's two-pass centring does not."""
    x32 = torch.randn(*shape) * scale + shift
    with torch.no_grad():
        module.weight.uniform_(0.5, 2.0)
        module.bias.uniform_(-1, 1)
    module = module.double()
    x = x32.double().requires_grad_()
    y = module(x)
    r = torch.randn_like(y)
    (y * r).sum().backward()
    return {"x": t(x), "r": t(r), "weight": t(module.weight), "bias": t(module.bias), "y": t(y), "dx": t(x.grad),
            "dweight": t(module.weight.grad), "dbias": t(module.bias.grad)}


cases["groupnorm_4d"] = dict(norm_case(torch.nn.GroupNorm(3, 6), (3, 6, 4, 5)), groups=3)
cases["groupnorm_2d"] = dict(norm_case(torch.nn.GroupNorm(2, 8), (5, 8)), groups=2)
cases["groupnorm_1group"] = dict(norm_case(torch.nn.GroupNorm(1, 4), (2, 4, 3, 3), scale=0.01, shift=100.0), groups=1)
cases["layernorm_chw"] = dict(norm_case(torch.nn.LayerNorm([3, 4, 5]), (2, 3, 4, 5)), normalized_shape=[3, 4, 5])
cases["layernorm_last"] = dict(norm_case(torch.nn.LayerNorm([7]), (4, 3, 7)), normalized_shape=[7])

# A spec model against the nn.Sequential of the same layers: minidl builds
#   conv(4,3,pad=1) bn relu maxpool(2) conv(6,3) groupnorm(2) sigmoid maxpool(2) flatten linear(16) layernorm tanh
#   dropout(0) linear(10)
# loads this state dict with PyTorch's names, and must give the same logits, loss gradients and
# BN running statistics (one training step's forward and backward, then eval logits).
def sequential_case(spec, seq, x_shape, labels):
    """The nn.Sequential's state dict, one training step's logits, loss, gradients and running
    statistics, then its eval logits, for minidl's model of `spec` to replay."""
    # The PyTorch builder of specs (scripts/minidl_spec.py) must give this hand-written tree.
    with torch.random.fork_rng():  # its initial values must not move the fixtures' draws
        built = minidl_spec.build(spec, x_shape[1:]).state_dict()
    mine = seq.state_dict()
    assert list(built) == list(mine) and all(built[k].shape == mine[k].shape for k in mine), \
        f"minidl_spec.build({spec!r}) differs from the hand-written model"
    with torch.no_grad():
        for name, p in seq.named_parameters():
            if name.endswith("weight") and p.dim() == 1:
                p.uniform_(0.5, 1.5)
            elif name.endswith("bias") and p.dim() == 1:
                p.uniform_(-0.5, 0.5)
    x = torch.rand(*x_shape)
    labels = torch.tensor(labels)
    state = {k: t(v) for k, v in seq.state_dict().items()}
    seq.train()
    logits = seq(x)
    loss = F.cross_entropy(logits, labels)
    loss.backward()
    grads = {k: t(p.grad) for k, p in seq.named_parameters()}
    after = {k: t(v) for k, v in seq.state_dict().items() if "running" in k or "num_batches" in k}
    seq.eval()
    with torch.no_grad():
        eval_logits = seq(x)
    return {"spec": spec, "state_dict": state, "state_dict_order": list(seq.state_dict().keys()), "x": t(x),
            "labels": labels.tolist(), "train_logits": t(logits), "loss": float(loss), "grads": grads,
            "buffers_after": after, "eval_logits": t(eval_logits)}


cases["sequential_spec"] = sequential_case(
    "conv(4,3,pad=1) bn relu maxpool(2) conv(6,3) groupnorm(2) sigmoid maxpool(2) flatten linear(16) "
    "layernorm tanh dropout(0) linear(10)",
    torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1, bias=False), torch.nn.BatchNorm2d(4), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(4, 6, 3, bias=False), torch.nn.GroupNorm(2, 6), torch.nn.Sigmoid(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(6 * 6 * 6, 16, bias=False), torch.nn.LayerNorm([16]), torch.nn.Tanh(),
        torch.nn.Dropout(0.0), torch.nn.Linear(16, 10)),
    (5, 1, 28, 28), [1, 7, 3, 3, 0])

# The same on colour input of another shape and class count, with average pooling:
#   conv(6,3,pad=1) bn relu avgpool(2) conv(8,3,pad=1) relu globalavgpool flatten linear(5) on 3x12x10
cases["sequential_spec_rgb"] = sequential_case(
    "conv(6,3,pad=1) bn relu avgpool(2) conv(8,3,pad=1) relu globalavgpool flatten linear(5)",
    torch.nn.Sequential(
        torch.nn.Conv2d(3, 6, 3, padding=1, bias=False), torch.nn.BatchNorm2d(6), torch.nn.ReLU(), torch.nn.AvgPool2d(2),
        torch.nn.Conv2d(6, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
        torch.nn.Linear(8, 5)),
    (4, 3, 12, 10), [4, 0, 2, 2])

# Residual blocks (identity and projected shortcuts), grouped and depthwise convolutions, and a
# residual block over flat features, as minidl's res(...) and conv(groups=) build them:
#   res(BODY) is Residual(body=Sequential(BODY), proj=Sequential(1x1 conv or linear [+ BODY's last
#   normalization]) when BODY changes the shape).
Residual = minidl_spec.Residual


nn = torch.nn
cases["sequential_spec_res"] = sequential_case(
    "conv(8,3,pad=1) bn relu res(conv(8,3,pad=1) bn relu conv(8,3,pad=1) bn) relu "
    "res(conv(12,3,stride=2,pad=1) bn relu conv(12,3,pad=1) bn) relu conv(12,3,pad=1,groups=12) bn relu "
    "conv(6,1,groups=3) relu globalavgpool flatten linear(16) res(linear(16) relu linear(8)) tanh linear(4)",
    nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        Residual(nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                               nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8))),
        nn.ReLU(),
        Residual(nn.Sequential(nn.Conv2d(8, 12, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(12), nn.ReLU(),
                               nn.Conv2d(12, 12, 3, padding=1, bias=False), nn.BatchNorm2d(12)),
                 nn.Sequential(nn.Conv2d(8, 12, 1, stride=2, bias=False), nn.BatchNorm2d(12))),
        nn.ReLU(),
        nn.Conv2d(12, 12, 3, padding=1, groups=12, bias=False), nn.BatchNorm2d(12), nn.ReLU(),
        nn.Conv2d(12, 6, 1, groups=3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 16),
        Residual(nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 8)), nn.Sequential(nn.Linear(16, 8))),
        nn.Tanh(), nn.Linear(8, 4)),
    (5, 3, 10, 9), [3, 0, 1, 2, 2])

# The PyTorch peer's reimplementation of minidl's augmentation draws (pytorch_peer.py): the
# C++ test applies augment_batch and must find these shifts and mirrors, so that the peer's
# augmented batches are minidl's.
import pytorch_peer  # noqa: E402

cases["augment_draws"] = [
    {"seed": seed, "step": step, "first": first, "padding": pad, "flip": flip,
     "draws": [[int(v) for v in pytorch_peer.augment_draws(seed, step, first + b, pad, flip)] for b in range(4)]}
    for seed in (0, 7, (1 << 40) + 3) for step in (0, 5, 1000) for first in (0, 64)
    for pad, flip in ((2, True), (4, False), (0, True))]

# ... and the peer's batch augmentation applies those draws as minidl does, pixel for pixel.
def check_peer_augment():
    B, C, H, W, P = 6, 2, 7, 8, 3
    x = torch.arange(1, B * C * H * W + 1, dtype=torch.float32).view(B, C, H, W)
    black = torch.tensor([-1.0, -2.0])
    y = pytorch_peer.augment(x, P, True, black, 9, 4, 10)
    for b in range(B):
        dy, dx, m = pytorch_peer.augment_draws(9, 4, 10 + b, P, True)
        for c in range(C):
            for r in range(H):
                for q in range(W):
                    sy, sx = r + dy, (W - 1 - q if m else q) + dx
                    want = x[b, c, sy, sx] if 0 <= sy < H and 0 <= sx < W else black[c]
                    assert y[b, c, r, q] == want, "pytorch_peer.augment differs from minidl's rule"


with torch.random.fork_rng():
    check_peer_augment()

out = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/torch_reference.json"
with open(out, "w") as f:
    json.dump({"torch_version": torch.__version__, "cases": cases}, f, indent=None, separators=(",", ":"))
print(f"wrote {out} (torch {torch.__version__})")
