#!/usr/bin/python3
"""Checks that checkpoints move between minidl and PyTorch, number for number.

1. minidl trains briefly and saves; PyTorch loads the file with load_state_dict(strict=True)
   and evaluates the test set; both report the same accuracy and loss.
2. PyTorch trains briefly and saves a safetensors file (no metadata); minidl evaluates it and
   reports the same accuracy and loss as PyTorch.

The safetensors format is read and written here by hand (Debian has no python3-safetensors);
it follows the published layout: u64 header length, JSON header, raw little-endian data.
Usage: scripts/check_torch_interop.py MNIST_DIR [MINIDL_BINARY]
"""
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "shared", "peers"))
import torch_cnn  # noqa: E402  (the reference PyTorch model)

DTYPES = {"F32": (np.float32, torch.float32), "I64": (np.int64, torch.int64), "F64": (np.float64, torch.float64)}


def load_file(path):
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    out = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        arr = np.frombuffer(data[8 + n + begin:8 + n + end], dtype=DTYPES[info["dtype"]][0]).reshape(info["shape"])
        out[name] = torch.from_numpy(arr.copy())
    return out


def save_file(tensors, path):
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous()
        dtype = {torch.float32: "F32", torch.int64: "I64"}[t.dtype]
        raw = t.numpy().tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def torch_eval(net, x, y):
    net.eval()
    with torch.no_grad():
        logits = torch.cat([net(x[i:i + 1000]) for i in range(0, len(x), 1000)])
    return (logits.argmax(1) == y).float().mean().item(), F.cross_entropy(logits, y).item()


def main():
    mnist = sys.argv[1]
    minidl = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(__file__), "..", "build", "minidl")
    _, _, xte, yte = torch_cnn.load(mnist)
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for bn in (False, True):
            # 1. minidl -> PyTorch
            ckpt = os.path.join(tmp, f"minidl_{bn}.safetensors")
            subprocess.run([minidl, "train", "--data", mnist, "--bn" if bn else "--no-bn", "--steps", "200",
                            "--eval-every", "0", "--quiet", "--save", ckpt], check=True, stdout=subprocess.DEVNULL)
            net = torch_cnn.Net(bn, "sigmoid")
            net.load_state_dict(load_file(ckpt), strict=True)
            t_acc, t_loss = torch_eval(net, xte, yte)
            m = json.loads(subprocess.run([minidl, "eval", "--json", "--checkpoint", ckpt, "--data", mnist],
                                          check=True, capture_output=True, text=True).stdout)
            same = abs(m["accuracy"] - t_acc) <= 2e-4 and abs(m["loss"] - t_loss) <= 1e-4 * max(1, t_loss)
            ok &= same
            print(f"minidl -> torch  bn={bn}: minidl acc {m['accuracy']:.4f} loss {m['loss']:.6f} | "
                  f"torch acc {t_acc:.4f} loss {t_loss:.6f}  {'OK' if same else 'MISMATCH'}")
            # 2. PyTorch -> minidl
            torch.manual_seed(1)
            net = torch_cnn.Net(bn, "sigmoid")
            opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
            xtr, ytr, _, _ = torch_cnn.load(mnist)
            for s in range(100):
                loss = F.cross_entropy(net(xtr[s * 64:(s + 1) * 64]), ytr[s * 64:(s + 1) * 64])
                opt.zero_grad()
                loss.backward()
                opt.step()
            path = os.path.join(tmp, f"torch_{bn}.safetensors")
            save_file(net.state_dict(), path)
            t_acc, t_loss = torch_eval(net, xte, yte)
            m = json.loads(subprocess.run([minidl, "eval", "--json", "--checkpoint", path, "--data", mnist,
                                           "--model", "cnn", "--act", "sigmoid", "--bn", "true" if bn else "false"],
                                          check=True, capture_output=True, text=True).stdout)
            same = abs(m["accuracy"] - t_acc) <= 2e-4 and abs(m["loss"] - t_loss) <= 1e-4 * max(1, t_loss)
            ok &= same
            print(f"torch -> minidl  bn={bn}: minidl acc {m['accuracy']:.4f} loss {m['loss']:.6f} | "
                  f"torch acc {t_acc:.4f} loss {t_loss:.6f}  {'OK' if same else 'MISMATCH'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
