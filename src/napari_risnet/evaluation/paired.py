"""Two settings scored on the same objects, compared object by object.

Held-out folders hold 45–200 objects; a difference of means between two runs on them is mostly
the objects' spread. Paired per object, the standard error of the mean difference is what a
change has to clear (about half a click on the 45 held-out COCO objects). The files compared are
``benchmarks/validation.py --objects-out`` files: ``{"label": ..., "objects": [{"folder",
"name", "ious", "noc85", "noc90"}, ...]}``.

An answer rule *earns its place* (issue 25) when switching it off alone costs beyond two
standard errors: clicks over all objects at NoC@85 or NoC@90, or in one folder at both, or the
IoU after the last click over all objects. The test is fixed here, before any table is read, so
every ablation is judged by the same one. The rules that fail it are then retired together only
as far as the set passes the same test (``retire_together``): effects within noise one by one can
add up. The shipping rule is fixed the same way (``losses``): a candidate loses nowhere, no folder
and not over all, at NoC@85, NoC@90 or the IoU after the last click beyond two standard errors.
The IoU after the last click counts since 0.25.0: issue 25 names it beside NoC@90 (GrabCut
IoU@20 >= 0.94), and 0.24.0 retired the late merge, which holds it on held-out natural photos
beyond noise, because the test then counted clicks only (docs/experiments.md, 0.25.0).

Objects of one image are not independent draws: they share its contrast, scale and modality, and
a change that hurts one of them tends to hurt its neighbours. Beside the per-object standard
error every difference carries one with the objects clustered by image (an object's image is
its name before ``:``; mask objects are one per image), which is the honest one where a split
has few images (the particles' 100 test objects come from 17 figures). Evaluation-split result
files (``napari-risnet evaluate --out``) are read too, their objects in one folder named after
the split.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Mapping, NamedTuple

import numpy as np

from napari_risnet.metrics import clicks_to_reach

#: (folder, object name) -> that object's scores (at least its IoU curve, NoC@85 and NoC@90)
ObjectScores = dict[tuple[str, str], dict]


class Difference(NamedTuple):
    """A mean paired difference B - A with its standard errors (NaN where undefined)."""
    mean: float
    se: float  # objects as independent draws
    se_by_image: float  # objects clustered by their image
    images: int


#: (folder or "all", number of objects, {measure: its difference})
PairedRow = tuple[str, int, dict[str, Difference]]

#: how many standard errors a difference must clear to count
SIGNIFICANT_SE = 2.0

#: the measures a rule and a candidate are judged on, each with the sign of a loss (more clicks,
#: a lower IoU), and their names in a verdict
JUDGED = {"noc85": +1, "noc90": +1, "iou_last": -1}
#: the same for the stack benchmark (``napari-risnet evaluate-stack``): 3D Dice after the first
#: propagation (round 0) and after the last correction round, and the clicks an object took
STACK_JUDGED = {"dice_first": -1, "dice_last": -1, "clicks": +1}
MEASURE_NAMES = {"noc85": "NoC@85", "noc90": "NoC@90", "iou_last": "IoU after the last click",
                 "dice_first": "3D Dice after round 0", "dice_last": "3D Dice after the last round",
                 "clicks": "clicks per object"}
_SIGNS = {**JUDGED, **STACK_JUDGED}


def load_object_scores(path: str | os.PathLike) -> ObjectScores:
    """The per-object scores of a ``benchmarks/validation.py --objects-out`` file or of an
    ``napari-risnet evaluate --out`` file (NoC computed from its IoU curves, as evaluate does),
    keyed by (folder, name)."""
    try:
        data = json.loads(Path(path).read_text())
        objects = data["objects"]
        if objects and "folder" not in objects[0]:  # an evaluation-split result file
            folder = _split_name(str(data.get("dataset", "split")))
            limit = int(data.get("max_clicks", 20))
            objects = [{"folder": folder, "name": o["name"], "ious": o["ious"],
                        "noc85": clicks_to_reach(o["ious"], 0.85, limit),
                        "noc90": clicks_to_reach(o["ious"], 0.90, limit)} for o in objects]
        return {(o["folder"], o["name"]): o for o in objects}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not a per-object result file (benchmarks/validation.py "
                         f"--objects-out or napari-risnet evaluate --out): {exc}") from None


def load_stack_scores(path: str | os.PathLike) -> ObjectScores:
    """The per-object scores of an ``napari-risnet evaluate-stack --out`` file (``STACK_JUDGED``:
    3D Dice after round 0 and after the last round, clicks), keyed by (its data set, name)."""
    try:
        data = json.loads(Path(path).read_text())
        folder = _split_name(str(data.get("dataset", "stack")))
        return {(folder, o["name"]): {"folder": folder, "name": o["name"],
                                      "dice_first": float(o["dice"][0]),
                                      "dice_last": float(o["dice"][-1]),
                                      "clicks": float(o["clicks"])} for o in data["objects"]}
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise ValueError(f"{path} is not a stack result file (napari-risnet evaluate-stack "
                         f"--out): {exc}") from None


def _split_name(dataset: str) -> str:
    """emps_particles/test for .../emps_particles/test, grabcut for .../grabcut."""
    parts = Path(dataset.rstrip("/")).parts or ("split",)
    return "/".join(parts[-2:]) if parts[-1] in ("train", "test") else parts[-1]


def image_of(name: str) -> str:
    """The image an object belongs to: ``slice005`` for ``slice005:l101``; a mask object's name
    is its image's."""
    return name.split(":", 1)[0]


