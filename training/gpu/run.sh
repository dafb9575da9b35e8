#!/usr/bin/env bash
# Train on one GPU from a plain checkout: training/gpu/run.sh OUT [more gpu_run options]
# (PYTHON=... picks the interpreter; default python3.) Needs the packed data in ./pack (napari-risnet pack --config training/stage3_v2.toml --out pack).
set -euo pipefail
out="$(realpath -m "${1:?usage: training/gpu/run.sh OUT_FOLDER [--set key=value ...]}")"
shift
cd "$(dirname "$0")/../.."
PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" exec "${PYTHON:-python3}" -m napari_risnet.training.gpu_run \
    --config training/gpu/gpu.toml --out "$out" "$@"
