#!/usr/bin/env python3
"""Benchmark (not a test): wav2vec 2.0 pretraining throughput (frames/s; one frame = 20 ms of
audio) of pt's `wav2vec2` architecture + objective next to Hugging Face transformers'
Wav2Vec2ForPreTraining on the same model config, batch, clip length, threads and device,
measured in the same run under benches/protocol.py (warm-up, timed steps, repeats with
alternated order, median and min-max, MFU).

    .pt/venv/bin/python benches/wav2vec2_throughput.py                    # CPU: tiny, 8 x 4 s
    .pt/venv/bin/python benches/wav2vec2_throughput.py --preset base --batch 8 --seconds 15 --device cuda

Both sides train on clips of exactly --seconds with span masking p 0.65 / length 10, 100
negatives, AdamW and gradient clipping 10. Rows:

  pt train                     pt's real pipeline: `pt train` on the clips written as 16 kHz WAVs
                               (noise), read by its `audio` dataset; masks and negatives drawn by
                               its `wav2vec2` objective.
  transformers + fused AdamW   Wav2Vec2ForPreTraining(...)(audio, mask_time_indices,
                               sampled_negative_indices).loss / masked frames (SDPA attention),
                               torch.optim.AdamW(fused=True), clip_grad_norm_ 10. transformers
                               quantises, projects and scores (cosine logits against the 100
                               negatives) every frame, masked or not, and reads `neg_is_pos.any()`
                               back from the device each step.
  masked frames only           the same model, parameters and optimizer; the loss is computed
                               here (transformers' Wav2Vec2ForPreTraining.forward cannot restrict
                               it) from transformers' own modules on the masked frames only:
                               `model.wav2vec2` (feature encoder, masking with masked_spec_embed,
                               transformer), then at the masked frames `project_hid`,
                               `dropout_features` + `quantizer` (its perplexity over those frames,
                               as transformers' masked perplexity) + `project_q`,
                               `compute_contrastive_logits` against the same negatives (indices
                               mapped into the masked set), identical negatives set to -inf with a
                               masked_fill instead of the `.any()` read, and the same
                               contrastive + diversity loss / masked frames.

Model only: the audio is one random batch kept on the device; masks and negatives (transformers'
_compute_mask_indices / _sample_negative_indices, and their masked-set indices) are drawn before
timing as a pool of 16 draws on the device, cycled through by the steps.
fp32 on the CPU; on CUDA pt uses its default precision (bf16 autocast) and PyTorch bf16 autocast.
MFU: 3 x the forward FLOPs of transformers' Wav2Vec2Model (feature encoder, projection,
transformer with attention, by torch.utils.flop_counter) per frame; quantiser and contrastive
logits not counted; backward = 2 x forward (the first conv's input gradient, never computed,
included).
"""
import argparse, itertools, sys, tempfile, wave
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import protocol  # noqa: E402

PRESETS = {  # conv width, hidden, layers, heads, ffn, pos kernel, pos groups (as plugins/wav2vec)
    "tiny": (128, 128, 2, 2, 512, 32, 8), "small": (256, 256, 4, 4, 1024, 64, 16),
    "base": (512, 768, 12, 12, 3072, 128, 16),
}
RATE = 16000
MASK_P, MASK_LEN, NEGATIVES = 0.65, 10, 100
POOL = 16  # mask/negative draws made before timing


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


def pt_recipe(args, manifest) -> str:
    return protocol.pt_run_section(args, grad_clip=10.0) + f"""
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


def config(args, attention="sdpa"):
    from transformers import Wav2Vec2Config
    C, H, L, A, F, K, G = PRESETS[args.preset]
    return Wav2Vec2Config(hidden_size=H, num_hidden_layers=L, num_attention_heads=A, intermediate_size=F,
                          conv_dim=[C] * 7, num_conv_pos_embeddings=K, num_conv_pos_embedding_groups=G,
                          layerdrop=0.0, feat_proj_dropout=0.1, activation_dropout=0.0, feat_quantizer_dropout=0.1,
                          mask_time_prob=MASK_P, mask_time_length=MASK_LEN, num_negatives=NEGATIVES,
                          attn_implementation=attention)


@dataclass
class Draw:
    """One step's masks and negatives, on the device."""
    mask: object      # [batch, frames] bool
    negatives: object  # [batch, frames, K] indices into batch * frames (transformers' form)
    masked: object    # [M] flat indices of the masked frames
    masked_negatives: object  # [M, K] the negatives as indices into the M masked frames
    target: object    # [M] zeros: the positive is candidate 0
    count: int        # M