def difference(d: np.ndarray, images: list[str]) -> Difference:
    """The mean of per-object differences ``d`` with its standard error, plain and clustered by
    ``images`` (the sandwich estimator with its G / (G - 1) correction; NaN below 2 images)."""
    n, mean = len(d), float(d.mean())
    se = float(d.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    sums: dict[str, float] = {}
    for image, x in zip(images, d - mean):
        sums[image] = sums.get(image, 0.0) + float(x)
    g = len(sums)
    se_image = (float(np.sqrt(sum(v * v for v in sums.values()) * g / (g - 1)) / n)
                if g > 1 else float("nan"))
    return Difference(mean, se, se_image, g)


def iou_after(obj: Mapping, click: int | None) -> float:
    """The IoU after ``click`` clicks (None: the last); a robot that stopped keeps its last."""
    ious = obj["ious"]
    return ious[-1] if click is None else ious[min(click, len(ious)) - 1]


def paired_rows(a: ObjectScores, b: ObjectScores, iou_at: tuple[int, ...] = ()
                ) -> list[PairedRow]:
    """Per folder (sorted) and over "all": the mean difference B - A of NoC@85 (``noc85``),
    NoC@90 (``noc90``), the IoU after the last click (``iou_last``) and after each click K in
    ``iou_at`` (``iou_K``), with its standard errors, over the objects both files hold.

    Raises ValueError when the files share no object (another recipe or ``--per-source``).
    """
    getters: dict[str, Callable[[Mapping], float]] = {
        "noc85": lambda o: o["noc85"], "noc90": lambda o: o["noc90"],
        "iou_last": lambda o: iou_after(o, None)}
    getters.update({f"iou_{k}": (lambda o, k=k: iou_after(o, k)) for k in iou_at})
    return _rows(a, b, getters)


def stack_rows(a: ObjectScores, b: ObjectScores) -> list[PairedRow]:
    """``paired_rows`` of two ``load_stack_scores`` files: B - A of each ``STACK_JUDGED``
    measure, per data set and over "all" (one data set per file: the two rows agree)."""
    return _rows(a, b, {m: (lambda o, m=m: o[m]) for m in STACK_JUDGED})


def _rows(a: ObjectScores, b: ObjectScores, getters: Mapping[str, Callable[[Mapping], float]]
          ) -> list[PairedRow]:
    keys = sorted(set(a) & set(b))
    if not keys:
        raise ValueError("the two files share no objects: same recipe and --per-source?")
    rows = []
    for folder in sorted({f for f, _ in keys}) + ["all"]:
        chosen = [k for k in keys if folder in ("all", k[0])]
        images = [f"{f}/{image_of(name)}" for f, name in chosen]
        out = {measure: difference(np.array([get(b[k]) - get(a[k]) for k in chosen], float),
                                   images)
               for measure, get in getters.items()}
        rows.append((folder, len(chosen), out))
    return rows


def beyond_noise(mean: float, se: float) -> bool:
    """Whether a difference clears ``SIGNIFICANT_SE`` standard errors (and has one at all)."""
    return bool(se > 0 and abs(mean) > SIGNIFICANT_SE * se)


def worse(d: Difference, measure: str) -> bool:
    """Whether ``d`` (B - A of ``measure``, one of ``JUDGED`` or ``STACK_JUDGED``) is a loss for
    B beyond noise: more clicks, a lower IoU or Dice. The same loss on every object has no spread
    and still counts."""
    loss = _SIGNS[measure] * d.mean
    return loss > 0 and (d.se == 0 or beyond_noise(d.mean, d.se))


def better(d: Difference, measure: str) -> bool:
    """Whether ``d`` (B - A of ``measure``) is a gain for B beyond noise: fewer clicks or a higher
    IoU, beyond two standard errors per object *and*, where objects share images, clustered by
    image. The rule doubts a gain wherever it would count a loss: a gain is what sends a
    candidate on to the test splits, and the weight soup's held-out IoU gain (+0.004 ± 0.001 per
    object, ± 0.004 by image) did not carry to them (docs/experiments.md, "A weight soup")."""
    if _SIGNS[measure] * d.mean >= 0 or not beyond_noise(d.mean, d.se):
        return False
    clustered = d.images > 1 and np.isfinite(d.se_by_image)
    return not clustered or beyond_noise(d.mean, d.se_by_image)


def rule_earns_place(rows: list[PairedRow]) -> bool:
    """``rows``: ``paired_rows(all rules on, this rule off)``. True when switching the rule off
    is a loss by the shipping rule's own test (``losses``: NoC@85, NoC@90 or the IoU after the
    last click, in any folder or over all objects).

    One test for both, since 0.29.0: until then a rule stayed for the IoU over all objects only,
    and twice (0.24.0, 0.29.0's candidate) a late merge retired that way cost GrabCut's IoU after
    20 clicks on the test split, which the shipping rule judges split by split: held-out COCO had
    shown it both times (-0.006 / -0.005 +- 0.002) under 400 particles the merge never acts on.
    A rule retired now costs nothing the shipping rule counts, on the held-out objects
    (docs/experiments.md, "After 0.28.0")."""
    return bool(losses(rows))


def losses(rows: list[PairedRow], judged: Mapping[str, int] = JUDGED
           ) -> list[tuple[str, str, Difference]]:
    """``rows``: ``paired_rows(shipped, candidate)``. Where the candidate is worse than the
    shipped model beyond noise, as (folder or "all", measure, difference) for NoC@85, NoC@90 and
    the IoU after the last click (``judged``: ``JUDGED``; ``STACK_JUDGED`` for ``stack_rows``):
    the shipping rule (a new model or default ships only where this is empty), written once so
    that it is not applied by eye to a table."""
    return [(folder, measure, out[measure]) for folder, _, out in rows
            for measure in judged if worse(out[measure], measure)]


def gains(rows: list[PairedRow], judged: Mapping[str, int] = JUDGED
          ) -> list[tuple[str, str, Difference]]:
    """``rows``: ``paired_rows(shipped, candidate)``. Where the candidate is better beyond noise
    (``better``: fewer clicks, a higher IoU after the last click), the other half of the shipping
    rule: a model that loses nowhere ships only where it also gains somewhere."""
    return [(folder, measure, out[measure]) for folder, _, out in rows
            for measure in judged if better(out[measure], measure)]


def gate_verdict(lost: list[tuple[str, str, Difference]], who: str = "B") -> str:
    """The shipping rule's verdict on ``losses(...)`` as one line: "gate: passed", or "gate:
    failed" naming each loss (``who``: how the candidate is called where it is printed)."""
    if not lost:
        return f"gate: passed ({who} loses nowhere beyond two standard errors)"
    named = "; ".join(
        f"{folder} {MEASURE_NAMES[measure]} {format_measure(d, measure).strip('*')}"
        for folder, measure, d in lost)
    return f"gate: failed ({who} loses beyond two standard errors: {named})"


def retirement_order(alone: Mapping[str, list[PairedRow]]) -> list[str]:
    """``alone``: rule -> ``paired_rows(all rules on, this rule off)``. The rules that do not earn
    their place alone, the one that costs most to keep first (switching it off saves most):
    by the all-objects NoC@90 difference, then NoC@85, then name."""
    def key(rule: str) -> tuple[float, float, str]:
        out = next(o for folder, _, o in alone[rule] if folder == "all")
        return out["noc90"].mean, out["noc85"].mean, rule

    return sorted((r for r, rows in alone.items() if not rule_earns_place(rows)), key=key)


def retire_together(order: list[str], earns_together: Callable[[tuple[str, ...]], bool]
                    ) -> tuple[tuple[str, ...], list[tuple[tuple[str, ...], bool]]]:
    """Small effects that each stay within noise can add up: rules are retired one after the
    other in ``order`` (``retirement_order``), each only if the set retired so far with it
    still does not earn its place against all rules on (``earns_together(set)``: the same test,
    ``rule_earns_place``, of the set switched off together); a rule whose retirement makes the
    set earn its place stays. Returns the retired set and every set tried with its verdict."""
    retired: tuple[str, ...] = ()
    tried: list[tuple[tuple[str, ...], bool]] = []
    for rule in order:
        candidate = retired + (rule,)
        earns = bool(earns_together(candidate))
        tried.append((candidate, earns))
        if not earns:
            retired = candidate
    return retired, tried


def format_measure(d: Difference, measure: str, by_image: bool = False) -> str:
    """``format_difference`` with the digits of ``measure``: clicks to two decimals, an IoU
    (``iou_last``, ``iou_K``) or a Dice to three (their differences are thousandths)."""
    return format_difference(d, 3 if measure.startswith(("iou", "dice")) else 2, by_image)


def format_difference(d: Difference, digits: int = 2, by_image: bool = False) -> str:
    """``+0.34 ± 0.17``, in bold when beyond noise; ``by_image`` adds the clustered standard
    error (``+1.23 ± 0.27 (± 0.66 by 17 images)``), or says that all objects share one image."""
    text = f"{d.mean:+.{digits}f} ± {d.se:.{digits}f}"
    text = f"**{text}**" if beyond_noise(d.mean, d.se) else text
    if by_image and d.images > 1:
        text += f" (± {d.se_by_image:.{digits}f} by {d.images} images)"
    elif by_image:
        text += " (one image)"
    return text


__all__ = ["Difference", "JUDGED", "MEASURE_NAMES", "ObjectScores", "PairedRow",
           "SIGNIFICANT_SE", "beyond_noise", "better", "difference", "format_difference",
           "format_measure", "gains", "gate_verdict", "image_of", "iou_after",
           "load_object_scores", "load_stack_scores", "losses", "paired_rows", "retire_together",
           "retirement_order", "rule_earns_place", "stack_rows", "STACK_JUDGED", "worse"]
