"""Two settings on the same held-out objects, compared object by object.

    python benchmarks/paired.py A.json B.json [--iou-at 5 10]

A and B are ``benchmarks/validation.py --objects-out`` files (same recipe, same ``--per-source``,
so the same objects). Prints, per folder and over all, the mean difference B - A of NoC@85,
NoC@90 and the IoU after the last click (and after each ``--iou-at`` click: an object whose
robot stopped earlier keeps its last IoU), with its standard error: on the 45 held-out COCO objects
a paired NoC difference has an SE of about half a click (docs/experiments.md, 0.7.0), so a change
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


def _iou_at(obj: dict, click: int | None) -> float:
    """The IoU after ``click`` clicks (None: the last); a robot that stopped keeps its last."""
    ious = obj["ious"]
    return ious[-1] if click is None else ious[min(click, len(ious)) - 1]


def paired_rows(a: dict, b: dict, iou_at: tuple[int, ...] = ()
                ) -> list[tuple[str, int, dict[str, tuple[float, float]]]]:
    """(folder or "all", objects, {measure: (mean difference B - A, standard error)}); the
    measures are noc85, noc90, iou_last and iou_K for each K in ``iou_at``."""
    keys = sorted(set(a) & set(b))
    if not keys:
        raise SystemExit("the two files share no objects: same recipe and --per-source?")
    rows = []
    for folder in sorted({f for f, _ in keys}) + ["all"]:
        chosen = [k for k in keys if folder in ("all", k[0])]
        out = {}
        getters = {"noc85": lambda o: o["noc85"], "noc90": lambda o: o["noc90"],
                   "iou_last": lambda o: _iou_at(o, None)}
        getters.update({f"iou_{k}": (lambda o, k=k: _iou_at(o, k)) for k in iou_at})
        for measure, get in getters.items():
            d = np.array([get(b[k]) - get(a[k]) for k in chosen], float)
            se = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
            out[measure] = (float(d.mean()), float(se))
        rows.append((folder, len(chosen), out))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--iou-at", type=int, nargs="*", default=[], metavar="K",
                   help="also compare the IoU after click K (1-based)")
    args = p.parse_args()
    if any(k < 1 for k in args.iou_at):
        p.error("--iou-at clicks count from 1")
    print(f"B - A ({args.b} - {args.a}), mean ± standard error\n")
    extra = "".join(f" IoU after click {k} |" for k in args.iou_at)
    print("| folder | objects | NoC@85 | NoC@90 | IoU after the last click |" + extra + "\n"
          + "|---" * (5 + len(args.iou_at)) + "|")
    for folder, n, out in paired_rows(_load(args.a), _load(args.b), tuple(args.iou_at)):
        cells = [f"{m:+.2f} ± {se:.2f}" for m, se in (out["noc85"], out["noc90"])]
        cells += [f"{out[m][0]:+.3f} ± {out[m][1]:.3f}"
                  for m in ["iou_last"] + [f"iou_{k}" for k in args.iou_at]]
        print(f"| {folder} | {n} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
