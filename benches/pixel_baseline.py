#!/usr/bin/env python3
"""Reference point for linear probes: multinomial logistic regression on raw pixels, trained on
the first N images per class of an IDX training set (the same subset pt's probe recipes take with
`max_per_class`) and tested on the IDX test set. Prints test accuracy.

    .pt/venv/bin/python benches/pixel_baseline.py fashion-mnist      # 1,500 per class = 15k images
    .pt/venv/bin/python benches/pixel_baseline.py mnist --per-class 1500
"""
import argparse, os, struct
from pathlib import Path

import numpy as np
import torch


def idx(path):
    data = path.read_bytes()
    dims = data[3]
    shape = struct.unpack(f">{dims}I", data[4:4 + 4 * dims])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("set", choices=["mnist", "fashion-mnist"])
    ap.add_argument("--per-class", type=int, default=1500)
    ap.add_argument("--l2", type=float, default=1e-4)
    args = ap.parse_args()
    root = Path(os.environ.get("PT_DATA") or Path.home() / ".cache/pt/data") / "images" / args.set
    xtr, ytr = idx(root / "train-images-idx3-ubyte"), idx(root / "train-labels-idx1-ubyte")
    keep, seen = [], np.zeros(10, int)
    for i, y in enumerate(ytr):  # the first N of each class, in file order (as max_per_class)
        if seen[y] < args.per_class:
            keep.append(i)
            seen[y] += 1
    x = torch.tensor(xtr[keep].reshape(len(keep), -1), dtype=torch.float64) / 255
    y = torch.tensor(ytr[keep], dtype=torch.long)
    xte = torch.tensor(idx(root / "t10k-images-idx3-ubyte").reshape(-1, 784), dtype=torch.float64) / 255
    yte = torch.tensor(idx(root / "t10k-labels-idx1-ubyte"), dtype=torch.long)
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    x, xte = (x - mean) / std, (xte - mean) / std
    w = torch.zeros(784, 10, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(10, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=500, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ w + b, y) + args.l2 * (w ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    acc = ((xte @ w + b).argmax(1) == yte).double().mean().item()
    print(f"{args.set}: logistic regression on raw pixels, {len(keep)} train images -> test accuracy {acc:.4f}")


if __name__ == "__main__":
    main()
