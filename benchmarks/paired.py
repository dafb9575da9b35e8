"""Two settings on the same held-out objects, compared object by object.

    python benchmarks/paired.py A.json B.json

A and B are ``benchmarks/validation.py --objects-out`` files (same recipe, same ``--per-source``,
so the same objects). Prints, per folder and over all, the mean difference B - A of NoC@85,
NoC@90 and the IoU after the last click, with its standard error: on the 45 held-out COCO objects
a paired NoC difference has an SE of about half a click (model card, "Session 6"), so a change
smaller than that is not a finding.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def _load(path: str) -> dict[tuple[str, str], dict]:
    data = json.loads(Path(path).read_text())
    return {(o["folder"], o["name"]): o for o in data["objects"]}


def paired_rows(a: dict, b: dict) -> list[tuple[str, int, dict[str, tuple[float, float]]]]:
    """(folder or "all", objects, {measure: (mean difference B - A, standard error)})."""
    keys = sorted(set(a) & set(b))
    if not keys:
        raise SystemExit("the two files share no objects: same recipe and --per-source?")
    rows = []
    for folder in sorted({f for f, _ in keys}) + ["all"]:
        chosen = [k for k in keys if folder in ("all", k[0])]
        out = {}
        for measure in ("noc85", "noc90", "iou_last"):
            get = (lambda o: o["ious"][-1]) if measure == "iou_last" else (lambda o, m=measure: o[m])
            d = np.array([get(b[k]) - get(a[k]) for k in chosen], float)
            se = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
            out[measure] = (float(d.mean()), float(se))
        rows.append((folder, len(chosen), out))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("a")
    p.add_argument("b")
    args = p.parse_args()
    print(f"B - A ({args.b} - {args.a}), mean ± standard error\n")
    print("| folder | objects | NoC@85 | NoC@90 | IoU after the last click |\n|---|---|---|---|---|")
    for folder, n, out in paired_rows(_load(args.a), _load(args.b)):
        cells = [f"{m:+.2f} ± {se:.2f}" for m, se in (out["noc85"], out["noc90"])]
        cells.append(f"{out['iou_last'][0]:+.3f} ± {out['iou_last'][1]:.3f}")
        print(f"| {folder} | {n} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
