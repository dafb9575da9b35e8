"""Choose the propagation stop rule on training volumes (never on a test split).

Round 0 of the stack protocol (robot clicks on the largest slice, commit, propagate) is run once
with a permissive rule that only stops where the object vanishes; every propagated slice's
measures (IoU / area ratio to the neighbour, model confidence, contrast relative to the start)
are recorded with its ground truth. A candidate rule stops each direction at the first slice it
rejects, so its round-0 Dice and extra / missed slices follow without predicting again.

    python benchmarks/stack_tuning.py ../shared/data/medical/msd_hippocampus/train --limit 40 \
        [--checkpoint FILE] [--cache measures.json]
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import torch

from napari_risnet.annotation import AnnotationSession, StopRule
from napari_risnet.annotation.stop_rule import DEFAULT_STOP_RULE
from napari_risnet.cli import build_method
from napari_risnet.data import spread
from napari_risnet.evaluation.robot import RobotUser
from napari_risnet.evaluation.stacks import _click_slice, iter_stack_objects, list_stack_objects

PERMISSIVE = StopRule(min_area=4, min_iou=0.0, max_area_ratio=1e9)


def record(method, obj, max_clicks: int, click_options: dict) -> dict:
    gt = obj.gt
    s = AnnotationSession(obj.image, method)
    s.stop_rule = PERMISSIVE
    s.measure_always = True
    s.click_options = click_options
    z0 = int(np.argmax(gt.sum(axis=(1, 2))))
    _click_slice(s, RobotUser(gt[z0]), gt[z0], (z0,), max_clicks, 0.85, None)
    oid = s.commit()
    res = s.propagate(oid)
    pred = s.labels == oid
    rows = []
    for m in res.measures:
        z = m["slice"][0]
        rows.append({k: m[k] for k in ("direction", "area", "area_ratio", "iou", "confidence",
                                       "contrast", "brightness")} | {
            "z": z, "inter": int((pred[z] & gt[z]).sum()), "pred": int(pred[z].sum()),
            "gt": int(gt[z].sum())})
    return {"name": obj.name, "z0": z0, "gt_total": int(gt.sum()),
            "seed_inter": int((pred[z0] & gt[z0]).sum()), "seed_pred": int(pred[z0].sum()),
            "gt_z": np.flatnonzero(gt.any(axis=(1, 2))).tolist(), "rows": rows}


def simulate(data: list[dict], rule: StopRule) -> dict:
    dice, extra, missed, beyond = [], [], [], []
    for d in data:
        inter, psum = d["seed_inter"], d["seed_pred"]
        kept = {d["z0"]}
        for direction in (1, -1):
            for r in (r for r in d["rows"] if r["direction"] == direction):
                m = {k: r.get(k) for k in ("area", "area_ratio", "iou", "confidence", "contrast",
                                           "brightness")}
                if rule.reason(m):
                    break
                inter += r["inter"]
                psum += r["pred"]
                kept.add(r["z"])
        dice.append(2 * inter / (psum + d["gt_total"]))
        gz = set(d["gt_z"])
        extra.append(len(kept - gz))
        missed.append(len(gz - kept))
        beyond.append(any(z < min(gz) or z > max(gz) for z in kept))
    return {"dice": float(np.mean(dice)), "extra": float(np.mean(extra)),
            "missed": float(np.mean(missed)), "in_extent": 1 - float(np.mean(beyond))}


def oracle(data: list[dict]) -> float:
    """Round-0 Dice if propagation stopped exactly at the object's ends."""
    dice = []
    for d in data:
        inter, psum = d["seed_inter"], d["seed_pred"]
        gz = set(d["gt_z"])
        for r in d["rows"]:
            if r["z"] in gz:
                inter, psum = inter + r["inter"], psum + r["pred"]
        dice.append(2 * inter / (psum + d["gt_total"]))
    return float(np.mean(dice))


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("dataset")
    p.add_argument("--limit", type=int, default=40)
    p.add_argument("--method", default="risnet")
    p.add_argument("--checkpoint", help="RIS-Net checkpoint (default: the bundled model): a "
                                        "candidate's own stopping, before it is gated")
    p.add_argument("--max-clicks", type=int, default=5)
    p.add_argument("--margin", type=float, default=1.0)
    p.add_argument("--elongated", type=int, default=1)
    p.add_argument("--cache", help="JSON of recorded measures (read if present, else written)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    opts = {"margin": args.margin, "elongated": bool(args.elongated)}
    if args.cache and Path(args.cache).is_file():
        data = json.loads(Path(args.cache).read_text())
    else:
        method = build_method(args.method, args.checkpoint)
        refs, _ = list_stack_objects(args.dataset)
        data = [record(method, o, args.max_clicks, opts)
                for o in iter_stack_objects(spread(refs, args.limit))]
        if args.cache:
            Path(args.cache).write_text(json.dumps(data))
    rows = []
    for min_iou, ratio, conf, contrast, bright in itertools.product(
            (0.25, 0.4, 0.5), (1.6, 2.0, 2.5), (0.0, 0.7, 0.75, 0.8), (0.0, 0.2, 0.3),
            (0.0, 0.3, 0.4, 0.5, 0.6)):
        rule = StopRule(min_iou=min_iou, max_area_ratio=ratio, min_confidence=conf,
                        min_contrast=contrast, min_brightness=bright)
        rows.append((simulate(data, rule), rule))
    rows.sort(key=lambda r: (-round(r[0]["dice"], 3), r[0]["extra"]))
    base = simulate(data, StopRule())
    print(f"objects: {len(data)}; oracle stop (the object's own extent): "
          f"{oracle(data):.3f}; area / IoU rule only (the old one): {base}; "
          f"the default rule: {simulate(data, DEFAULT_STOP_RULE)}")
    print("| min_iou | max_area_ratio | min_confidence | min_contrast | min_brightness | Dice r0 "
          "| extra | missed | in extent |\n|---|---|---|---|---|---|---|---|---|")
    for m, r in rows[:15]:
        print(f"| {r.min_iou} | {r.max_area_ratio} | {r.min_confidence} | {r.min_contrast} | "
              f"{r.min_brightness} | {m['dice']:.3f} | {m['extra']:.2f} | {m['missed']:.2f} | "
              f"{m['in_extent']:.0%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
