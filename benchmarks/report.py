"""Merge `napari-risnet evaluate --out` JSON files into markdown tables and a plot.

    python benchmarks/report.py RESULTS_DIR [--plot curves.png]

File names are METHOD_DATASET.json (as benchmarks/accuracy.sh writes them).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from napari_risnet.evaluation.images import Summary, plot_curves

FIELDS = ("noc85", "noc90", "nof85", "nof90", "miou", "hamming", "coverage", "spc", "n_objects",
          "max_clicks")


def load(path: Path) -> Summary | None:
    """An evaluate summary; None for the folder's other JSON files (diagnoses, histories)."""
    d = json.loads(path.read_text())
    if not isinstance(d, dict) or any(k not in d for k in FIELDS):
        return None
    return Summary(**{k: d[k] for k in FIELDS})


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("results")
    p.add_argument("--plot")
    args = p.parse_args()
    by_dataset: dict[str, dict[str, Summary]] = {}
    for f in sorted(Path(args.results).glob("*_*.json")):
        if f.stem.endswith("history"):
            continue
        method, _, dataset = f.stem.rpartition("_")
        summary = load(f)
        if summary is not None:
            by_dataset.setdefault(dataset, {})[method] = summary
    for dataset, rows in by_dataset.items():
        print(f"\n### {dataset}\n")
        print("| method | NoC@85 | NoC@90 | NoF@85 | NoF@90 | IoU@1 | IoU@3 | IoU@5 | IoU@20 "
              "| s/click | objects |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for method, s in rows.items():
            m = s.miou
            print(f"| {method} | {s.noc85:.2f} | {s.noc90:.2f} | {s.nof85} | {s.nof90} | "
                  f"{m[0]:.3f} | {m[2]:.3f} | {m[4]:.3f} | {m[-1]:.3f} | {s.spc:.3f} | "
                  f"{s.n_objects} |")
        if args.plot:
            out = Path(args.plot)
            plot_curves(rows, out.with_name(f"{out.stem}_{dataset}{out.suffix}"), dataset)


if __name__ == "__main__":
    main()
