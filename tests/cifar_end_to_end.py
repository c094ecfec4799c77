#!/usr/bin/python3
"""A CIFAR-10-shaped run end to end, and its checkpoint in PyTorch (a ctest; exit 77: skipped).

1. Writes CIFAR-10's binary layout (data_batch_1..5.bin, test_batch.bin, batches.meta.txt;
   records of 1 label byte + 3072 pixel bytes, R then G then B planes) with separable classes:
   class k is a 12x12 square of its own colour at a random place on a noisy background.
2. minidl trains a residual spec with BN on it, with crop-and-flip augmentation, a cosine
   schedule and evaluation after each epoch, and must reach the target accuracy.
3. PyTorch builds the same module tree from the spec (scripts/minidl_spec.py), loads the
   checkpoint with strict=True, reads the test file itself, normalizes it with the checkpoint's
   recorded mean and std, and must give minidl's logits (`minidl eval --logits`).

Usage: cifar_end_to_end.py MINIDL_BINARY SOURCE_DIR
"""
import csv
import json
import os
import struct
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import torch
except ImportError:
    print("SKIPPED: python3-torch is not installed (scripts/deps.sh torch installs it)")
    sys.exit(77)

minidl, source = sys.argv[1], sys.argv[2]
sys.path.insert(0, os.path.join(source, "scripts"))
import minidl_spec  # noqa: E402

ARCH = ("conv(16,3,pad=1) bn relu res(conv(16,3,pad=1) bn relu conv(16,3,pad=1) bn) relu "
        "res(conv(32,3,stride=2,pad=1) bn relu conv(32,3,pad=1) bn) relu "
        "conv(32,3,pad=1,groups=32) bn relu globalavgpool flatten linear(10)")
TARGET = 0.95
COLOURS = [(230, 30, 30), (30, 230, 30), (30, 30, 230), (230, 230, 30), (230, 30, 230), (30, 230, 230),
           (240, 240, 240), (130, 60, 10), (250, 140, 20), (120, 120, 120)]


def records(n, rng):
    out = bytearray()
    for _ in range(n):
        k = int(rng.integers(10))
        img = rng.integers(0, 70, size=(3, 32, 32))
        y, x = (int(v) for v in rng.integers(0, 21, size=2))
        for c in range(3):
            img[c, y:y + 12, x:x + 12] = COLOURS[k][c] + rng.integers(-15, 16, size=(12, 12))
        out.append(k)
        out += np.clip(img, 0, 255).astype(np.uint8).tobytes()
    return bytes(out)


def load_file(path):
    """A safetensors file by hand (Debian has no python3-safetensors): tensors and metadata."""
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    dtypes = {"F32": np.float32, "I64": np.int64}
    tensors = {}
    for name, info in header.items():
        b, e = info["data_offsets"]
        arr = np.frombuffer(data[8 + n + b:8 + n + e], dtype=dtypes[info["dtype"]]).reshape(info["shape"])
        tensors[name] = torch.from_numpy(arr.copy())
    return tensors, meta


def main():
    rng = np.random.default_rng(5)
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "cifar-10-batches-bin")
        os.makedirs(data)
        for b in range(1, 6):
            open(os.path.join(data, f"data_batch_{b}.bin"), "wb").write(records(120, rng))
        open(os.path.join(data, "test_batch.bin"), "wb").write(records(200, rng))
        open(os.path.join(data, "batches.meta.txt"), "w").write(
            "\n".join(["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]) + "\n")
        ckpt = os.path.join(tmp, "res.safetensors")
        run = subprocess.run([minidl, "train", "--data", tmp, "--arch", ARCH, "--augment", "crop:4,flip",
                              "--lr-schedule", "cosine", "--lr", "0.05", "--epochs", "6", "--batch-size", "40",
                              "--eval-every", "epoch", "--save", ckpt, "--quiet"], capture_output=True, text=True)
        if run.returncode != 0:
            sys.exit(f"minidl train failed ({run.returncode}): {run.stderr}")
        print(run.stdout.strip())
        ev = subprocess.run([minidl, "eval", "--json", "--checkpoint", ckpt, "--data", tmp, "--logits",
                             os.path.join(tmp, "logits.csv")], capture_output=True, text=True)
        if ev.returncode != 0:
            sys.exit(f"minidl eval failed: {ev.stderr}")
        acc = json.loads(ev.stdout)["accuracy"]
        ok = True
        print(f"minidl: test accuracy {100 * acc:.2f}% (target {100 * TARGET:.0f}%)")
        if acc < TARGET:
            print("FAIL: below the target")
            ok = False

        tensors, meta = load_file(ckpt)
        assert meta["model"] == "spec" and meta["input_shape"] == "3,32,32" and meta["classes"] == "10", meta
        assert json.loads(meta["class_names"])[9] == "truck", meta
        net = minidl_spec.build(meta["arch"], (3, 32, 32), classes=10)
        net.load_state_dict(tensors, strict=True)
        net.eval()
        raw = np.frombuffer(open(os.path.join(data, "test_batch.bin"), "rb").read(), dtype=np.uint8).reshape(-1, 3073)
        labels = raw[:, 0].astype(np.int64)
        mean = np.array([float(v) for v in meta["input_mean"].split(",")], dtype=np.float32).reshape(1, 3, 1, 1)
        std = np.array([float(v) for v in meta["input_std"].split(",")], dtype=np.float32).reshape(1, 3, 1, 1)
        x = (raw[:, 1:].reshape(-1, 3, 32, 32).astype(np.float32) / np.float32(255.0) - mean) / std
        with torch.no_grad():
            theirs = net(torch.from_numpy(np.ascontiguousarray(x))).numpy()
        rows = list(csv.reader(open(os.path.join(tmp, "logits.csv"))))[1:]
        mine = np.array([[float(v) for v in r[2:]] for r in rows], dtype=np.float64)
        mine_labels = np.array([int(r[1]) for r in rows])
        if not (mine_labels == labels).all():
            print("FAIL: minidl's test labels differ from the file's")
            ok = False
        scale = max(1.0, float(np.abs(theirs).max()))
        worst = float(np.abs(mine - theirs).max()) / scale
        agree = float((mine.argmax(1) == theirs.argmax(1)).mean())
        print(f"PyTorch: strict load of {len(tensors)} tensors; logits differ by at most {worst:.2e} of their "
              f"scale; predictions agree on {100 * agree:.1f}%; PyTorch accuracy "
              f"{100 * float((theirs.argmax(1) == labels).mean()):.2f}%")
        if worst > 1e-4:
            print("FAIL: logits differ by more than 1e-4")
            ok = False
    sys.exit(0 if ok else 1)


main()
