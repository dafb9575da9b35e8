"""Seconds per click of the classic baselines on 480x640 photos (median per method).

Robot-user clicks on objects of natural/coco_mval (training data) whose photo is 480x640 or
640x480; the time of ``predict`` only (``set_image`` once per object, as in the widget). Prints
a markdown table; the issue's bar is <= 1 s per click on this 2-core CPU.

    python benchmarks/baseline_speed.py ../shared/data/natural/coco_mval [--objects 5]
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from napari_risnet.evaluation.baselines import BASELINES
from napari_risnet.data import iter_objects
from napari_risnet.evaluation.robot import RobotUser


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("dataset")
    p.add_argument("--objects", type=int, default=5)
    p.add_argument("--clicks", type=int, default=10)
    p.add_argument("--methods", default=",".join(BASELINES))
    args = p.parse_args()
    samples = []
    for s in iter_objects(args.dataset, limit=200):
        if s.image.shape[:2] in ((480, 640), (640, 480)):
            samples.append(s)
        if len(samples) == args.objects:
            break
    print(f"{len(samples)} objects x {args.clicks} clicks, load average before: "
          f"{os.getloadavg()[0]:.2f}\n")
    print("| method | median s/click | 90th percentile | max | first click median |")
    print("|---|---|---|---|---|")
    for name in args.methods.split(","):
        method = BASELINES[name]()
        times, first = [], []
        for s in samples:
            method.set_image(s.image)
            robot = RobotUser(s.gt, s.ignore)
            clicks = [robot.first_click()]
            for k in range(args.clicks):
                tic = time.perf_counter()
                pred = method.predict(clicks)
                times.append(time.perf_counter() - tic)
                if k == 0:
                    first.append(times[-1])
                nxt = robot.next_click(pred.mask)
                if nxt is None:
                    break
                clicks.append(nxt)
        t = np.array(times)
        print(f"| {name} | {np.median(t):.3f} | {np.percentile(t, 90):.3f} | {t.max():.3f} | "
              f"{np.median(first):.3f} |", flush=True)
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
