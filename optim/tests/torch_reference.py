"""PyTorch reference for pt-optim's tests: the same problem, solved by torch.optim.

Usage: python torch_reference.py SPEC.json PROBLEM.safetensors OUT.safetensors

SPEC "mode":
  "optimizer": run `steps` steps of AdamW / SGD / LARS (LARS written out in torch, Barlow Twins
               formulation) on the parameters `init.<name>` with gradients `grad.<t>.<name>`,
               optional clip_grad_norm_, learning rates from Hugging Face's LambdaLR schedules;
               writes `step<t>.<name>` (parameters after step t) and `norm.<t>` (pre-clip norm).
  "schedule":  writes `factors.<i>`: the LambdaLR factor for steps 0..=total of config i.
"""
import json
import math
import sys

import torch
from safetensors.torch import load_file, save_file
from transformers import optimization as hf


def lambda_scheduler(opt, sched, total, base_lr):
    decay = sched["decay"]
    warmup = sched["warmup_steps"]
    r = sched["min_lr_ratio"]
    # The decay takes the last decay_ratio of the steps, never reaching into the warmup.
    decay_start = max(warmup, total - math.ceil(sched["decay_ratio"] * total))
    if decay_start > warmup:
        # HF's WSD warms up from min_lr_ratio, pt from 0: compared without a warmup or minimum.
        assert warmup == 0 or r == 0.0, "HF's WSD warmup starts at min_lr_ratio"
        assert decay in ("linear", "cosine"), "HF's WSD decays linearly, by cosine or 1-sqrt"
        return hf.get_wsd_schedule(opt, warmup, total - decay_start, num_stable_steps=decay_start - warmup,
                                   decay_type=decay, min_lr_ratio=r)
    if decay == "constant":
        return hf.get_constant_schedule_with_warmup(opt, warmup)
    if decay == "linear":
        assert r == 0.0, "HF's linear schedule decays to 0"
        return hf.get_linear_schedule_with_warmup(opt, warmup, total)
    if decay == "cosine":
        return hf.get_cosine_with_min_lr_schedule_with_warmup(opt, warmup, total, min_lr_rate=r)
    if decay == "polynomial":
        return hf.get_polynomial_decay_schedule_with_warmup(
            opt, warmup, total, lr_end=r * base_lr, power=sched["power"])
    raise ValueError(decay)


class Lars(torch.optim.Optimizer):
    """Barlow Twins / VICReg LARS; `lars_exclude` groups get plain momentum SGD."""

    def __init__(self, groups, lr, momentum, eta):
        super().__init__(groups, dict(lr=lr, momentum=momentum, eta=eta, weight_decay=0.0,
                                      lars_exclude=False))

    @torch.no_grad()
    def step(self):
        for g in self.param_groups:
            for p in g["params"]:
                dp = p.grad
                if g["weight_decay"] != 0:
                    dp = dp.add(p, alpha=g["weight_decay"])
                if not g["lars_exclude"]:
                    param_norm = torch.norm(p)
                    update_norm = torch.norm(dp)
                    one = torch.ones_like(param_norm)
                    q = torch.where(param_norm > 0.0,
                                    torch.where(update_norm > 0, g["eta"] * param_norm / update_norm, one),
                                    one)
                    dp = dp.mul(q)
                state = self.state[p]
                if "mu" not in state:
                    state["mu"] = torch.zeros_like(p)
                mu = state["mu"]
                mu.mul_(g["momentum"]).add_(dp)
                p.add_(mu, alpha=-g["lr"])


def run_optimizer(spec, problem):
    base_lr = spec["base_lr"]
    params = {n: torch.nn.Parameter(problem[f"init.{n}"].clone()) for n in spec["names"]}
    groups = [dict(params=[params[n] for n in g["params"]], lr=base_lr * g["lr_mult"],
                   weight_decay=g["weight_decay"], lars_exclude=g["lars_exclude"])
              for g in spec["groups"]]
    o = spec["optimizer"]
    if o["name"] == "adamw":
        for g in groups:
            del g["lars_exclude"]
        opt = torch.optim.AdamW(groups, lr=base_lr, betas=(o["beta1"], o["beta2"]), eps=o["eps"],
                                foreach=False)
    elif o["name"] == "sgd":
        for g in groups:
            del g["lars_exclude"]
        opt = torch.optim.SGD(groups, lr=base_lr, momentum=o["momentum"], nesterov=o["nesterov"],
                              dampening=0.0, foreach=False)
    elif o["name"] == "lars":
        opt = Lars(groups, lr=base_lr, momentum=o["momentum"], eta=o["eta"])
    else:
        raise ValueError(o["name"])
    sched = lambda_scheduler(opt, spec["schedule"], spec["steps"], base_lr)
    out = {}
    for t in range(spec["steps"]):
        for n, p in params.items():
            p.grad = problem[f"grad.{t}.{n}"].clone()
        if spec["clip"] is not None:
            norm = torch.nn.utils.clip_grad_norm_(list(params.values()), spec["clip"])
        else:
            norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params.values()]))
        out[f"norm.{t}"] = norm.detach().reshape(1).clone()
        opt.step()
        sched.step()
        for n, p in params.items():
            out[f"step{t}.{n}"] = p.detach().clone().contiguous()
    return out


def run_schedule(spec):
    out = {}
    for i, c in enumerate(spec["configs"]):
        p = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([p], lr=c["base_lr"])
        sched = lambda_scheduler(opt, c, c["total"], c["base_lr"])
        lrs = []
        for _ in range(c["total"] + 1):
            lrs.append(sched.get_last_lr()[0])
            opt.step()
            sched.step()
        out[f"lrs.{i}"] = torch.tensor(lrs, dtype=torch.float64)
    return out


def main():
    spec_path, problem_path, out_path = sys.argv[1:4]
    with open(spec_path) as f:
        spec = json.load(f)
    if spec["mode"] == "optimizer":
        out = run_optimizer(spec, load_file(problem_path))
    else:
        out = run_schedule(spec)
    save_file(out, out_path)


if __name__ == "__main__":
    main()
