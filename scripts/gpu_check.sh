#!/usr/bin/env bash
# The GPU checks and benchmarks, as one script for a lent GPU machine (PyTorch, no Rust, no
# network). Here:  cargo build --release --workspace && bash scripts/pack_device.sh
# There (repo root, `.gpu/` carried):  bash scripts/gpu_check.sh [mlm resnet50 simclr loader wav2vec2]
# pt doctor; SimCLR + the probes on CUDA under bf16 autocast (a short run, steps 20-21 profiled
# into its profile/ folder: the GPU kernels and any host waits of pt's step); the GPU waits per
# step (device_syncs_per_step) of it, a FixMatch mix, MLM and ELECTRA, failing above 0.1; then pt next to
# PyTorch on the same model and batch for the named benchmarks (default all): bert-base MLM
# 256 x 128; resnet50 supervised 256 x 224 px; SimCLR resnet50 2 x 256 views; resnet50 fed by
# image_shards against the same images in memory (benches/loader_share.py); wav2vec2 base
# 8 x 15 s (the pt sides train mlm, resnet, simclr and wav2vec2 on CUDA). The throughput benches
# follow benches/protocol.py (10 warm-up + 30 timed steps per side, repeats in alternated order:
# 3 for bert, 2 for resnet50 and wav2vec2, 1 for SimCLR, whose per-image transforms.v2 row is
# slow; torch.compile rows for bert and resnet50) and write $RUNS/bench-*.json. The long
# experiments behind the README's results: scripts/gpu_experiments.sh.
set -uo pipefail
source scripts/device_env.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
pt doctor || exit 1
LIMIT=150 t pt train --recipe recipes/simclr-resnet18.toml --max-steps 30 --set run.log_every=10 \
  --set 'run.profile_steps=[20, 21]' --run-dir "$RUNS/smoke-simclr" --quiet
results "$RUNS/smoke-simclr"
# The waits for the GPU inside a step (goal 0): SimCLR above, the FixMatch mix (a partly labelled
# batch: supervised picks its labelled rows, both draw their views on the loader thread), MLM and
# ELECTRA. The script exits 1 at the end if any waits (the benchmarks still run).
LIMIT=120 t pt train --recipe recipes/semi-supervised-fixmatch-resnet18.toml --max-steps 30 \
  --set run.log_every=10 --set run.batch_size=256 --set run.labelled_per_batch=32 --run-dir "$RUNS/smoke-fixmatch" --quiet
LIMIT=120 t pt train --recipe recipes/mlm-bert.toml --max-steps 30 --set run.log_every=10 --run-dir "$RUNS/smoke-mlm" --quiet
LIMIT=120 t pt train --recipe recipes/electra-bert.toml --max-steps 30 --set run.log_every=10 --run-dir "$RUNS/smoke-electra" --quiet
SYNCS_OK=1
syncs "$RUNS/smoke-simclr" "$RUNS/smoke-fixmatch" "$RUNS/smoke-mlm" "$RUNS/smoke-electra" ||
  { SYNCS_OK=0; echo "FAIL: a training step waits for the GPU (device_syncs_per_step above)"; }
BENCHES=("$@")
has() { [[ ${#BENCHES[@]} -eq 0 || " ${BENCHES[*]} " == *" $1 "* ]]; }
has mlm && LIMIT=240 t python3 benches/mlm_throughput.py --preset base --batch 256 --seq 128 --device cuda \
  --warmup 10 --steps 30 --repeats 3 --compile --json "$RUNS/bench-mlm.json"
has resnet50 && LIMIT=240 t python3 benches/image_throughput.py --arch resnet50 --batch 256 --size 224 --device cuda \
  --warmup 10 --steps 30 --repeats 2 --compile --json "$RUNS/bench-resnet50.json"
has simclr && LIMIT=180 t python3 benches/image_throughput.py --mode simclr --arch resnet50 --batch 256 --size 224 \
  --device cuda --warmup 10 --steps 30 --repeats 1 --json "$RUNS/bench-simclr.json"
has loader && LIMIT=200 t python3 benches/loader_share.py --arch resnet50 --batch 256 --size 224 --device cuda --workers 16 --steps 8 --warmup 3
has wav2vec2 && LIMIT=180 t python3 benches/wav2vec2_throughput.py --preset base --batch 8 --seconds 15 --device cuda \
  --warmup 10 --steps 30 --repeats 2 --json "$RUNS/bench-wav2vec2.json"
(( SYNCS_OK ))
