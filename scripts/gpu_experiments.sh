#!/usr/bin/env bash
# The GPU experiments behind the README's SimCLR (issue 7), semi-supervised (issue 9), distributed
# (issue 10) and text-pretraining (issue 25) results, as one script for a lent GPU machine. Here:
# cargo build --release --workspace && bash scripts/pack_device.sh. There (repo root, `.gpu/`
# carried): bash scripts/gpu_experiments.sh [ddp] [semi] [simclr] [text]   (default: all four)
#  ddp    `pt launch` of 1 process with NCCL (the multi-GPU code path on the one GPU) next to a
#         plain process (same losses?) and to Gloo; 2 Gloo ranks sharing the GPU with and without
#         the overlapped all-reduce and with synchronised BatchNorm; SimCLR's gather and SyncBN
#         over NCCL. Step time and all-reduce share of each. Alone on the GPU, so timings hold.
#  semi   10 % of the labels (the first 600 images of each class), 64 labelled images per step:
#         supervised-only on them (1,600 / 3,200 / 6,400 steps) against the FixMatch mix with 448
#         unlabelled images per step (FixMatch's mu = 7): 1,600 steps with strong crops >= 20 % and
#         >= 50 %, and recipes/semi-supervised-fixmatch-resnet18.toml (2,400). In parallel
#         (accuracy only). SEED=1 for the second seed.
#  simclr SimCLR on Fashion-MNIST's 60k images (resnet18, CIFAR-style stem, 2 x 512 views, LARS),
#         as many steps as fit in $SIMCLR_SECONDS; the probes; `pt transfer` to two tasks.
#  text   MLM on BERT-small (recipes/mlm-bert-small-gpu.toml) for $TEXT_SECONDS, then the three text
#         tasks with 3 seeds, plain fine-tuning and LP-FT side by side (issue 25).
# Run directories (without checkpoints) come back in $OUT/runs.tar.gz.
set -uo pipefail
source scripts/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
ddp() {
  pt doctor | head -4
  local base=(--recipe recipes/supervised-resnet18-fashion.toml --device cuda:0 --max-steps 80
              --set run.batch_size=256 --set run.log_every=20 --set 'eval=[]' --set checkpoint.every=0 --quiet)
  LIMIT=90 t pt train "${base[@]}" --run-dir "$RUNS/ddp-plain"
  step_time "$RUNS/ddp-plain" > /dev/null
  # name | ranks | extra train arguments
  while IFS='|' read -r name n extra; do
    LIMIT=90 t pt launch --nproc-per-node "$n" --master-port 29555 -- train "${base[@]}" $extra --run-dir "$RUNS/ddp-$name"
    step_time "$RUNS/ddp-$name" > /dev/null
  done <<'RUNS'
nccl-1|1|--set run.dist_backend=nccl
nccl-1-no-overlap|1|--set run.dist_backend=nccl --set run.overlap_allreduce=false
nccl-1-syncbn|1|--set run.dist_backend=nccl --set arch.sync_batchnorm=true
gloo-1|1|--set run.dist_backend=gloo
gloo-2|2|--set run.dist_backend=gloo
gloo-2-no-overlap|2|--set run.dist_backend=gloo --set run.overlap_allreduce=false
gloo-2-syncbn|2|--set run.dist_backend=gloo --set arch.sync_batchnorm=true
RUNS
  # A group of one over NCCL trains what one plain process trains (same batches, gradients
  # summed over one rank): per-step losses side by side.
  python3 - "$RUNS/ddp-plain" "$RUNS/ddp-nccl-1" <<'PY'
import json, sys
loss = lambda d: {r["step"]: r["loss"] for r in map(json.loads, open(d + "/metrics.jsonl")) if "loss" in r}
a, b = loss(sys.argv[1]), loss(sys.argv[2])
gap = max((abs(a[s] - b[s]) / abs(a[s]) for s in a if s in b), default=float("nan"))
print(f"plain vs NCCL group of 1: {len(a)} logged steps, largest relative loss gap {gap:.2e}")
PY
  LIMIT=90 t pt launch --nproc-per-node 1 --master-port 29556 -- train --recipe recipes/simclr-resnet18.toml \
    --device cuda:0 --max-steps 40 --set run.log_every=20 --set 'eval=[]' --set checkpoint.every=0 \
    --set run.dist_backend=nccl --run-dir "$RUNS/ddp-nccl-1-simclr" --quiet
  step_time "$RUNS/ddp-nccl-1-simclr" > /dev/null
}

