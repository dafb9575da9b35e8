"""Overlay the mean IoU against clicks of saved `napari-risnet evaluate --out` JSON files.

    python benchmarks/plot_curves.py OUT.png training/results/*_grabcut.json [--title GrabCut]

Each curve is labelled with the file stem less its data-set suffix (``ifcn_grabcut.json`` ->
``ifcn``: several RIS-Net checkpoints share the method name ``risnet``); uses the evaluate CLI's
plot.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from napari_risnet.evaluation.images import Summary, plot_curves

FIELDS = ("noc85", "noc90", "nof85", "nof90", "miou", "hamming", "coverage", "spc", "n_objects",
          "max_clicks")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out", help="PNG to write")
    p.add_argument("results", nargs="+", help="JSON files written by evaluate --out")
    p.add_argument("--title", default="")
    args = p.parse_args()
    rows: dict[str, Summary] = {}
    for f in map(Path, args.results):
        d = json.loads(f.read_text())
        label = f.stem.rsplit("_", 1)[0] if "_" in f.stem else d.get("method") or f.stem
        rows[label] = Summary(**{k: d[k] for k in FIELDS})
    plot_curves(rows, args.out, args.title)
    print(f"wrote {args.out} ({len(rows)} curves)")


if __name__ == "__main__":
    main()
