#!/usr/bin/env bash
# Set up vmeta on a fresh machine: a virtualenv in .venv with every extra, the CPU build of PyTorch on
# CPU-only machines, and the Debian packages the tests and reports use (Chromium for browser tests,
# a CJK font for plots, espeak-ng to speak the speech tests' sentences). Safe to run again.
#
#   bash scripts/setup.sh          # CPU machine (this project's dev/CI kind)
#   bash scripts/setup.sh --gpu    # CUDA machine: takes PyTorch's CUDA build, no CPU shims
set -euo pipefail
cd "$(dirname "$0")/.."

GPU=0
for arg in "$@"; do
  case "$arg" in
    --gpu) GPU=1 ;;
    *) echo "unknown option: $arg (use --gpu on a CUDA machine)" >&2; exit 2 ;;
  esac
done

apt_packages=(chromium fonts-wqy-microhei espeak-ng)
missing=()
for p in "${apt_packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "== installing Debian packages: ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  elif command -v sudo >/dev/null; then
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "note: install ${missing[*]} with your package manager (browser tests, CJK plot labels and speech tests need them)" >&2
  fi
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q -U pip
if [ "$GPU" = 1 ]; then
  .venv/bin/python -m pip install -q -e ".[dev]"
else
  # constraints.txt pins the CPU build of torch; without it pip pulls several GB of CUDA wheels.
  .venv/bin/python -m pip install -q -c constraints.txt -e ".[dev]"
  .venv/bin/python scripts/install_torchvision_shim.py
fi
.venv/bin/vmeta --help >/dev/null
echo "== vmeta is ready: source .venv/bin/activate"
