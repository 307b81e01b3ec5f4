#!/usr/bin/env python3
"""Benchmark (not a test): does pt's data path keep the training step fed? The same `pt train`
(supervised ResNet, same batch, size, device and steps) twice, measured in the same run:

  streamed  `image_shards`: PNGs in tar shards (written by `pt data pack`), read and decoded per
            batch on `--workers` threads, aspect-preserving resize + centre crop: the real data
            path for a set larger than memory;
  in memory `image_folder`: the same images decoded once before training, so each batch is only
            sliced, pinned and copied (the nearest pt has to data already on the device).

Prints each run's steps/s (median step time after `--warmup`), the ratio streamed / in memory
(issue 21's target on a GPU: >= 0.90) and the streamed run's median `loader_wait_share`.

    .pt/venv/bin/python benches/loader_share.py                                  # CPU: resnet18, 64 px
    python3 benches/loader_share.py --arch resnet50 --batch 256 --size 224 --device cuda --workers 16
"""
import argparse, json, os, statistics, subprocess, sys, tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loader_throughput import PT, make_images  # noqa: E402  (same images, same pt binary)


def train(args, data, work, name):
    recipe = f"""
[run]
device = "{args.device}"
batch_size = {args.batch}
max_steps = {args.warmup + args.steps}
log_every = 1
grad_clip = 0.0
[checkpoint]
every = 0
[data]
{data}
image_size = {args.size}
workers = {args.workers}
mean = [0.5, 0.5, 0.5]
std = [0.25, 0.25, 0.25]
[arch]
name = "{args.arch}"
[objective]
name = "supervised"
[optim]
name = "sgd"
lr = 0.01
"""
    (work / f"{name}.toml").write_text(recipe)
    run = work / name
    subprocess.run([PT, "train", "--recipe", str(work / f"{name}.toml"), "--run-dir", str(run), "--quiet"],
                   check=True, stdout=subprocess.DEVNULL)
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "step_time_s" in r and r["step"] > args.warmup]
    steps_per_s = 1.0 / statistics.median(r["step_time_s"] for r in rows)
    wait = statistics.median(r.get("loader_wait_share", 0.0) for r in rows)
    return steps_per_s, wait


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arch", default="resnet18", choices=["resnet18", "resnet34", "resnet50"])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--workers", type=int, default=os.cpu_count())
    p.add_argument("--device", default="cpu")
    p.add_argument("--count", type=int, default=1024)
    args = p.parse_args()
    images = make_images(args.count, 320, 240)
    work = Path(tempfile.mkdtemp(prefix="pt-loader-share-"))
    shards = work / "shards"
    subprocess.run([PT, "data", "pack", str(images), str(shards), "--shard-size", "256"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    streamed, wait = train(args, f'name = "image_shards"\nshards = ["{shards}"]', work, "streamed")
    memory, _ = train(args, f'name = "image_folder"\npath = "{images}"', work, "memory")
    print(f"{args.arch} supervised, batch {args.batch} x {args.size} px, {args.device}, {args.workers} decode workers")
    print(f"streamed (image_shards) : {streamed:8.2f} steps/s   loader_wait_share {wait:.3f}")
    print(f"in memory (image_folder): {memory:8.2f} steps/s")
    print(f"ratio streamed / memory : {streamed / memory:8.2f}")


if __name__ == "__main__":
    sys.exit(main())
