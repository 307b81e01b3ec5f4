#!/usr/bin/env bash
# Packs what a lent GPU machine needs (it has PyTorch but no Rust toolchain and no network) into
# the git-ignored folder .gpu/ of the repo, under the device tool's 64 MiB limit: the release
# binaries and plugins (stripped, xz), Fashion-MNIST + MNIST (xz), the text set (xz) and the text
# tasks. There, scripts/gpu_check.sh and scripts/gpu_experiments.sh unpack it.
#   cargo build --release --workspace && bash scripts/pack_device.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${PT_DATA:-$HOME/.cache/pt/data}"
rm -rf .gpu && mkdir -p .gpu/bin .gpu/data/text
for f in pt pt-engine libpt_mlm.so libpt_resnet.so libpt_simclr.so libpt_wav2vec.so; do
  strip -o ".gpu/bin/$f" "target/release/$f"
done
tar -C .gpu -cJf .gpu/bin.tar.xz bin && rm -rf .gpu/bin
for set in fashion-mnist mnist; do
  mkdir -p ".gpu/data/images/$set"
  cp "$DATA/images/$set"/*.txt ".gpu/data/images/$set/" 2>/dev/null || true
  for f in "$DATA/images/$set"/*-ubyte; do xz -9 -T2 -c "$f" > ".gpu/data/images/$set/$(basename "$f").xz"; done
done
# All of the text (the text section of gpu_experiments.sh pretrains on it) and the text tasks.
xz -9 -T2 -c "$DATA/text/train.txt" > .gpu/data/text/train.txt.xz
cp "$DATA/text/valid.txt" .gpu/data/text/
cp -r "$DATA/text/fortunes-cls" .gpu/data/text/
cp -r "$DATA/text-tasks" .gpu/data/
du -sh .gpu
