"""Where does the remaining error sit? Per-click IoU traces and an error breakdown on the
held-out part of the training folders (never GrabCut or a `test` split).

For every click of the robot user it records the IoU and splits the wrong pixels into
- ``boundary``: within ``--band`` image pixels of the ground-truth boundary (what a coarse,
  upsampled mask or a soft answer gets wrong),
- ``missed``: false negatives deeper inside the object (a part not found),
- ``spill``: false positives farther out (a leak onto the background),
and counts clicks that change the IoU by less than 0.005 ("ignored" clicks) or lower it. Of
the clicks that lower it, it measures where the wrong pixels they add lie: in the click's own
edit (the connected change under it, :func:`napari_risnet.inference.merge.click_edit`) or
elsewhere (0.11.0: on held-out COCO more than half lay in the click's own edit, a spill).
Usage:

    python benchmarks/diagnose.py training/stage2.toml --method risnet [--checkpoint F] \
        [--per-source 30] [--max-clicks 20] [--only coco_mval] [--set NAME=VALUE ...] \
        [--out diag.json]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from napari_risnet.inference.merge import click_edit
from napari_risnet.evaluation.robot import RobotUser, iou
from napari_risnet.training.config import load_config
from napari_risnet.training.validation import data_set_name, held_out_objects

STILL = 0.005  # a click that moves the IoU less than this "changed almost nothing"


def error_breakdown(mask: np.ndarray, gt: np.ndarray, valid: np.ndarray, band: float
                    ) -> dict[str, int]:
    """Wrong pixels split by where they are relative to the ground-truth boundary."""
    inside = ndimage.distance_transform_edt(gt)
    outside = ndimage.distance_transform_edt(~gt)
    fn = ~mask & gt & valid
    fp = mask & ~gt & valid
    return {"boundary": int((fn & (inside <= band)).sum() + (fp & (outside <= band)).sum()),
            "missed": int((fn & (inside > band)).sum()),
            "spill": int((fp & (outside > band)).sum()),
            "gt": int((gt & valid).sum())}


def trace_object(method, sample, max_clicks: int, band: float) -> dict:
    robot = RobotUser(sample.gt, sample.ignore)
    method.set_image(sample.image)
    valid = ~sample.ignore
    clicks, prev, ious, errors, seconds = [robot.first_click()], None, [], [], []
    added = []  # per click after the first: wrong pixels added in its own edit / elsewhere
    while True:
        tic = time.perf_counter()
        mask = method.predict(clicks, prev_mask=prev).mask
        seconds.append(time.perf_counter() - tic)
        if prev is not None:
            added.append(wrong_pixels_added(mask, prev, clicks[-1], sample.gt, valid))
        prev = mask
        ious.append(iou(mask, sample.gt, sample.ignore))
        errors.append(error_breakdown(mask, sample.gt, valid, band))
        if len(clicks) >= max_clicks:
            break
        nxt = robot.next_click(mask)
        if nxt is None:
            break
        clicks.append(nxt)
    while len(ious) < max_clicks:
        ious.append(ious[-1])
        errors.append(errors[-1])
    return {"name": sample.name, "ious": ious, "errors": errors, "seconds": seconds,
            "added": added}


def wrong_pixels_added(mask: np.ndarray, prev: np.ndarray, click, gt: np.ndarray,
                       valid: np.ndarray) -> tuple[int, int]:
    """Net wrong pixels a click added inside its own edit and elsewhere (negative: removed)."""
    edit = click_edit(mask, prev, click)
    if edit is None:
        edit = np.zeros(mask.shape, bool)
    delta = ((mask != gt) & valid).astype(int) - ((prev != gt) & valid)
    return int(delta[edit].sum()), int(delta[~edit].sum())


def summarise(traces: list[dict], max_clicks: int) -> dict:
    ious = np.array([t["ious"] for t in traces])
    deltas = np.diff(ious, axis=1)
    err = {k: np.array([[e[k] for e in t["errors"]] for t in traces], float)
           for k in ("boundary", "missed", "spill", "gt")}
    total = err["boundary"] + err["missed"] + err["spill"]
    share = {}
    for k in ("boundary", "missed", "spill"):
        # share of all wrong pixels, pooled over objects, after clicks 1 / 5 / 10 / 20
        share[k] = [float(err[k][:, c].sum() / max(total[:, c].sum(), 1))
                    for c in (0, 4, 9, max_clicks - 1)]
    not_done = ious[:, :-1] < 0.9  # clicks that were still needed at the 90 % target
    worse = (deltas < -STILL) & not_done
    in_edit = elsewhere = 0
    for t, row in zip(traces, worse):
        for (edit, other), bad in zip(t["added"], row):
            if bad:
                in_edit, elsewhere = in_edit + max(edit, 0), elsewhere + max(other, 0)
    return {
        "n_objects": len(traces),
        "miou": [float(v) for v in ious.mean(0)],
        "noc85": float(np.mean([next((i + 1 for i, v in enumerate(t) if v >= 0.85), 20)
                                for t in ious])),
        "noc90": float(np.mean([next((i + 1 for i, v in enumerate(t) if v >= 0.90), 20)
                                for t in ious])),
        "error_share_at_1_5_10_20": share,
        "still_clicks": float((np.abs(deltas) < STILL)[not_done].mean()),
        "worse_clicks": float((deltas < -STILL)[not_done].mean()),
        # of the wrong pixels the worse clicks added, the share inside the click's own edit
        "worse_in_own_edit": float(in_edit / max(in_edit + elsewhere, 1)),
        "boundary_only_at_20": float(np.mean((err["boundary"][:, -1] >= 0.8 * total[:, -1])
                                             & (ious[:, -1] < 0.9))),
    }


def build(method: str, checkpoint: str | None, settings: list[str] | None = None):
    """The method; ``settings``: NAME=VALUE strings over the default predictor settings."""
    if method == "risnet":
        from napari_risnet.inference.predictor import Predictor, PredictorSettings
        return Predictor(checkpoint or "default",
                         PredictorSettings().with_values(settings or []), device="cpu")
    from napari_risnet.evaluation.baselines import GraphCutBaseline
    return GraphCutBaseline()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("recipe", help="training recipe whose held-out split to use")
    p.add_argument("--method", default="risnet", choices=["risnet", "graphcut"])
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--per-source", type=int, default=30)
    p.add_argument("--max-clicks", type=int, default=20)
    p.add_argument("--band", type=float, default=3.0, help="boundary band, image pixels")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--only", default=None, help="diagnose only the folder with this name")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="a Predictor setting (risnet only), e.g. --set spill_ratio=0")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    if args.set and args.method != "risnet":
        p.error("--set applies to --method risnet only")
    torch.set_num_threads(args.threads)
    sets, _ = held_out_objects(load_config(args.recipe), args.per_source)
    method = build(args.method, args.checkpoint, args.set)
    report = {}
    for folder, samples in sets:
        if args.only and data_set_name(folder) != args.only:
            continue
        traces = [trace_object(method, s, args.max_clicks, args.band) for s in samples]
        report[data_set_name(folder)] = {"summary": summarise(traces, args.max_clicks),
                                 "traces": traces}
        s = report[data_set_name(folder)]["summary"]
        print(f"{data_set_name(folder)}: NoC@85/90 {s['noc85']:.2f}/{s['noc90']:.2f} "
              f"mIoU@1/5/10/20 {s['miou'][0]:.3f}/{s['miou'][4]:.3f}/{s['miou'][9]:.3f}/"
              f"{s['miou'][-1]:.3f} still {s['still_clicks']:.2f} worse {s['worse_clicks']:.2f} "
              f"(in own edit {s['worse_in_own_edit']:.2f}) "
              f"boundary-only@20 {s['boundary_only_at_20']:.2f} shares "
              + " ".join(f"{k} {'/'.join(f'{v:.2f}' for v in vs)}"
                         for k, vs in s["error_share_at_1_5_10_20"].items()), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(report))


if __name__ == "__main__":
    main()