def draw_pool(batch, frames, device):
    import numpy as np, torch
    from transformers.models.wav2vec2.modeling_wav2vec2 import _compute_mask_indices, _sample_negative_indices
    on = lambda a, kind=torch.long: torch.tensor(a, dtype=kind, device=device)
    pool = []
    for _ in range(POOL):
        mask = _compute_mask_indices((batch, frames), MASK_P, MASK_LEN, min_masks=2)
        neg = _sample_negative_indices((batch, frames), NEGATIVES, mask_time_indices=mask).astype(np.int64)
        masked = np.flatnonzero(mask)
        rank = np.zeros(mask.size, np.int64)  # flat frame index -> position among the masked frames
        rank[masked] = np.arange(len(masked))
        pool.append(Draw(on(mask, torch.bool), on(neg), on(masked), on(rank[neg.reshape(-1, NEGATIVES)[masked]]),
                         torch.zeros(len(masked), dtype=torch.long, device=device), len(masked)))
    return pool


def transformers_loss(model, audio, d: Draw):
    return model(audio, mask_time_indices=d.mask, sampled_negative_indices=d.negatives).loss / d.count


def masked_frames_loss(model, audio, d: Draw):
    """Wav2Vec2ForPreTraining's loss from its own modules, on the masked frames only."""
    import torch
    import torch.nn.functional as F
    cfg = model.config
    out = model.wav2vec2(audio, mask_time_indices=d.mask)
    context = model.project_hid(out.last_hidden_state.flatten(0, 1).index_select(0, d.masked))
    features = model.dropout_features(out.extract_features.flatten(0, 1).index_select(0, d.masked))
    quantized, perplexity = model.quantizer(features[None])
    quantized = model.project_q(quantized[0].to(model.project_q.weight.dtype))
    negatives = quantized[d.masked_negatives].transpose(0, 1)  # [K, M, D]
    logits = model.compute_contrastive_logits(quantized[None], negatives, context, cfg.contrastive_logits_temperature)
    same = (quantized[None] == negatives).all(-1)
    logits = torch.cat([logits[:1], logits[1:].masked_fill(same, float("-inf"))])
    contrastive = F.cross_entropy(logits.T.float(), d.target, reduction="sum")
    codevectors = cfg.num_codevectors_per_group * cfg.num_codevector_groups
    diversity = (codevectors - perplexity) / codevectors * d.count
    return (contrastive + cfg.diversity_loss_weight * diversity) / d.count


def torch_rows(args, device, samples):
    """The PyTorch rows (sharing one model and optimizer) and the frames per clip."""
    import torch
    from transformers import Wav2Vec2ForPreTraining
    model = Wav2Vec2ForPreTraining(config(args)).to(device).train()
    params = list(model.parameters())
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01, fused=True)
    frames = int(model._get_feat_extract_output_lengths(samples))
    audio = torch.randn(args.batch, samples, generator=torch.Generator().manual_seed(0)).to(device)
    pool = draw_pool(args.batch, frames, device)

    def step_of(loss_of):
        draws = itertools.cycle(pool)

        def step():
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                loss = loss_of(model, audio, next(draws))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 10.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
        return step

    units = args.batch * frames
    timed = "model only (audio, masks, negatives ready on device)"
    return [protocol.TorchRow("transformers + fused AdamW", step_of(transformers_loss), units, timed),
            protocol.TorchRow("masked frames only", step_of(masked_frames_loss), units, timed)], frames


def flops_per_frame(args, samples, frames) -> float:
    import torch
    from transformers import Wav2Vec2Model
    with torch.device("meta"):
        model, audio = Wav2Vec2Model(config(args, attention="eager")), torch.empty(1, samples)
    return 3 * protocol.forward_flops(model, audio) / frames


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="tiny", choices=PRESETS)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=4.0)
    protocol.add_args(ap)
    args = ap.parse_args()
    protocol.check_args(args)
    device = protocol.torch_device(args)
    samples = int(args.seconds * RATE)
    rows, frames = torch_rows(args, device, samples)
    with tempfile.TemporaryDirectory(prefix="pt-w2v-bench-") as tmp:
        work = Path(tmp)
        manifest = write_clips(work, args.batch * (args.warmup + args.steps), args.seconds)
        pt = lambda rep: protocol.pt_seconds_per_step(pt_recipe(args, manifest), work, args, rep)
        results = protocol.measure(args, device, pt, args.batch * frames, rows)
    protocol.report(
        args, f"wav2vec2 {args.preset}, batch {args.batch} x {args.seconds:g} s ({frames} frames)", "frame", results,
        flops_per_frame(args, samples, frames), "3 x Wav2Vec2Model forward FLOPs per frame (flop_counter)",
        {k: v for k, v in vars(args).items() if k != "json"})


if __name__ == "__main__":
    sys.exit(main())
