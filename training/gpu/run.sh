#!/usr/bin/env bash
# Train on one GPU from a plain checkout: training/gpu/run.sh OUT [more gpu_run options]
# (relative paths are read from where you call it; PYTHON=... picks the interpreter, default
# python3). Needs the packed data in <repo>/pack:
#   napari-risnet pack --config training/stage3.toml --out pack --val-objects 16
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
out="${1:?usage: training/gpu/run.sh OUT_FOLDER [--pack DIR] [--set key=value ...]}"
shift
PYTHONPATH="$repo/src${PYTHONPATH:+:$PYTHONPATH}" exec "${PYTHON:-python3}" -m \
    napari_risnet.training.gpu_run --config "$repo/training/gpu/gpu.toml" --out "$out" "$@"
