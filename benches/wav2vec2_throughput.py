#!/usr/bin/env python3
"""Benchmark (not a test): wav2vec 2.0 pretraining throughput of pt's `wav2vec2` architecture +
objective next to Hugging Face transformers' Wav2Vec2ForPreTraining on the same model config,
batch, clip length, threads and device, measured in the same run. Prints frames/s (one frame =
20 ms of audio) of each and the ratio.

    .pt/venv/bin/python benches/wav2vec2_throughput.py                    # CPU: tiny, 8 x 4 s
    .pt/venv/bin/python benches/wav2vec2_throughput.py --preset base --batch 8 --seconds 15 --device cuda

Both train on the same clips of exactly --seconds (noise written as 16 kHz WAVs, read by pt's
`audio` dataset through its real pipeline) with span masking p 0.65 / length 10, 100 negatives,
AdamW and gradient clipping; fp32 on CPU; on CUDA pt uses its configured precision and PyTorch
bf16 autocast.
"""
import argparse, json, os, subprocess, sys, tempfile, time, wave
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PRESETS = {  # conv width, hidden, layers, heads, ffn, pos kernel, pos groups (as plugins/wav2vec)
    "tiny": (128, 128, 2, 2, 512, 32, 8), "small": (256, 256, 4, 4, 1024, 64, 16),
    "base": (512, 768, 12, 12, 3072, 128, 16),
}
RATE = 16000


def write_clips(folder, n, seconds):
    import numpy as np
    rng = np.random.default_rng(0)
    lines = ["."]
    for i in range(n):
        pcm = (rng.standard_normal(int(seconds * RATE)) * 3000).clip(-32768, 32767).astype("<i2")
        with wave.open(str(folder / f"{i}.wav"), "wb") as w:
            w.setnchannels(1), w.setsampwidth(2), w.setframerate(RATE), w.writeframes(pcm.tobytes())
        lines.append(f"{i}.wav\t{len(pcm)}")
    (folder / "clips.tsv").write_text("\n".join(lines) + "\n")
    return folder / "clips.tsv"


def run_pt(args, manifest, work):
    recipe = f"""
[run]
device = "{args.device}"
batch_size = {args.batch}
max_steps = {args.warmup + args.steps}
log_every = 1
num_threads = {args.threads}
grad_clip = 10.0
[checkpoint]
every = 0
[data]
name = "audio"
path = "{manifest}"
max_seconds = {args.seconds}
[arch]
name = "wav2vec2"
preset = "{args.preset}"
layerdrop = 0.0
[objective]
name = "wav2vec2"
[optim]
name = "adamw"
lr = 1e-4
"""
    (work / "bench.toml").write_text(recipe)
    cmd = [os.environ.get("PT_BIN", str(REPO / "target/release/pt")), "train", "--recipe", str(work / "bench.toml"),
           "--run-dir", str(work / "run"), "--quiet"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    rows = [json.loads(l) for l in (work / "run/metrics.jsonl").read_text().splitlines()]
    times = [r["step_time_s"] for r in rows if "step_time_s" in r and r["step"] > args.warmup]
    return sum(times) / len(times)


def run_torch(args):
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2ForPreTraining
    from transformers.models.wav2vec2.modeling_wav2vec2 import _compute_mask_indices, _sample_negative_indices
    torch.set_num_threads(args.threads)
    C, H, L, A, F, K, G = PRESETS[args.preset]
    cfg = Wav2Vec2Config(hidden_size=H, num_hidden_layers=L, num_attention_heads=A, intermediate_size=F,
                         conv_dim=[C] * 7, num_conv_pos_embeddings=K, num_conv_pos_embedding_groups=G,
                         layerdrop=0.0, feat_proj_dropout=0.1, activation_dropout=0.0, feat_quantizer_dropout=0.1,
                         mask_time_prob=0.65, mask_time_length=10, num_negatives=100,
                         attn_implementation="sdpa")
    dev = torch.device("cuda" if args.device.startswith("cuda") else "cpu")
    model = Wav2Vec2ForPreTraining(cfg).to(dev).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    samples = int(args.seconds * RATE)
    frames = int(model._get_feat_extract_output_lengths(samples))
    audio = torch.randn(args.batch, samples, generator=torch.Generator().manual_seed(0)).to(dev)
    times = []
    for i in range(args.warmup + args.steps):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        # Drawn every step on the CPU, as pt's objective does.
        mask = _compute_mask_indices((args.batch, frames), 0.65, 10, min_masks=2)
        neg = _sample_negative_indices((args.batch, frames), 100, mask_time_indices=mask)
        mask = torch.tensor(mask, device=dev)
        neg = torch.tensor(neg, device=dev, dtype=torch.long)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            loss = model(audio, mask_time_indices=mask, sampled_negative_indices=neg).loss / mask.sum()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    return sum(times) / len(times), frames


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="tiny", choices=PRESETS)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="pt-w2v-bench-") as tmp:
        work = Path(tmp)
        manifest = write_clips(work, args.batch * (args.warmup + args.steps), args.seconds)
        pt_step = run_pt(args, manifest, work)
    ref_step, frames = run_torch(args)
    pt, ref = args.batch * frames / pt_step, args.batch * frames / ref_step
    print(f"wav2vec2 {args.preset}, batch {args.batch} x {args.seconds:g} s ({frames} frames), "
          f"{args.threads} threads, {args.device}")
    print(f"pt:                       {pt:10.0f} frames/s")
    print(f"PyTorch + transformers:   {ref:10.0f} frames/s")
    print(f"ratio pt / PyTorch:       {pt / ref:10.2f}")


if __name__ == "__main__":
    sys.exit(main())
