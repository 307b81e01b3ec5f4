#!/usr/bin/env python3
"""Benchmark (not a test): MLM training throughput of pt's `bert` next to Hugging Face
transformers' BertForMaskedLM on the same model config, batch, sequence length, threads and
device, measured in the same run. Prints tokens/s of each and the ratio.

    .pt/venv/bin/python benches/mlm_throughput.py                      # CPU: bert mini, 32 x 128
    .pt/venv/bin/python benches/mlm_throughput.py --preset base --batch 256 --seq 128 --device cuda

pt runs its real pipeline (`pt train` on the fetched text, masking in the objective, flat AdamW);
the PyTorch side trains on random ids with the same 15 % masking and torch.optim.AdamW. Both
use fp32 on CPU; on CUDA pt uses its configured precision and PyTorch bf16 autocast.
"""
import argparse, json, os, subprocess, sys, tempfile, time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PRESETS = {  # layers, hidden, heads, ffn  (as plugins/mlm)
    "tiny": (2, 128, 2, 512), "mini": (4, 256, 4, 1024), "small": (4, 512, 8, 2048),
    "medium": (8, 512, 8, 2048), "base": (12, 768, 12, 3072),
}


def run_pt(args, vocab):
    data = Path(os.environ.get("PT_DATA") or Path.home() / ".cache/pt/data")
    run_dir = Path(tempfile.mkdtemp(prefix="pt-bench-"))
    recipe = f"""
[run]
device = "{args.device}"
batch_size = {args.batch}
max_steps = {args.warmup + args.steps}
log_every = 1
num_threads = {args.threads}
[checkpoint]
every = 0
[data]
name = "text"
files = ["{data}/text/train.txt"]
vocab_size = {vocab}
block_size = {args.seq}
[arch]
name = "bert"
preset = "{args.preset}"
max_position_embeddings = {max(args.seq, 512)}
[objective]
name = "mlm"
[optim]
name = "adamw"
lr = 1e-4
"""
    (run_dir / "bench.toml").write_text(recipe)
    cmd = [os.environ.get("PT_BIN", str(REPO / "target/release/pt")), "train", "--recipe", str(run_dir / "bench.toml"),
           "--run-dir", str(run_dir / "run"), "--quiet"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    rows = [json.loads(l) for l in (run_dir / "run/metrics.jsonl").read_text().splitlines()]
    times = [r["step_time_s"] for r in rows if "step_time_s" in r and r["step"] > args.warmup]
    return args.batch * args.seq / (sum(times) / len(times))


def run_torch(args, vocab):
    import torch
    from transformers import BertConfig, BertForMaskedLM
    torch.set_num_threads(args.threads)
    L, H, A, F = PRESETS[args.preset]
    cfg = BertConfig(vocab_size=vocab, hidden_size=H, num_hidden_layers=L, num_attention_heads=A,
                     intermediate_size=F, max_position_embeddings=max(args.seq, 512),
                     attn_implementation="sdpa")
    dev = torch.device("cuda" if args.device.startswith("cuda") else "cpu")
    model = BertForMaskedLM(cfg).to(dev).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, vocab, (args.batch, args.seq), generator=g)
    chosen = torch.rand(args.batch, args.seq, generator=g) < 0.15
    labels = torch.where(chosen, ids, torch.full_like(ids, -100))
    inputs = torch.where(chosen, torch.full_like(ids, 4), ids)
    inputs, labels = inputs.to(dev), labels.to(dev)
    times = []
    for i in range(args.warmup + args.steps):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            loss = model(input_ids=inputs, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    return args.batch * args.seq / (sum(times) / len(times))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="mini", choices=PRESETS)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--vocab", type=int, default=8000)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    pt = run_pt(args, args.vocab)
    ref = run_torch(args, args.vocab)
    print(f"bert {args.preset}, batch {args.batch} x {args.seq}, {args.threads} threads, {args.device}")
    print(f"pt:                       {pt:10.0f} tokens/s")
    print(f"PyTorch + transformers:   {ref:10.0f} tokens/s")
    print(f"ratio pt / PyTorch:       {pt / ref:10.2f}")


if __name__ == "__main__":
    sys.exit(main())
