"""Two settings on the same held-out objects, compared object by object.

    python benchmarks/paired.py A.json B.json [--iou-at 5 10] [--gate]

A and B are ``benchmarks/validation.py --objects-out`` files (same recipe, same ``--per-source``,
so the same objects) or two ``napari-risnet evaluate --out`` files of one split. Prints, per
folder and over all, the mean difference B - A of NoC@85, NoC@90 and the IoU after the last
click (and after each ``--iou-at`` click: an object whose robot stopped earlier keeps its last
IoU), with its standard error (bold beyond two) and, in brackets, the standard error with the
objects clustered by image: on the 45 held-out COCO objects a paired NoC difference has an SE
of about half a click (docs/experiments.md, 0.7.0), so a change smaller than that is not a
finding; where many objects share few images, the clustered one is the one to read.

``--gate`` applies the shipping rule with A the shipped model and B the candidate
(``napari_risnet.evaluation.paired.losses``): it names every folder where B costs more clicks,
or ends at a lower IoU after the last click, beyond two standard errors and exits with status
1 if there is one, 0 if there is none.
"""
from __future__ import annotations

import argparse

from napari_risnet.evaluation.paired import (PairedRow, format_measure, gate_verdict,
                                             load_object_scores, losses, paired_rows)


def print_paired_table(a: str, b: str, rows: list[PairedRow], iou_at: tuple[int, ...] = ()
                       ) -> None:
    """The rows of ``paired_rows(A, B)`` as a Markdown table, B - A per folder and over all."""
    extra = "".join(f" IoU after click {k} |" for k in iou_at)
    print(f"B - A ({b} - {a}), mean ± standard error\n")
    print("| folder | objects | NoC@85 | NoC@90 | IoU after the last click |" + extra + "\n"
          + "|---" * (5 + len(iou_at)) + "|")
    for folder, n, out in rows:
        cells = [format_measure(out[m], m, by_image=True)
                 for m in ["noc85", "noc90", "iou_last"] + [f"iou_{k}" for k in iou_at]]
        print(f"| {folder} | {n} | " + " | ".join(cells) + " |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--iou-at", type=int, nargs="*", default=[], metavar="K",
                   help="also compare the IoU after click K (1-based)")
    p.add_argument("--gate", action="store_true",
                   help="A is the shipped model, B the candidate: exit 1 where B loses beyond "
                        "two standard errors (NoC@85, NoC@90 or the IoU after the last click, any "
                        "folder or all)")
    args = p.parse_args()
    if any(k < 1 for k in args.iou_at):
        p.error("--iou-at clicks count from 1")
    try:
        rows = paired_rows(load_object_scores(args.a), load_object_scores(args.b),
                           tuple(args.iou_at))
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    print_paired_table(args.a, args.b, rows, tuple(args.iou_at))
    if args.gate:
        lost = losses(rows)
        print("\n" + gate_verdict(lost))
        if lost:
            raise SystemExit(1)


if __name__ == "__main__":
    main()
