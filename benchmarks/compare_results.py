"""Two result files of the same run, compared object by object: is a change free of behaviour?

    python benchmarks/compare_results.py training/results/risnet_grabcut.json new_grabcut.json

Takes ``napari-risnet evaluate`` or ``evaluate-stack`` JSON files (``--out``). Prints the
objects whose results differ (IoU curve, or Dice / clicks / slices for stacks) and the summary
numbers that differ; timings and the recorded settings are left out. Exit status 0 when the
two are identical, 1 when not.
"""
from __future__ import annotations

import argparse
import json
import sys

#: keys that measure the machine or describe the run, not its answers
SKIP = {"spc", "seconds", "seconds_per_object", "predictor", "dataset", "objects"}


def differences(a: dict, b: dict) -> list[str]:
    """What differs between two result files (empty: identical answers)."""
    out = []
    objects_a, objects_b = a.get("objects", []), b.get("objects", [])
    if len(objects_a) != len(objects_b):
        out.append(f"{len(objects_a)} objects against {len(objects_b)}")
    for x, y in zip(objects_a, objects_b):
        keys = sorted((set(x) | set(y)) - SKIP)
        changed = [k for k in keys if x.get(k) != y.get(k)]
        if changed:
            out.append(f"object {x.get('name')} / {y.get('name')}: " + ", ".join(
                f"{k} {x.get(k)} -> {y.get(k)}" for k in changed))
    for key in sorted((set(a) | set(b)) - SKIP):
        if a.get(key) != b.get(key):
            out.append(f"{key}: {a.get(key)} -> {b.get(key)}")
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("a")
    p.add_argument("b")
    args = p.parse_args()
    with open(args.a) as fa, open(args.b) as fb:
        a, b = json.load(fa), json.load(fb)
    found = differences(a, b)
    for line in found:
        print(line)
    n = len(a.get("objects", []))
    print(f"{n} objects: " + ("identical" if not found else f"{len(found)} differences"))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
