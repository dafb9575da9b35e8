"""The seed's Table 1 beside ours: one row per method from saved evaluate JSON files.

    python benchmarks/table1.py [training/results] [--dataset grabcut|dsb|hippo]

Reads RESULTS/METHOD_DATASET.json (as benchmarks/accuracy.sh and the README commands write
them); a method without a file is listed as "not run". Seed values: NoC@90 on GrabCut as printed
in the paper's Table 1 (../shared/PAPER_TABLES.md; its classic rows are the ones iFCN, Xu et al.
2016, reported); the paper gives no NoC@85 on GrabCut and nothing on our microscopy / MRI sets
("–").
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

# (label, our method name, seed NoC@90 on GrabCut)
ROWS = [
    ("Graph cut", "graphcut", 11.10),
    ("Geodesic matting", "geodesic_matting", 12.44),
    ("Random walker", "random_walker", 12.30),
    ("Euclidean star convexity (ESC)", "esc", 8.52),
    ("Geodesic star convexity (GSC)", "gsc", 8.38),
    ("GrowCut", "growcut", 16.74),
    ("iFCN (global branch only)", "ifcn", 6.04),
    # the bundled model's stages 1-2: the same data and compute as the iFCN row, same settings
    ("RIS-Net, stages 1-2 (iFCN's budget)", "risnet_stage2_samesettings", None),
    ("RIS-Net, stage 5 (bundled 0.5.0-0.23.0)", "risnet", None),
    ("RIS-Net, stage 15 with six rules (0.24.0)", "risnet_v0.24.0", None),
    ("RIS-Net, stage 15 with the late merge (0.25.0)", "risnet_v0.25.0", None),
    ("RIS-Net, stage 15, BatchNorms folded (0.27.0)", "risnet_v0.27.0", 5.00),
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("results", nargs="?", default="training/results")
    p.add_argument("--dataset", default="grabcut")
    args = p.parse_args()
    seed_col = args.dataset == "grabcut"
    print("| method | seed NoC@90 | ours NoC@85 | ours NoC@90 | ours - seed | NoF@90 | "
          "IoU@1 | IoU@20 | s/click | objects |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for label, name, seed in ROWS:
        seed = seed if seed_col else None
        f = Path(args.results) / f"{name}_{args.dataset}.json"
        seed_txt = f"{seed:.2f}" if seed is not None else "–"
        if not f.is_file():
            print(f"| {label} | {seed_txt} | not run | not run | | | | | | |")
            continue
        d = json.loads(f.read_text())
        diff = f"{d['noc90'] - seed:+.2f}" if seed is not None else "–"
        print(f"| {label} | {seed_txt} | {d['noc85']:.2f} | {d['noc90']:.2f} | {diff} | "
              f"{d['nof90']} | {d['miou'][0]:.3f} | {d['miou'][-1]:.3f} | {d['spc']:.3f} | "
              f"{d['n_objects']} |")


if __name__ == "__main__":
    main()