semi() {
  # The README's table: SEED=1 for the second column. Six runs share the GPU (~7 min on an H100).
  local seed="${SEED:-0}"
  local sup=(--recipe recipes/supervised-resnet18-fashion.toml --set data.max_per_class=600 --set arch.small_stem=true
             --set run.batch_size=64 --set run.log_every=100 --set checkpoint.every=0 --set run.seed="$seed" --quiet)
  local fix=(--recipe recipes/semi-supervised-fixmatch-resnet18.toml --set checkpoint.every=0 --set run.seed="$seed" --quiet)
  local runs=()
  for steps in 1600 3200 6400; do
    LIMIT=900 t pt train "${sup[@]}" --max-steps $steps --run-dir "$RUNS/sup-$steps-seed$seed" > "$RUNS/sup-$steps.log" 2>&1 &
    runs+=("$RUNS/sup-$steps-seed$seed")
  done
  LIMIT=900 t pt train "${fix[@]}" --max-steps 1600 --set objective.mix.1.min_scale=0.2 \
    --run-dir "$RUNS/fixmatch-1600-crops20-seed$seed" > "$RUNS/fixmatch-1600-crops20.log" 2>&1 &
  LIMIT=900 t pt train "${fix[@]}" --max-steps 1600 --run-dir "$RUNS/fixmatch-1600-seed$seed" > "$RUNS/fixmatch-1600.log" 2>&1 &
  LIMIT=900 t pt train "${fix[@]}" --run-dir "$RUNS/fixmatch-2400-seed$seed" > "$RUNS/fixmatch-2400.log" 2>&1 &
  runs+=("$RUNS/fixmatch-1600-crops20-seed$seed" "$RUNS/fixmatch-1600-seed$seed" "$RUNS/fixmatch-2400-seed$seed")
  wait
  grep -h -v '^\[W' "$RUNS"/sup-*.log "$RUNS"/fixmatch-*.log | tail -40
  results "${runs[@]}"
}

simclr() {
  SIMCLR_SECONDS="${SIMCLR_SECONDS:-220}"
  SIMCLR=(--recipe recipes/simclr-resnet18.toml --set arch.small_stem=true --set run.batch_size=512
          --set optim.lr=1.7 --quiet)
  LIMIT=60 t pt train "${SIMCLR[@]}" --max-steps 40 --set run.log_every=10 --set 'eval=[]' --run-dir "$RUNS/simclr-calibration"
  per_step=$(step_time "$RUNS/simclr-calibration") || return 1
  steps=$(python3 -c "print(max(100, min(30000, int($SIMCLR_SECONDS / $per_step) // 50 * 50)))")
  echo "SimCLR: $per_step s/step alone -> $steps steps ($(python3 -c "print(round($steps * 512 / 60000, 1))") epochs)"
  LIMIT=$((SIMCLR_SECONDS * 2)) t pt train "${SIMCLR[@]}" --max-steps "$steps" --set run.log_every=50 \
    --set checkpoint.every=$((steps / 2)) --set run.max_minutes=$(python3 -c "print($SIMCLR_SECONDS * 1.4 / 60)") \
    --run-dir "$RUNS/simclr-resnet18"
  results "$RUNS/simclr-resnet18"

  (LIMIT=200 t pt transfer "$RUNS/simclr-resnet18" --task fashion-mnist > "$RUNS/transfer.log" 2>&1
   LIMIT=200 t pt transfer "$RUNS/simclr-resnet18" --task mnist >> "$RUNS/transfer.log" 2>&1) &
  wait
  grep -v '^\[W' "$RUNS"/transfer.log | tail -40
  results "$RUNS/simclr-resnet18"
  for d in "$RUNS"/simclr-resnet18/transfer-*; do
    echo "$d"; cat "$d"/transfer.md 2>/dev/null | head -30
  done
}

text() {
  # Issue 25: where text pretraining starts to pay off. BERT-small MLM for $TEXT_SECONDS, then the
  # three text tasks with 3 seeds, fine-tuned (the task's head, then LP-FT) and probed.
  # 240 s of pretraining keeps the section (calibration, training, the six transfers side by
  # side) inside one 600 s device command.
  TEXT_SECONDS="${TEXT_SECONDS:-240}"
  local mlm=(--recipe recipes/mlm-bert-small-gpu.toml --quiet)
  LIMIT=120 t pt train "${mlm[@]}" --max-steps 60 --set run.log_every=20 --set 'eval=[]' --run-dir "$RUNS/mlm-calibration"
  per_step=$(step_time "$RUNS/mlm-calibration") || return 1
  steps=$(python3 -c "print(max(500, min(40000, int($TEXT_SECONDS / $per_step) // 500 * 500)))")
  echo "MLM bert-small: $per_step s/step alone -> $steps steps"
  LIMIT=$((TEXT_SECONDS * 2)) t pt train "${mlm[@]}" --max-steps "$steps" --set checkpoint.every=$((steps / 2)) \
    --set run.max_minutes=$(python3 -c "print($TEXT_SECONDS * 1.4 / 60)") --run-dir "$RUNS/mlm-bert-small"
  results "$RUNS/mlm-bert-small"
  for task in fortunes debian-sections wordnet-pos; do
    (LIMIT=240 t pt transfer "$RUNS/mlm-bert-small" --task "$task" --seeds 3 --out "$RUNS/transfer-$task" \
       > "$RUNS/transfer-$task.log" 2>&1
     LIMIT=240 t pt transfer "$RUNS/mlm-bert-small" --task "$task" --seeds 3 --out "$RUNS/transfer-$task-lpft" \
       --set eval.0.head_init=linear_probe > "$RUNS/transfer-$task-lpft.log" 2>&1) &
  done
  wait
  for log in "$RUNS"/transfer-*.log; do echo "== $log"; grep -E 'seeds|^(finetune|linear_probe)' "$log"; done
}

SECTIONS=("$@")
[[ ${#SECTIONS[@]} -eq 0 ]] && SECTIONS=(ddp semi simclr text)
for section in "${SECTIONS[@]}"; do
  echo "=== $section ($(date +%T))"
  "$section"
done
tar -C "$RUNS/.." --exclude=checkpoints --exclude=tb -czf "$OUT/runs.tar.gz" runs 2>/dev/null || true
