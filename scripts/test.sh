#!/usr/bin/env bash
# The README's test command, from a fresh clone: set-up (idempotent), build, the whole test suite.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
python3 scripts/fetch_data.py text text-tasks images audio pairs
cargo build --release --workspace
cargo test --release --workspace
