"""transformers' Wav2Vec2Model / Wav2Vec2ForPreTraining on pt's weights and inputs (fp32, CPU).

Usage: hf_wav2vec2_reference.py DIR. DIR holds config.json (pt's `hf_json`), weights.safetensors
(pt's `wav2vec2` architecture and objective parameters under Wav2Vec2ForPreTraining names) and
inputs.safetensors (input_values, attention_mask, mask_time_indices, sampled_negative_indices).
Writes hf_outputs.safetensors. Both models load the weights with strict=True, so every name must
match.
"""

import json
import sys

import torch
from safetensors.torch import load_file, save_file
from transformers import Wav2Vec2Config, Wav2Vec2ForPreTraining, Wav2Vec2Model

d = sys.argv[1]
config = Wav2Vec2Config(**json.load(open(f"{d}/config.json")))
config._attn_implementation = "eager"
weights = load_file(f"{d}/weights.safetensors")
inputs = load_file(f"{d}/inputs.safetensors")
torch.set_grad_enabled(False)

base = Wav2Vec2Model(config).eval()
base.load_state_dict({k[len("wav2vec2."):]: v for k, v in weights.items() if k.startswith("wav2vec2.")}, strict=True)
out = {}
plain = base(inputs["input_values"], attention_mask=inputs["attention_mask"])
out["last_hidden_state"] = plain.last_hidden_state
out["extract_features"] = plain.extract_features
masked = base(
    inputs["input_values"],
    attention_mask=inputs["attention_mask"],
    mask_time_indices=inputs["mask_time_indices"].bool(),
)
out["masked_last_hidden_state"] = masked.last_hidden_state

# The objective's parameters load too, and in evaluation (argmax codes) the contrastive loss and
# code perplexity over the same masks and negatives are comparable with pt's.
pre = Wav2Vec2ForPreTraining(config).eval()
pre.load_state_dict(weights, strict=True)
res = pre(
    inputs["input_values"],
    attention_mask=inputs["attention_mask"],
    mask_time_indices=inputs["mask_time_indices"].bool(),
    sampled_negative_indices=inputs["sampled_negative_indices"],
)
out["contrastive_loss_sum"] = res.contrastive_loss.reshape(1)
out["codevector_perplexity"] = res.codevector_perplexity.reshape(1)
save_file({k: v.contiguous() for k, v in out.items()}, f"{d}/hf_outputs.safetensors")
