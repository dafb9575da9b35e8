#!/usr/bin/env bash
# Robot-user accuracy of RIS-Net and the baselines on the evaluation splits (the README's
# tables). Usage: benchmarks/accuracy.sh [DATA_DIR=../shared/data] [OUT_DIR=results]
# Then: python benchmarks/report.py OUT_DIR
set -euo pipefail
D=${1:-../shared/data}
O=${2:-results}
mkdir -p "$O"
run() { napari-risnet evaluate --threads 1 "$@"; }
for m in risnet graphcut random_walker; do
    run "$D/natural/grabcut" --method $m --out "$O/${m}_grabcut.json"
    run "$D/microscopy/dsb2018_nuclei/test" --method $m --limit 150 --out "$O/${m}_dsb.json"
    run "$D/medical/msd_hippocampus/test" --method $m --limit 150 --out "$O/${m}_hippo.json"
done
# fine-tuned on msd_hippocampus/train only, evaluated on its test split
napari-risnet finetune --images "$D/medical/msd_hippocampus/train/images" \
    --labels "$D/medical/msd_hippocampus/train/labels" --out "$O/hippo_ft.pt" --epochs 4 \
    --steps-per-epoch 150
run "$D/medical/msd_hippocampus/test" --checkpoint "$O/hippo_ft.pt" --limit 150 \
    --out "$O/risnet_ft_hippo.json"
