"""Reference outputs of Hugging Face's BERT for the parity test.

Usage: python hf_bert_reference.py DIR ATTN_IMPLEMENTATION
DIR holds config.json (pt's `bert` ArchitectureInfo.config), weights.safetensors (pt's parameters)
and inputs.safetensors (input_ids, attention_mask, token_type_ids). Writes DIR/hf_outputs.safetensors:
`logits` [B, L, V] of BertForMaskedLM, `hidden` [B, L, H] and `pooled` [B, H] of BertModel with its
pooler. Both models load pt's weights with strict=True: every name must match exactly. The same
files as an exported directory (config.json + model.safetensors) must load with from_pretrained,
missing nothing, and give the same logits.
"""

import json
import os
import shutil
import sys

import torch
from safetensors.torch import load_file, save_file
from transformers import BertConfig, BertForMaskedLM, BertModel


def main():
    out_dir, attn = sys.argv[1], sys.argv[2]
    with open(os.path.join(out_dir, "config.json")) as f:
        config = BertConfig(**json.load(f))
    config._attn_implementation = attn
    weights = load_file(os.path.join(out_dir, "weights.safetensors"))
    inputs = load_file(os.path.join(out_dir, "inputs.safetensors"))

    # BertForMaskedLM has no pooler; its state dict lists the tied decoder under its own names.
    mlm = BertForMaskedLM(config).eval()
    mlm_state = {k: v for k, v in weights.items() if not k.startswith("bert.pooler.")}
    mlm_state["cls.predictions.decoder.weight"] = weights["bert.embeddings.word_embeddings.weight"]
    mlm_state["cls.predictions.decoder.bias"] = weights["cls.predictions.bias"]
    mlm.load_state_dict(mlm_state, strict=True)
    assert mlm.cls.predictions.decoder.weight.data_ptr() == mlm.bert.embeddings.word_embeddings.weight.data_ptr(), \
        "decoder no longer tied to the word embeddings"

    encoder = BertModel(config, add_pooling_layer=True).eval()
    encoder_state = {k[len("bert."):]: v for k, v in weights.items() if k.startswith("bert.")}
    encoder.load_state_dict(encoder_state, strict=True)

    with torch.no_grad():
        args = dict(
            input_ids=inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            token_type_ids=inputs["token_type_ids"],
        )
        logits = mlm(**args).logits
        enc = encoder(**args)

    export = os.path.join(out_dir, "export")
    os.makedirs(export, exist_ok=True)
    shutil.copy(os.path.join(out_dir, "config.json"), os.path.join(export, "config.json"))
    shutil.copy(os.path.join(out_dir, "weights.safetensors"), os.path.join(export, "model.safetensors"))
    loaded, info = BertForMaskedLM.from_pretrained(export, output_loading_info=True, attn_implementation=attn)
    assert not info["missing_keys"] and not info["mismatched_keys"], info
    assert all(k.startswith("bert.pooler.") for k in info["unexpected_keys"]), info
    with torch.no_grad():
        reloaded = loaded.eval()(**args).logits
    assert torch.equal(reloaded, logits), (reloaded - logits).abs().max()

    save_file(
        {
            "logits": logits.contiguous(),
            "hidden": enc.last_hidden_state.contiguous(),
            "pooled": enc.pooler_output.contiguous(),
        },
        os.path.join(out_dir, "hf_outputs.safetensors"),
    )


if __name__ == "__main__":
    main()
