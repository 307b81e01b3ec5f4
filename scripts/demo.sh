#!/usr/bin/env bash
# The README's main job, from a fresh clone: set-up (idempotent: libtorch, data, build), then
#   pt train --objective mlm --arch bert
# which pretrains a small BERT on real English text with the built-in recipe and then fine-tunes
# it on fortune -> category next to the same model from random initialisation.
# Extra arguments go to `pt train` (e.g. --set run.max_steps=2000).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
python3 scripts/fetch_data.py text
cargo build --release --workspace
exec target/release/pt train --objective mlm --arch bert "$@"
