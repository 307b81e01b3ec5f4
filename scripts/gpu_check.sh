#!/usr/bin/env bash
# The GPU checks and benchmarks, as one script for a lent GPU machine (which has PyTorch but no
# Rust toolchain). Here:   cargo build --release --workspace && mkdir -p device &&
#                          cp target/release/{pt,pt-engine,*.so} device/
# There (repo root, `device/` carried along):   bash scripts/gpu_check.sh device
# Prints pt doctor, then pt next to PyTorch on the same model and batch (bert-base MLM
# 256 x 128; resnet50 supervised 256 x 224 px; SimCLR resnet50 2 x 256 views; wav2vec2 base
# 8 x 15 s). Record the card.
set -uo pipefail
BIN="$(cd "${1:-device}" && pwd)"
export LIBTORCH="$(python3 -c 'import torch, os; print(os.path.dirname(torch.__file__))')"
export PT_BIN="$BIN/pt" PT_PLUGIN_PATH="$BIN"
export PT_DATA="${PT_DATA:-/tmp/pt-data}"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
"$PT_BIN" doctor || exit 1
# The device reaches no registry: carry the text set (or a part of it) and point PT_DATA at it.
[[ -f "$PT_DATA/text/train.txt" ]] || echo "(no $PT_DATA/text/train.txt: the MLM benchmark will fail; carry the data)"
run() { echo "== $*"; timeout 240 python3 "$@" || echo "(failed: $*)"; }
run benches/mlm_throughput.py --preset base --batch 256 --seq 128 --device cuda --steps 10 --warmup 3
run benches/image_throughput.py --arch resnet50 --batch 256 --size 224 --device cuda --steps 10 --warmup 3
run benches/image_throughput.py --mode simclr --arch resnet50 --batch 256 --size 224 --device cuda --steps 6 --warmup 2
run benches/wav2vec2_throughput.py --preset base --batch 8 --seconds 15 --device cuda --steps 10 --warmup 3
