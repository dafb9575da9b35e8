"""Choose the classic baselines' free parameters on training data (natural/coco_mval).

GrabCut and every `test` split are for evaluation only, so the few settings the papers leave
open are compared here, with the robot user, on objects spread over COCO-MVal (a training
folder). Prints NoC@85 / mean IoU after the last click per setting (primary: NoC@85, the
protocol's metric; results in docs/experiments.md, "Table 1"). Usage:

    python benchmarks/tune_baselines.py ../shared/data/natural/coco_mval [--objects 15]
"""
from __future__ import annotations

import argparse

from napari_risnet.evaluation.baselines import GeodesicMattingBaseline, GeodesicStarConvexityBaseline
from napari_risnet.data import iter_objects
from napari_risnet.evaluation.images import evaluate

GRID = {
    "geodesic_matting eps=1e-3 kde_sigma=1": lambda: GeodesicMattingBaseline(eps=1e-3),
    "geodesic_matting eps=1e-2 kde_sigma=1": lambda: GeodesicMattingBaseline(eps=1e-2),
    "geodesic_matting eps=1e-3 kde_sigma=0": lambda: GeodesicMattingBaseline(kde_sigma=0.0),
    "gsc gamma=0.5": lambda: GeodesicStarConvexityBaseline(gamma=0.5),
    "gsc gamma=0.9": lambda: GeodesicStarConvexityBaseline(gamma=0.9),
    "gsc gamma=1.0": lambda: GeodesicStarConvexityBaseline(gamma=1.0),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("dataset", help="a training folder, e.g. ../shared/data/natural/coco_mval")
    p.add_argument("--objects", type=int, default=15)
    p.add_argument("--max-clicks", type=int, default=10)
    args = p.parse_args()
    print(f"| setting | NoC@85 ({args.max_clicks} clicks) | mIoU@{args.max_clicks} | s/click |")
    print("|---|---|---|---|")
    for name, make in GRID.items():
        summary, _ = evaluate(make(), iter_objects(args.dataset, limit=args.objects),
                              args.max_clicks)
        print(f"| {name} | {summary.noc85:.2f} | {summary.miou[-1]:.3f} | "
              f"{summary.spc:.2f} |", flush=True)


if __name__ == "__main__":
    main()
