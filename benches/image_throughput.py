#!/usr/bin/env python3
"""Benchmark (not a test): training throughput (images/s) of pt's ResNets next to torchvision +
PyTorch on the same model, batch, image size, threads and device, measured in the same run under
benches/protocol.py (warm-up, timed steps, repeats with alternated order, median and min-max,
MFU).

    .pt/venv/bin/python benches/image_throughput.py                                   # CPU: supervised resnet18, 64 x 64 px
    .pt/venv/bin/python benches/image_throughput.py --mode simclr --batch 32          # SimCLR, 2 x 32 views
    .pt/venv/bin/python benches/image_throughput.py --arch resnet50 --batch 256 --size 224 --device cuda --compile
    .pt/venv/bin/python benches/image_throughput.py --mode simclr --arch resnet50 --batch 256 --size 224 --device cuda

pt's row is its real pipeline: `pt train` on a folder of random PNGs (made once, cached), decoded
by its `image_folder` dataset, augmentation (SimCLR) on the device, flat-buffer SGD with
momentum. The PyTorch rows train torchvision's model (channels_last model and input,
torch.backends.cudnn.benchmark on CUDA, torch.optim.SGD(fused=True, momentum=0.9)) on the first
--batch of the same images, decoded once and kept on the device:

  supervised, cross-entropy on the 10 class labels:
    eager + channels_last + fused SGD    model only (batch ready on device)
    torch.compile (--compile)            the same model and optimizer, the model compiled
  simclr, two views per image, 2-layer projection head (hidden = feature width, 128 out), NT-Xent
  (temperature 0.5); the views are made inside the timed step from the images on the device:
    per-image transforms.v2 (DataLoader-style)   torchvision.transforms.v2 applied image by image
        (RandomResizedCrop, flip, ColorJitter p 0.8, RandomGrayscale p 0.2, GaussianBlur p 0.5 at
        >= 64 px), as a DataLoader's per-sample transform would, but on the training device
    batched GPU-style augmentation   the same transforms as whole-batch tensor ops on the device
        (no per-image Python loop): torchvision's RandomResizedCrop box sampling vectorised and
        all boxes resampled by one affine_grid + grid_sample (bilinear, flip folded in); colour
        jitter with per-image factors in one random order per batch (torchvision draws the order
        per image); grayscale; separable Gaussian blur with a per-image sigma as grouped convs.
        Each random transform runs only on its chosen images (their count drawn on the host, the
        images by a device randperm), so nothing is read back from the device.
    batched GPU-style augmentation + torch.compile (--compile)   the model and head compiled

Colour-jitter strength 1 and blur at >= 64 px, else strength 0.5 and no blur (pt's `auto` preset).
fp32 on the CPU; on CUDA pt uses its default precision (bf16 autocast) and PyTorch bf16 autocast.
images/s counts source images (one SimCLR image = two views).
MFU: 3 x the forward FLOPs of the network per image (torch.utils.flop_counter: convolutions and
matmuls; SimCLR: encoder + head, x 2 views), i.e. backward = 2 x forward; augmentation not counted.
"""
import argparse, functools, math, sys, tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import protocol  # noqa: E402

MEAN, STD = 0.5, 0.25  # the normalisation both sides use


def make_images(size, count):
    """`count` random RGB PNGs of `size` px in 10 class folders, cached between runs."""
    import numpy as np
    from PIL import Image
    root = protocol.DATA / f"bench/png-{size}-{count}"
    if (root / ".complete").exists():
        return root
    rng = np.random.default_rng(0)
    for i in range(count):
        d = root / f"class{i % 10}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(d / f"{i:05d}.png")
    (root / ".complete").write_text("ok")
    return root


