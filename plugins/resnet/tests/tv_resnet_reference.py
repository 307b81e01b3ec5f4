"""torchvision's ResNet on the weights and inputs pt wrote: the reference for tests/parity.rs.

usage: tv_resnet_reference.py DIR ARCH NUM_CLASSES
Reads DIR/weights.safetensors (a torchvision state dict) and DIR/inputs.safetensors (`image`),
loads the weights with strict=True, and writes DIR/tv_outputs.safetensors: eval-mode logits and
pooled features, then train-mode logits and the BatchNorm buffers after that one train forward.
"""
import sys

import torch
import torchvision
from safetensors.torch import load_file, save_file

directory, arch, num_classes = sys.argv[1], sys.argv[2], int(sys.argv[3])
torch.set_num_threads(1)
model = getattr(torchvision.models, arch)(weights=None, num_classes=num_classes)
model.load_state_dict(load_file(f"{directory}/weights.safetensors"), strict=True)
image = load_file(f"{directory}/inputs.safetensors")["image"]

pooled = {}
model.avgpool.register_forward_hook(lambda m, i, o: pooled.__setitem__("features", torch.flatten(o, 1)))
out = {}
with torch.no_grad():
    model.eval()
    out["eval_logits"] = model(image)
    out["eval_features"] = pooled["features"].clone()
    model.train()
    out["train_logits"] = model(image)
for name, value in model.state_dict().items():
    if "running_" in name or "num_batches_tracked" in name:
        out[f"after_train.{name}"] = value
save_file({k: v.contiguous() for k, v in out.items()}, f"{directory}/tv_outputs.safetensors")
