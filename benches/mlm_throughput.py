#!/usr/bin/env python3
"""Benchmark (not a test): MLM training throughput (tokens/s) of pt's `bert` next to Hugging Face
transformers' BertForMaskedLM on the same model config, vocabulary, batch, sequence length,
threads and device, measured in the same run under benches/protocol.py (warm-up, timed steps,
repeats with alternated order, median and min-max, MFU).

    .pt/venv/bin/python benches/mlm_throughput.py                      # CPU: bert mini, 32 x 128
    .pt/venv/bin/python benches/mlm_throughput.py --preset base --batch 256 --seq 128 --device cuda --compile

Rows:
  pt train                      pt's real pipeline: `pt train` on the fetched text (tokenised and
                                packed into blocks by its `text` dataset), masking in the `mlm`
                                objective, flat AdamW, gradient clipping 1.0.
  eager + SDPA + fused AdamW    BertForMaskedLM (attn_implementation="sdpa"), loss from the model
                                (MLM logits over all positions, ignore -100),
                                torch.optim.AdamW(fused=True), clip_grad_norm_ 1.0. Model only: one
                                batch of random ids with 15 % of positions masked (-> [MASK] id 4),
                                made once and kept on the device.
  torch.compile (--compile)     the same model and optimizer, the model under torch.compile
                                (default mode); compilation happens in the warm-up steps.

fp32 on the CPU; on CUDA pt uses its default precision (bf16 autocast) and PyTorch bf16 autocast.
The vocabulary is --vocab (default 8000, or 30522 as real bert-base with --preset base).
MFU: 6 x N FLOPs per token, N = all parameters of BertForMaskedLM (the tied word embedding
counted once, as the MLM decoder's matmul), attention-score FLOPs ignored.
"""
import argparse, os, sys, tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import protocol  # noqa: E402

PRESETS = {  # layers, hidden, heads, ffn  (as plugins/mlm)
    "tiny": (2, 128, 2, 512), "mini": (4, 256, 4, 1024), "small": (4, 512, 8, 2048),
    "medium": (8, 512, 8, 2048), "base": (12, 768, 12, 3072),
}
BERT_BASE_VOCAB = 30522


def pt_recipe(args) -> str:
    return protocol.pt_run_section(args) + f"""
[data]
name = "text"
files = ["{protocol.DATA}/text/train.txt"]
vocab_size = {args.vocab}
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


def masked_batch(args, device):
    """Random ids with 15 % of positions replaced by [MASK] (id 4), and their labels."""
    import torch
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, args.vocab, (args.batch, args.seq), generator=g)
    chosen = torch.rand(args.batch, args.seq, generator=g) < 0.15
    labels = torch.where(chosen, ids, torch.full_like(ids, -100))
    inputs = torch.where(chosen, torch.full_like(ids, 4), ids)
    return inputs.to(device), labels.to(device)


def torch_rows(args, device):
    """The PyTorch rows (sharing one model and optimizer) and N, the model's parameter count."""
    import torch
    from transformers import BertConfig, BertForMaskedLM
    L, H, A, F = PRESETS[args.preset]
    cfg = BertConfig(vocab_size=args.vocab, hidden_size=H, num_hidden_layers=L, num_attention_heads=A,
                     intermediate_size=F, max_position_embeddings=max(args.seq, 512), attn_implementation="sdpa")
    model = BertForMaskedLM(cfg).to(device).train()
    params = list(model.parameters())
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01, fused=True)
    inputs, labels = masked_batch(args, device)
    bf16 = device.type == "cuda"

    def step_of(forward):
        def step():
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = forward(input_ids=inputs, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
        return step

    tokens = args.batch * args.seq
    rows = [protocol.TorchRow("eager + SDPA + fused AdamW", step_of(model), tokens)]
    if args.compile:
        rows.append(protocol.TorchRow("torch.compile", step_of(torch.compile(model)), tokens, optional=True))
    return rows, sum(p.numel() for p in params)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="mini", choices=PRESETS)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--vocab", type=int, default=None, help="default 8000; 30522 with --preset base")
    protocol.add_args(ap, compile_row=True)
    args = ap.parse_args()
    protocol.check_args(args)
    args.vocab = args.vocab or (BERT_BASE_VOCAB if args.preset == "base" else 8000)
    device = protocol.torch_device(args)
    rows, n_params = torch_rows(args, device)
    with tempfile.TemporaryDirectory(prefix="pt-mlm-bench-") as tmp:
        pt = lambda rep: protocol.pt_seconds_per_step(pt_recipe(args), Path(tmp), args, rep)
        results = protocol.measure(args, device, pt, args.batch * args.seq, rows)
    protocol.report(
        args, f"MLM: bert {args.preset}, vocab {args.vocab}, batch {args.batch} x {args.seq} tokens", "token",
        results, 6 * n_params, f"6 x N, N = {n_params / 1e6:.2f} M parameters (attention scores ignored)",
        {k: v for k, v in vars(args).items() if k != "json"})


if __name__ == "__main__":
    sys.exit(main())
