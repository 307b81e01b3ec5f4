#!/usr/bin/env python3
"""Benchmark (not a test): training throughput (images/s) of pt's ResNets next to torchvision +
PyTorch on the same model, batch, image size, threads and device, measured in the same run.

    .pt/venv/bin/python benches/image_throughput.py                                   # CPU: supervised resnet18, 64 x 64 px
    .pt/venv/bin/python benches/image_throughput.py --mode simclr --batch 32          # SimCLR, 2 x 32 views
    .pt/venv/bin/python benches/image_throughput.py --arch resnet50 --batch 256 --size 224 --device cuda
    .pt/venv/bin/python benches/image_throughput.py --mode simclr --arch resnet50 --batch 256 --size 224 --device cuda

pt runs its real pipeline (`pt train` on a folder of PNGs made once, decoded by its
`image_folder` dataset, augmentation on the device, flat-buffer SGD). The PyTorch side trains
torchvision's model on the same images already in memory: supervised with cross-entropy, SimCLR
with two views per image from torchvision.transforms.v2 (applied image by image, as a
DataLoader would, on the training device), a 2-layer projection head and NT-Xent. Both use SGD
with momentum. fp32 on CPU; on CUDA pt uses its configured precision and PyTorch bf16 autocast
with channels_last. images/s counts source images (one SimCLR image = two views).
"""
import argparse, json, os, subprocess, sys, tempfile, time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def make_images(size, count):
    """`count` random RGB PNGs of `size` px in 10 class folders, cached between runs."""
    import numpy as np
    from PIL import Image
    root = Path(os.environ.get("PT_DATA") or Path.home() / ".cache/pt/data") / f"bench/png-{size}-{count}"
    if (root / ".complete").exists():
        return root
    rng = np.random.default_rng(0)
    for i in range(count):
        d = root / f"class{i % 10}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(d / f"{i:05d}.png")
    (root / ".complete").write_text("ok")
    return root


def run_pt(args, images):
    run_dir = Path(tempfile.mkdtemp(prefix="pt-bench-"))
    objective = 'name = "supervised"' if args.mode == "supervised" else 'name = "simclr"\nonline_probe = false'
    head = "" if args.mode == "supervised" else "num_classes = 0"
    recipe = f"""
[run]
device = "{args.device}"
batch_size = {args.batch}
max_steps = {args.warmup + args.steps}
log_every = 1
num_threads = {args.threads}
grad_clip = 0.0
[checkpoint]
every = 0
[data]
name = "image_folder"
path = "{images}"
mean = [0.5, 0.5, 0.5]
std = [0.25, 0.25, 0.25]
[arch]
name = "{args.arch}"
{head}
[objective]
{objective}
[optim]
name = "sgd"
lr = 0.01
"""
    (run_dir / "bench.toml").write_text(recipe)
    cmd = [os.environ.get("PT_BIN", str(REPO / "target/release/pt")), "train", "--recipe", str(run_dir / "bench.toml"),
           "--run-dir", str(run_dir / "run"), "--quiet"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    rows = [json.loads(l) for l in (run_dir / "run/metrics.jsonl").read_text().splitlines()]
    times = [r["step_time_s"] for r in rows if "step_time_s" in r and r["step"] > args.warmup]
    return args.batch / (sum(times) / len(times))


def nt_xent(z, tau):
    import torch
    import torch.nn.functional as F
    z = F.normalize(z.float(), dim=1)
    n = z.shape[0]
    sim = (z @ z.T / tau).masked_fill(torch.eye(n, dtype=torch.bool, device=z.device), float("-inf"))
    return F.cross_entropy(sim, (torch.arange(n, device=z.device) + n // 2) % n)


def run_torch(args, images):
    import numpy as np, torch, torchvision
    from PIL import Image
    from torchvision.transforms import v2
    torch.set_num_threads(args.threads)
    dev = torch.device("cuda" if args.device.startswith("cuda") else "cpu")
    files = sorted(images.glob("class*/*.png"))[: args.batch]
    x = torch.stack([torch.from_numpy(np.asarray(Image.open(f))).permute(2, 0, 1) for f in files]).float() / 255
    x = ((x - 0.5) / 0.25).to(dev)
    y = torch.tensor([int(f.parent.name[5:]) for f in files], device=dev)
    simclr = args.mode == "simclr"
    model = getattr(torchvision.models, args.arch)(num_classes=10)
    params = list(model.parameters())
    if simclr:
        dim = model.fc.in_features
        model.fc = torch.nn.Identity()
        head = torch.nn.Sequential(torch.nn.Linear(dim, dim), torch.nn.ReLU(), torch.nn.Linear(dim, 128)).to(dev)
        params = list(model.parameters()) + list(head.parameters())
        s = 1.0 if args.size >= 64 else 0.5
        augment = v2.Compose([
            v2.RandomResizedCrop(args.size, antialias=False), v2.RandomHorizontalFlip(),
            v2.RandomApply([v2.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s)], p=0.8),
            v2.RandomGrayscale(p=0.2),
            *([v2.RandomApply([v2.GaussianBlur(args.size // 10 | 1, (0.1, 2.0))], p=0.5)] if args.size >= 64 else []),
        ])
    model = model.to(dev).train()
    cuda = dev.type == "cuda"
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9)
    times = []
    for i in range(args.warmup + args.steps):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        if simclr:
            pixels = (x * 0.25 + 0.5).clamp(0, 1)
            views = torch.cat([torch.stack([augment(img) for img in pixels]) for _ in range(2)])
            inputs = (views - 0.5) / 0.25
        else:
            inputs = x
        if cuda:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cuda):
            out = model(inputs)
            loss = nt_xent(head(out.float()), 0.5) if simclr else torch.nn.functional.cross_entropy(out.float(), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    return args.batch / (sum(times) / len(times))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", default="supervised", choices=["supervised", "simclr"])
    ap.add_argument("--arch", default="resnet18", choices=["resnet18", "resnet34", "resnet50"])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    images = make_images(args.size, max(args.batch * 2, 256))
    pt = run_pt(args, images)
    ref = run_torch(args, images)
    views = " (2 views each)" if args.mode == "simclr" else ""
    print(f"{args.mode} {args.arch}, batch {args.batch}{views} x {args.size} px, {args.threads} threads, {args.device}")
    print(f"pt:                     {pt:10.1f} images/s")
    print(f"PyTorch + torchvision:  {ref:10.1f} images/s")
    print(f"ratio pt / PyTorch:     {pt / ref:10.2f}")


if __name__ == "__main__":
    sys.exit(main())