def pt_recipe(args, images) -> str:
    objective = 'name = "supervised"' if args.mode == "supervised" else 'name = "simclr"\nonline_probe = false'
    head = "" if args.mode == "supervised" else "num_classes = 0"
    return protocol.pt_run_section(args, grad_clip=0.0) + f"""
[data]
name = "image_folder"
path = "{images}"
mean = [{MEAN}, {MEAN}, {MEAN}]
std = [{STD}, {STD}, {STD}]
[arch]
name = "{args.arch}"
{head}
[objective]
{objective}
[optim]
name = "sgd"
lr = 0.01
"""


def load_batch(args, images, device):
    """The first --batch images as [0, 1] pixels on the device, and their class labels."""
    import numpy as np, torch
    from PIL import Image
    files = sorted(images.glob("class*/*.png"))[: args.batch]
    pixels = torch.stack([torch.from_numpy(np.array(Image.open(f))).permute(2, 0, 1) for f in files]).float() / 255
    labels = torch.tensor([int(f.parent.name[5:]) for f in files])
    return pixels.to(device), labels.to(device)


def build_net(args):
    """torchvision's ResNet; for SimCLR without its classifier and with the projection head."""
    import torch, torchvision
    model = getattr(torchvision.models, args.arch)(num_classes=10)
    if args.mode == "supervised":
        return model
    dim = model.fc.in_features
    model.fc = torch.nn.Identity()
    head = torch.nn.Sequential(torch.nn.Linear(dim, dim), torch.nn.ReLU(), torch.nn.Linear(dim, 128))
    return torch.nn.Sequential(model, head)


def flops_per_image(args) -> float:
    import torch
    with torch.device("meta"):
        net, x = build_net(args), torch.empty(1, 3, args.size, args.size)
    views = 2 if args.mode == "simclr" else 1
    return 3 * views * protocol.forward_flops(net, x)


