"""Robot-user NoC of checkpoints on the held-out validation images of a training recipe.

The trainer holds out 5 % of each training folder's images (by a hash of the file stem) and
never trains on them; this scores models there, with 20 clicks and more objects than the
trainer's per-epoch check, to choose between checkpoints without touching GrabCut or any
`test` split. Usage:

    python benchmarks/validation.py training/stage1.toml default runs/stage2/last.pt \
        [--per-source 30] [--threads 1] [--ablate no_prev_mask|no_decoder] [--final-iou] \
        [--set NAME=VALUE ...] [--only FOLDER] [--upscale F] [--objects-out F.json] \
        [--check FOLDER [--check-limit 100]]

``--set`` changes a PredictorSettings field (``--set focus_from=0``) or, prefixed ``gc.``, a
graph-cut parameter (``--set gc.pairwise_weight=1.0``, see ``GraphCutParams``);
``--set rules_off=a,b`` removes answer rules by name (``RULES``). ``--objects-out FILE`` writes
every object's NoC and IoU curve (one checkpoint), for ``benchmarks/paired.py``: the same
objects under two settings, compared object by object with a standard error.

``--upscale F`` shows every held-out object F times larger (bilinear image, nearest mask): the
same objects seen at a higher resolution, e.g. nuclei as large in pixels as a microscope at a
higher magnification makes them (0.9.0: whether the small-object bias belongs to the
object's apparent size or to the domain).

``--check FOLDER`` (repeatable) adds an evaluation-only folder that is no test split, scored
like a held-out folder on ``--check-limit`` objects spread over it (as ``napari-risnet evaluate
--limit`` takes them): the EM particles' *train* split, never trained on. The held-out folders
cannot show what a domain nothing is trained on needs (0.19.0: rules retired on them lost the
particles' test split); a check folder shows it without choosing anything on a test split.
A ``test`` split, GrabCut or a folder the recipe trains on is refused.

``--ablate`` switches a part of an architecture-v2 model off at inference (the previous mask fed
as zeros, or the fusion used without the decoder's refinement): what each part contributes to
the trained model (not the same as training without it).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from napari_risnet.data import ObjectSample, iter_objects
from napari_risnet.evaluation.images import evaluate
from napari_risnet.inference.predictor import Predictor, PredictorSettings
from napari_risnet.training.config import load_config
from napari_risnet.training.validation import data_set_name, held_out_objects


def without_prev_mask_input(model: torch.nn.Module) -> None:
    """The network sees an empty previous mask (its 6th input channel zeroed); the answer rules
    (merge, spill limit, windows) still get the real one, as they do in use."""
    encode = model.encode

    def encode_without_prev(x: torch.Tensor, *args, **kwargs):
        return encode(torch.cat([x[:, :5], torch.zeros_like(x[:, 5:])], 1), *args, **kwargs)

    model.encode = encode_without_prev


def upscaled(sample: ObjectSample, factor: float) -> ObjectSample:
    """The object seen ``factor`` times larger: image bilinear, mask and ignore band nearest."""
    from skimage.transform import rescale

    channel_axis = -1 if sample.image.ndim == 3 else None
    image = rescale(sample.image.astype(np.float32), factor, order=1, channel_axis=channel_axis,
                    preserve_range=True, anti_aliasing=False)
    if np.issubdtype(sample.image.dtype, np.integer):
        info = np.iinfo(sample.image.dtype)
        image = image.round().clip(info.min, info.max)
    nearest = lambda m: rescale(m.astype(np.uint8), factor, order=0,  # noqa: E731
                                preserve_range=True, anti_aliasing=False) > 0
    return ObjectSample(sample.name, image.astype(sample.image.dtype), nearest(sample.gt),
                        nearest(sample.ignore))


def check_sets(checks: list[str], limit: int, trained: list[str], only: str | None = None
               ) -> list[tuple[str, list[ObjectSample]]]:
    """(folder, ``limit`` objects spread over it) of each check folder (``only``: of the one of
    that name; the others are still checked); SystemExit for a folder that is missing, a
    ``test`` split or GrabCut (evaluation only: never choose on them) or one of ``trained`` (the
    recipe's training folders: not out of domain)."""
    trained_paths = {Path(t).resolve() for t in trained}
    sets = []
    for folder in checks:
        path = Path(folder)
        if path.name in ("test", "grabcut"):
            raise SystemExit(f"--check {folder}: a test split or GrabCut is for evaluation only; "
                             "nothing is chosen on it")
        if path.resolve() in trained_paths:
            raise SystemExit(f"--check {folder}: the recipe trains on it; its held-out objects "
                             "are scored already")
        if not path.is_dir():
            raise SystemExit(f"--check {folder}: no such folder")
        if only is not None and data_set_name(folder) != only:
            continue
        try:
            sets.append((folder, list(iter_objects(path, limit=limit))))
        except (OSError, ValueError) as exc:
            raise SystemExit(f"--check {folder}: {exc}") from None
    return sets


def held_out_sets(recipe: str, per_source: int, only: str | None = None, upscale: float = 1.0,
                  checks: list[str] | None = None, check_limit: int = 100
                  ) -> list[tuple[str, list[ObjectSample]]]:
    """(folder, held-out objects) of the recipe's folders: the trainer's own split, then the
    ``checks`` folders (``check_sets``); ``only`` loads the folder of that name alone (SystemExit
    when none has it: one folder per process lets N cores score a set in about 1/N of the time),
    ``upscale`` shows each object that many times larger."""
    config = load_config(recipe)
    only = only or None
    sets, _ = held_out_objects(config, per_source, only)
    sets += check_sets(checks or [], check_limit, [src.path for src in config.data], only)
    if only and not sets:
        raise SystemExit(f"--only {only}: the recipe {recipe} has no such folder")
    if upscale != 1:
        sets = [(path, [upscaled(s, upscale) for s in samples]) for path, samples in sets]
    return sets


def score(predictor: Predictor, sets: list[tuple[str, list[ObjectSample]]], max_clicks: int
          ) -> tuple[list, list[dict]]:
    """The robot user on every set: one summary per set, and every object's scores in the
    ``--objects-out`` form (folder, name, IoU curve, NoC@85 / 90)."""
    summaries, objects = [], []
    for path, samples in sets:
        summary, results = evaluate(predictor, samples, max_clicks=max_clicks)
        summaries.append(summary)
        objects += [{"folder": data_set_name(path), "name": r.name, "ious": r.ious,
                     "noc85": r.noc(0.85, max_clicks), "noc90": r.noc(0.90, max_clicks)}
                    for r in results]
    return summaries, objects


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("recipe", help="training recipe (TOML) whose data folders and split to use")
    p.add_argument("checkpoints", nargs="+", help="'default' or checkpoint files")
    p.add_argument("--per-source", type=int, default=30, help="objects per data folder")
    p.add_argument("--max-clicks", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--only", default=None, help="score only the folder with this name")
    p.add_argument("--ablate", choices=["no_prev_mask", "no_decoder"], default=None)
    p.add_argument("--merge-from", type=int, default=None,
                   help="Predictor merge_from (progressive merge from this click; 0 = off)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="another Predictor setting, e.g. --set input_size=320 "
                        "--set use_graphcut=false (repeatable)")
    p.add_argument("--objects-out", default=None,
                   help="write per-object results (JSON) here; one checkpoint only")
    p.add_argument("--check", action="append", default=[], metavar="FOLDER",
                   help="an evaluation-only folder that is no test split, e.g. the EM particles' "
                        "train split (repeatable)")
    p.add_argument("--check-limit", type=int, default=100,
                   help="objects spread over each --check folder (default 100)")
    p.add_argument("--upscale", type=float, default=1.0,
                   help="show each held-out object this many times larger (default 1: as is)")
    p.add_argument("--final-iou", action="store_true",
                   help="also print the mean IoU after the last click (late-click drift)")
    args = p.parse_args()
    if not args.upscale > 0:
        p.error(f"--upscale must be > 0, got {args.upscale}")
    torch.set_num_threads(args.threads)
    try:
        settings = PredictorSettings().with_values(args.set)  # --set NAME=VALUE, typed
    except ValueError as exc:
        raise SystemExit(f"--set: {exc}") from None
    if args.merge_from is not None:
        settings = dataclasses.replace(settings, merge_from=args.merge_from)
    if args.objects_out and len(args.checkpoints) != 1:
        raise SystemExit("--objects-out takes one checkpoint")
    if args.check_limit < 1:
        p.error("--check-limit must be at least 1")
    sets = held_out_sets(args.recipe, args.per_source, args.only, args.upscale, args.check,
                         args.check_limit)
    what = "NoC@85 / 90" + (f" / IoU@{args.max_clicks}" if args.final_iou else "")
    print("| model | " + " | ".join(f"{data_set_name(path)} {what}" for path, _ in sets)
          + " | mean NoC@85 / 90 |")
    print("|---" * (len(sets) + 2) + "|")
    for ckpt in args.checkpoints:
        predictor = Predictor(ckpt, settings, device="cpu")
        if args.ablate == "no_decoder":
            predictor.model.decoder = None  # final answer = the max fusion
        if args.ablate == "no_prev_mask":
            without_prev_mask_input(predictor.model)
        cells, n85, n90 = [], [], []
        summaries, objects = score(predictor, sets, args.max_clicks)
        for summary in summaries:
            cells.append(f"{summary.noc85:.2f} / {summary.noc90:.2f}"
                         + (f" / {summary.miou[-1]:.3f}" if args.final_iou else ""))
            n85.append(summary.noc85)
            n90.append(summary.noc90)
        mean = f"{sum(n85) / len(n85):.2f} / {sum(n90) / len(n90):.2f}"
        label = ckpt + "".join(f" ({x})" for x in (
            args.ablate, None if args.merge_from is None else f"merge_from {args.merge_from}",
            None if args.upscale == 1 else f"upscale {args.upscale:g}", *args.set) if x)
        print(f"| {label} | " + " | ".join(cells) + f" | {mean} |", flush=True)
        if args.objects_out:
            Path(args.objects_out).write_text(json.dumps({"label": label, "objects": objects}))


if __name__ == "__main__":
    main()
