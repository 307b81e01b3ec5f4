#!/usr/bin/env bash
# The GPU experiments behind the README's SimCLR (issue 7) and semi-supervised (issue 9) results,
# as one script for a lent GPU machine. Here: cargo build --release --workspace &&
# bash scripts/pack_device.sh. There (repo root, `.gpu/` carried): bash scripts/gpu_experiments.sh
#  1. SimCLR on Fashion-MNIST's 60k images: resnet18 with the CIFAR-style stem the SimCLR paper
#     uses for small images, 2 x 512 views, LARS (0.075 x sqrt(batch)), warmup + cosine, for as
#     many steps as fit in $SIMCLR_SECONDS (measured on 40 steps first); then the recipe's linear
#     probe and kNN, each next to random init; then `pt transfer` to Fashion-MNIST and MNIST.
#  2. 10 % of the labels (the first 600 images of each class): supervised-only on them, against
#     the mixes SimCLR (all images) + cross-entropy and FixMatch (cross-entropy + fixmatch), with
#     128 labelled images in every batch; the same steps, optimizer and labelled images per step.
#  3. `pt launch` of 2 ranks on the one GPU next to 1 process: step time, all-reduce share, with
#     and without the overlap, and with synchronised BatchNorm.
# Run directories (without checkpoints) come back in $OUT/runs.tar.gz.
set -uo pipefail
source scripts/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
SIMCLR_SECONDS="${SIMCLR_SECONDS:-220}"
SIMCLR=(--recipe recipes/simclr-resnet18.toml --set arch.small_stem=true --set run.batch_size=512
        --set optim.lr=1.7 --quiet)
LIMIT=60 t pt train "${SIMCLR[@]}" --max-steps 40 --set run.log_every=10 --set 'eval=[]' --run-dir "$RUNS/simclr-calibration"
per_step=$(step_time "$RUNS/simclr-calibration") || exit 1
steps=$(python3 -c "print(max(100, min(30000, int($SIMCLR_SECONDS / $per_step) // 50 * 50)))")
echo "SimCLR: $per_step s/step alone -> $steps steps ($(python3 -c "print(round($steps * 512 / 60000, 1))") epochs)"
LIMIT=$((SIMCLR_SECONDS * 2)) t pt train "${SIMCLR[@]}" --max-steps "$steps" --set run.log_every=50 \
  --set run.save_every=$((steps / 2)) --set run.max_minutes=$(python3 -c "print($SIMCLR_SECONDS * 1.4 / 60)") \
  --run-dir "$RUNS/simclr-resnet18"
results "$RUNS/simclr-resnet18"

(LIMIT=200 t pt transfer "$RUNS/simclr-resnet18" --task fashion-mnist > "$RUNS/transfer.log" 2>&1
 LIMIT=200 t pt transfer "$RUNS/simclr-resnet18" --task mnist >> "$RUNS/transfer.log" 2>&1) &
LABELLED_STEPS="${LABELLED_STEPS:-1880}"   # 40 passes over the 6k labelled images at 128 per step
LIMIT=240 t pt train --recipe recipes/supervised-resnet18-fashion.toml --set data.max_per_class=600 \
  --set arch.small_stem=true --max-steps $LABELLED_STEPS --set run.log_every=50 --set run.save_every=0 \
  --set run.max_minutes=3.5 --run-dir "$RUNS/supervised-600-per-class" > "$RUNS/supervised.log" 2>&1 &
LIMIT=240 t pt train --recipe recipes/semi-supervised-resnet18.toml --set arch.small_stem=true \
  --set run.batch_size=256 --set run.labelled_per_batch=128 --max-steps $LABELLED_STEPS \
  --set run.log_every=50 --set run.save_every=0 --set run.max_minutes=3.5 --run-dir "$RUNS/mix-10pct" > "$RUNS/mix.log" 2>&1 &
LIMIT=240 t pt train --recipe recipes/semi-supervised-fixmatch-resnet18.toml \
  --set run.batch_size=256 --set run.labelled_per_batch=128 --max-steps $LABELLED_STEPS \
  --set run.log_every=50 --set run.save_every=0 --set run.max_minutes=3.5 --run-dir "$RUNS/fixmatch-10pct" > "$RUNS/fixmatch.log" 2>&1 &
wait
cat "$RUNS"/transfer.log "$RUNS"/supervised.log "$RUNS"/mix.log "$RUNS"/fixmatch.log | grep -v '^\[W' | tail -60
results "$RUNS/simclr-resnet18" "$RUNS/supervised-600-per-class" "$RUNS/mix-10pct" "$RUNS/fixmatch-10pct"
for d in "$RUNS"/simclr-resnet18/transfer-*; do
  echo "$d"; cat "$d"/transfer.md 2>/dev/null | head -30
done

# 3. Two data-parallel ranks on the one GPU (Gloo all-reduce of CUDA tensors), next to one process;
#    with the all-reduce overlapped with backward (default), without, and with SyncBatchNorm.
for v in "1 on" "2 on" "2 off" "2 sync"; do
  set -- $v
  LIMIT=120 t pt launch --nproc-per-node $1 --master-port 29555 -- train --recipe recipes/supervised-resnet18-fashion.toml \
    --device cuda:0 --max-steps 100 --set run.batch_size=256 --set run.log_every=25 --set 'eval=[]' \
    --set run.overlap_allreduce=$([ "$2" = off ] && echo false || echo true) \
    --set arch.sync_batchnorm=$([ "$2" = sync ] && echo true || echo false) \
    --run-dir "$RUNS/ddp-$1-$2" --quiet
  step_time "$RUNS/ddp-$1-$2" > /dev/null
done
tar -C "$RUNS/.." --exclude=checkpoints --exclude=tb -czf "$OUT/runs.tar.gz" runs 2>/dev/null || true
