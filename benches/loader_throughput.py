#!/usr/bin/env python3
"""Benchmark (not a test): images read, decoded, resized and centre-cropped per second by pt's
data path next to torchvision's DataLoader, on the same PNG files, image size, batch and cores,
measured in the same run.

    .pt/venv/bin/python benches/loader_throughput.py                 # 1,024 PNGs of 320×240, 224 px, batch 64
    .pt/venv/bin/python benches/loader_throughput.py --workers 1     # one core each

pt: the `image_shards` dataset in a real `pt train` run (shards written by `pt data pack`,
decoded per batch on `--workers` threads in the loader); its rate is `loader_samples_per_s`
from metrics.jsonl (samples per second of the loader thread's own work: read, decode,
resize, crop, to float, normalise, collate), median over the logged steps. The model is a
width-8 ResNet-18 so the run is short; it trains beside the loader on the same cores, which
only slows pt's side (the PyTorch side runs its loader alone).

PyTorch: a map-style Dataset over the same PNG files (PIL open, `Resize(224)` + `CenterCrop(224)`
with antialiasing, `PILToTensor`, to float, normalise) in a `DataLoader` with `--workers`
worker processes, batch 64, persistent workers; images/s over the batches after the first
`--warmup`, median of three passes.
"""
import argparse, json, os, statistics, subprocess, sys, tempfile, time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PT = os.environ.get("PT_BIN", str(REPO / "target/release/pt"))


def make_images(count, w, h):
    """`count` PNGs of w×h (smooth random content, so PNG compression is realistic) in 10 class
    folders, cached between runs."""
    import numpy as np
    from PIL import Image
    root = Path(os.environ.get("PT_DATA") or Path.home() / ".cache/pt/data") / f"bench/loader-{w}x{h}-{count}"
    if (root / ".complete").exists():
        return root
    rng = np.random.default_rng(0)
    for i in range(count):
        d = root / f"class{i % 10}"
        d.mkdir(parents=True, exist_ok=True)
        small = rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8)
        Image.fromarray(small).resize((w, h), Image.BILINEAR).save(d / f"{i:05d}.png")
    (root / ".complete").write_text("ok")
    return root


def run_pt(args, images, work):
    shards = work / "shards"
    if not shards.exists():
        subprocess.run([PT, "data", "pack", str(images), str(shards), "--shard-size", "256"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    recipe = f"""
[run]
device = "cpu"
batch_size = {args.batch}
max_steps = {args.steps}
log_every = 1
num_threads = 1
prefetch = 1
[checkpoint]
every = 0
[data]
name = "image_shards"
shards = ["{shards}"]
image_size = {args.size}
workers = {args.workers}
mean = [0.5, 0.5, 0.5]
std = [0.25, 0.25, 0.25]
[arch]
name = "resnet18"
width = 8
[objective]
name = "supervised"
[optim]
name = "sgd"
lr = 0.01
"""
    (work / "bench.toml").write_text(recipe)
    run = work / f"run-{time.time_ns()}"
    subprocess.run([PT, "train", "--recipe", str(work / "bench.toml"), "--run-dir", str(run), "--quiet"], check=True,
                   stdout=subprocess.DEVNULL)
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    rates = [r["loader_samples_per_s"] for r in rows if "loader_samples_per_s" in r and r["step"] > args.warmup]
    return statistics.median(rates)


class Folder:
    def __init__(self, files, size):
        from torchvision.transforms import v2
        import torch
        self.files = files
        self.transform = v2.Compose([
            v2.PILToTensor(), v2.Resize(size, antialias=True), v2.CenterCrop(size),
            v2.ToDtype(torch.float32, scale=True), v2.Normalize([0.5] * 3, [0.25] * 3),
        ])

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        from PIL import Image
        with Image.open(self.files[i]) as img:
            return self.transform(img.convert("RGB")), int(self.files[i].parent.name[5:])


def run_torch(args, images):
    import torch
    torch.set_num_threads(1)
    files = sorted(images.glob("class*/*.png"))
    loader = torch.utils.data.DataLoader(Folder(files, args.size), batch_size=args.batch, shuffle=True,
                                         num_workers=args.workers, persistent_workers=args.workers > 0,
                                         drop_last=True)
    passes = []
    for _ in range(3):
        count, start = 0, None
        for i, (x, _) in enumerate(loader):
            if i == args.warmup:
                start, count = time.perf_counter(), 0
            count += x.shape[0]
            if i + 1 >= args.steps:
                break
        passes.append((count - args.batch) / (time.perf_counter() - start) if start else 0.0)
    return statistics.median(passes)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--count", type=int, default=1024)
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--workers", type=int, default=os.cpu_count())
    args = p.parse_args()
    images = make_images(args.count, args.width, args.height)
    work = Path(tempfile.mkdtemp(prefix="pt-loader-bench-"))
    ours = run_pt(args, images, work)
    theirs = run_torch(args, images)
    print(f"{args.count} PNGs {args.width}x{args.height} -> {args.size} px, batch {args.batch}, "
          f"{args.workers} worker(s), {os.cpu_count()} cores")
    print(f"pt image_shards loader : {ours:8.1f} images/s")
    print(f"torchvision DataLoader : {theirs:8.1f} images/s")
    print(f"ratio pt / torchvision : {ours / theirs:8.2f}")


if __name__ == "__main__":
    sys.exit(main())