def nt_xent(z, tau):
    import torch
    import torch.nn.functional as F
    z = F.normalize(z.float(), dim=1)
    n = z.shape[0]
    sim = (z @ z.T / tau).masked_fill(torch.eye(n, dtype=torch.bool, device=z.device), float("-inf"))
    return F.cross_entropy(sim, (torch.arange(n, device=z.device) + n // 2) % n)


# ---------------------------------------------------------------------------------------------
# SimCLR augmentation: per image (torchvision.transforms.v2) and batched
# ---------------------------------------------------------------------------------------------

def simclr_strength(size):
    """Colour-jitter strength and whether to blur (pt's `auto` preset)."""
    return (1.0, True) if size >= 64 else (0.5, False)


def per_image_augment(size):
    from torchvision.transforms import v2
    s, blur = simclr_strength(size)
    return v2.Compose([
        v2.RandomResizedCrop(size, antialias=False), v2.RandomHorizontalFlip(),
        v2.RandomApply([v2.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s)], p=0.8),
        v2.RandomGrayscale(p=0.2),
        *([v2.RandomApply([v2.GaussianBlur(size // 10 | 1, (0.1, 2.0))], p=0.5)] if blur else []),
    ])


@functools.cache
def host_rng():
    import numpy as np
    return np.random.default_rng(0)


def on_random_subset(x, p, fn):
    """`fn` applied to each image of `x` with probability p: the count is drawn on the host and
    the images by a device randperm, so no device value is read back."""
    import torch
    k = int(host_rng().binomial(len(x), p))
    if k == 0:
        return x
    idx = torch.randperm(len(x), device=x.device)[:k]
    return x.index_copy(0, idx, fn(x.index_select(0, idx)))


def resized_crop_flip(x, size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    """RandomResizedCrop + RandomHorizontalFlip of a batch: torchvision's box sampling (10 tries,
    the first that fits, else the whole square image) vectorised; one grid_sample for all boxes."""
    import torch
    import torch.nn.functional as F
    n, c, h, w = x.shape
    area = torch.empty(n, 10, device=x.device).uniform_(*scale) * (h * w)
    aspect = torch.empty(n, 10, device=x.device).uniform_(math.log(ratio[0]), math.log(ratio[1])).exp()
    bw, bh = (area * aspect).sqrt().round(), (area / aspect).sqrt().round()
    fits = (bw >= 1) & (bw <= w) & (bh >= 1) & (bh <= h)
    first = fits.int().argmax(1, keepdim=True)
    bw = torch.where(fits.any(1), bw.gather(1, first)[:, 0], float(w))
    bh = torch.where(fits.any(1), bh.gather(1, first)[:, 0], float(h))
    top = (torch.rand(n, device=x.device) * (h - bh + 1)).floor()
    left = (torch.rand(n, device=x.device) * (w - bw + 1)).floor()
    sign = torch.where(torch.rand(n, device=x.device) < 0.5, -1.0, 1.0)
    zero = torch.zeros(n, device=x.device)
    theta = torch.stack([sign * bw / w, zero, (2 * left + bw) / w - 1, zero, bh / h, (2 * top + bh) / h - 1], 1)
    grid = F.affine_grid(theta.view(n, 2, 3), [n, c, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def gray(x):
    """ITU-R 601 luma [n, 1, h, w], as torchvision."""
    return (0.2989 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])


def blend(x, other, f):
    return (f * x + (1 - f) * other).clamp(0, 1)


def shift_hue(x, hue):
    """torchvision's adjust_hue (RGB -> HSV, rotate, -> RGB) with a per-image hue [n, 1, 1, 1]."""
    import torch
    maxc, minc = x.amax(1, keepdim=True), x.amin(1, keepdim=True)
    chroma, flat = maxc - minc, maxc == minc
    ones = torch.ones_like(maxc)
    sat = chroma / torch.where(flat, ones, maxc)
    rc, gc, bc = ((maxc - x) / torch.where(flat, ones, chroma)).split(1, 1)
    r_max, g_max = maxc == x[:, 0:1], maxc == x[:, 1:2]
    h = torch.where(r_max, bc - gc, torch.where(g_max, 2.0 + rc - bc, 4.0 + gc - rc))
    h = (h / 6.0 + 1.0 + hue) % 1.0
    h6 = h * 6.0
    sector = h6.floor()
    f = h6 - sector
    p = (maxc * (1 - sat)).clamp(0, 1)
    q = (maxc * (1 - sat * f)).clamp(0, 1)
    t = (maxc * (1 - sat * (1 - f))).clamp(0, 1)
    sector = sector.long() % 6
    pick = lambda *planes: torch.cat(planes, 1).gather(1, sector)
    return torch.cat([pick(maxc, q, p, p, t, maxc), pick(t, maxc, maxc, q, p, p), pick(p, p, t, maxc, maxc, q)], 1)


def color_jitter(x, s):
    """ColorJitter(0.8 s, 0.8 s, 0.8 s, 0.2 s) with per-image factors, one random order per batch."""
    import torch
    n = len(x)
    factor = lambda lo, hi: torch.empty(n, 1, 1, 1, device=x.device).uniform_(lo, hi)
    b, c, sat = (factor(max(0.0, 1 - 0.8 * s), 1 + 0.8 * s) for _ in range(3))
    hue = factor(-0.2 * s, 0.2 * s)
    ops = [lambda v: (v * b).clamp(0, 1), lambda v: blend(v, gray(v).mean((1, 2, 3), keepdim=True), c),
           lambda v: blend(v, gray(v), sat), lambda v: shift_hue(v, hue)]
    for i in torch.randperm(4).tolist():
        x = ops[i](x)
    return x


def gaussian_blur(x, kernel):
    """Separable Gaussian blur, sigma uniform in [0.1, 2] per image, reflect padding, as two
    grouped convolutions over [1, n * c, h, w]."""
    import torch
    import torch.nn.functional as F
    n, c, h, w = x.shape
    sigma = torch.empty(n, 1, device=x.device).uniform_(0.1, 2.0)
    t = torch.arange(kernel, device=x.device) - (kernel - 1) / 2
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)
    pad = kernel // 2
    y = F.conv2d(F.pad(x.reshape(1, n * c, h, w), (pad, pad, 0, 0), mode="reflect"), k.view(n * c, 1, 1, kernel),
                 groups=n * c)
    y = F.conv2d(F.pad(y, (0, 0, pad, pad), mode="reflect"), k.view(n * c, 1, kernel, 1), groups=n * c)
    return y.view(n, c, h, w)


def batched_views(pixels, size):
    """Two SimCLR views of each image, [2n, 3, size, size], all in whole-batch ops."""
    import torch
    s, blur = simclr_strength(size)
    x = resized_crop_flip(torch.cat([pixels, pixels]), size)
    x = on_random_subset(x, 0.8, lambda v: color_jitter(v, s))
    x = on_random_subset(x, 0.2, lambda v: gray(v).expand(-1, 3, -1, -1))
    if blur:
        x = on_random_subset(x, 0.5, lambda v: gaussian_blur(v, size // 10 | 1))
    return x.clamp(0, 1)


# ---------------------------------------------------------------------------------------------
# The PyTorch rows
# ---------------------------------------------------------------------------------------------

def torch_rows(args, images, device):
    """The PyTorch rows, sharing one network and optimizer."""
    import torch
    import torch.nn.functional as F
    cuda = device.type == "cuda"
    torch.backends.cudnn.benchmark = cuda
    net = build_net(args).to(device, memory_format=torch.channels_last).train()
    compiled = torch.compile(net) if args.compile else None
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, fused=True)
    pixels, labels = load_batch(args, images, device)
    normalise = lambda v: ((v - MEAN) / STD).contiguous(memory_format=torch.channels_last)

    def row(label, forward, inputs, loss_of, timed=protocol.MODEL_ONLY):
        def step():
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                loss = loss_of(forward(inputs()))
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        return protocol.TorchRow(label, step, args.batch, timed, optional=forward is compiled)

    if args.mode == "supervised":
        x = normalise(pixels)
        ce = lambda out: F.cross_entropy(out.float(), labels)
        rows = [row("eager + channels_last + fused SGD", net, lambda: x, ce)]
        if args.compile:
            rows.append(row("torch.compile", compiled, lambda: x, ce))
        return rows
    timed = "augment + model (images ready on device)"
    loss = lambda z: nt_xent(z, 0.5)
    augment = per_image_augment(args.size)
    per_image = lambda: normalise(torch.cat([torch.stack([augment(img) for img in pixels]) for _ in range(2)]))
    batched = lambda: normalise(batched_views(pixels, args.size))
    rows = [row("per-image transforms.v2 (DataLoader-style)", net, per_image, loss, timed),
            row("batched GPU-style augmentation", net, batched, loss, timed)]
    if args.compile:
        rows.append(row("batched GPU-style augmentation + torch.compile", compiled, batched, loss, timed))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", default="supervised", choices=["supervised", "simclr"])
    ap.add_argument("--arch", default="resnet18", choices=["resnet18", "resnet34", "resnet50"])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=64)
    protocol.add_args(ap, compile_row=True)
    args = ap.parse_args()
    protocol.check_args(args)
    images = make_images(args.size, max(args.batch * 2, 256))
    device = protocol.torch_device(args)
    rows = torch_rows(args, images, device)
    with tempfile.TemporaryDirectory(prefix="pt-image-bench-") as tmp:
        pt = lambda rep: protocol.pt_seconds_per_step(pt_recipe(args, images), Path(tmp), args, rep)
        results = protocol.measure(args, device, pt, args.batch, rows)
    views = " (2 views each)" if args.mode == "simclr" else ""
    network = "encoder + head, x 2 views" if args.mode == "simclr" else "network"
    protocol.report(
        args, f"{args.mode} {args.arch}, batch {args.batch}{views} x {args.size} px", "image", results,
        flops_per_image(args), f"3 x forward FLOPs ({network}, flop_counter)",
        {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "json"})


if __name__ == "__main__":
    sys.exit(main())
