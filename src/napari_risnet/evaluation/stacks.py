"""Robot-user evaluation of stack annotation: click one slice, propagate, correct, re-propagate.

The stack twin of ``evaluation``; the clicks inside a slice come from the same ``RobotUser``.
Per object (one 3D label):

1. round 0: the robot clicks on the slice where the object is largest until IoU >= ``stop_iou``
   or ``max_clicks``; the object is committed and propagated through the stack;
2. rounds 1..``rounds``: the robot picks the slice with the most wrong pixels (including
   slices wrongly added or missed) among those it has not corrected yet. A slice wrongly added
   is erased (one click); otherwise the robot clicks there the same way, continuing from the
   mask shown, and the object is propagated again from that slice (slices the robot clicked
   stay fixed).

Scores: 3D Dice after each round, clicks, slices wrongly added / missed after round 0, and
whether round 0 added a slice beyond the object's extent along Z.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from napari_risnet.annotation import AnnotationSession, StopRule
from napari_risnet.data import label_ids, list_dataset, read_array
from napari_risnet.evaluation.robot import RobotUser, iou
from napari_risnet.evaluation.summary_json import summary_json


@dataclass
class StackObject:
    """One 3D object: the (Z, Y, X) image (or (Z, Y, X, C)) and its (Z, Y, X) bool mask."""

    name: str
    image: np.ndarray
    gt: np.ndarray


@dataclass
class StackObjectResult:
    """Scores of one object; ``dice`` holds the 3D Dice after round 0, 1, ..."""

    name: str
    dice: list[float] = field(default_factory=list)
    clicks: int = 0
    extra_slices: int = 0
    missed_slices: int = 0
    beyond_extent: int = 0
    seconds: float = 0.0
    gt_slices: int = 0
    measures: list[dict[str, Any]] = field(default_factory=list)


def dice3d(pred: np.ndarray, gt: np.ndarray) -> float:
    """Dice of two bool volumes (1.0 when both are empty)."""
    total = int(pred.sum()) + int(gt.sum())
    return 1.0 if total == 0 else 2.0 * np.count_nonzero(pred & gt) / total


def slice_errors(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, int, int, int]:
    """Wrong pixels per slice, slices wrongly added, slices missed, and slices added outside the
    object's Z extent."""
    wrong = (pred ^ gt).reshape(len(gt), -1).sum(axis=1)
    has_p = pred.reshape(len(pred), -1).any(axis=1)
    has_g = gt.reshape(len(gt), -1).any(axis=1)
    z = np.flatnonzero(has_g)
    outside = np.ones(len(gt), bool)
    if len(z):
        outside[z[0]:z[-1] + 1] = False
    return (wrong, int((has_p & ~has_g).sum()), int((~has_p & has_g).sum()),
            int((has_p & outside).sum()))


def _click_slice(session: AnnotationSession, robot: RobotUser, gt: np.ndarray, key: tuple,
                 max_clicks: int, stop_iou: float, object_id: int | None) -> int:
    """The robot clicks on one slice until IoU >= ``stop_iou`` or ``max_clicks``; returns the
    clicks made. ``object_id`` None: the current object; else a correction of that object."""
    n = 0
    if object_id is None:
        mask = None
    else:
        mask = session.labels[key] == object_id
    while n < max_clicks:
        if mask is not None and iou(mask, gt) >= stop_iou:
            break
        click = robot.next_click(mask) if mask is not None and robot.clicks \
            else robot.first_click()
        if click is None:
            break
        n += 1
        if object_id is None:
            mask = session.add_click(click, key)
        else:
            mask = session.correct(object_id, click, key)
    return n


def evaluate_stack_object(method: Any, obj: StackObject, max_clicks: int = 5, rounds: int = 3,
                          stop_iou: float = 0.85, rule: StopRule | None = None,
                          click_options: dict | None = None) -> StackObjectResult:
    """Run the protocol on one object (see the module docstring)."""
    if max_clicks < 1 or rounds < 0:
        raise ValueError(f"need max_clicks >= 1 and rounds >= 0, got {max_clicks}, {rounds}")
    gt = np.asarray(obj.gt, bool)
    if gt.ndim != 3 or not gt.any():
        raise ValueError(f"{obj.name}: the object must be a non-empty (Z, Y, X) mask")
    tic = time.perf_counter()
    session = AnnotationSession(obj.image, method, rgb=obj.image.ndim == 4)
    if rule is not None:
        session.stop_rule = rule
    if click_options:
        session.click_options = dict(click_options)
    result = StackObjectResult(obj.name, gt_slices=int(gt.any(axis=(1, 2)).sum()))
    z0 = int(np.argmax(gt.sum(axis=(1, 2))))
    result.clicks += _click_slice(session, RobotUser(gt[z0]), gt[z0], (z0,), max_clicks,
                                  stop_iou, None)
    try:
        oid = session.commit()
    except ValueError:  # nothing found where the robot clicked: the object stays empty
        result.dice = [0.0] * (rounds + 1)
        result.missed_slices = result.gt_slices
        result.seconds = time.perf_counter() - tic
        return result
    prop = session.propagate(oid)
    result.measures = prop.measures
    pred = session.labels == oid
    result.dice.append(dice3d(pred, gt))
    _, result.extra_slices, result.missed_slices, result.beyond_extent = slice_errors(pred, gt)
    corrected = {z0}
    for _ in range(rounds):
        wrong, *_ = slice_errors(pred, gt)
        wrong[list(corrected)] = 0
        z = int(np.argmax(wrong))
        if wrong[z] == 0:
            result.dice.append(result.dice[-1])
            continue
        corrected.add(z)
        if not gt[z].any():
            session.erase_slice(oid, (z,))
            result.clicks += 1
        else:
            robot = RobotUser(gt[z])
            rec = session.objects[oid].slices.get((z,))
            if rec is not None and pred[z].any():
                robot.clicks = list(rec.clicks)  # continue from the mask on screen
            result.clicks += _click_slice(session, robot, gt[z], (z,), max_clicks, stop_iou,
                                          oid)
            session.propagate(oid, from_slice=(z,))
        pred = session.labels == oid
        result.dice.append(dice3d(pred, gt))
    result.seconds = time.perf_counter() - tic
    return result


@dataclass
class StackSummary:
    """Means over objects (what the CLI prints and writes to JSON)."""

    dice3d: list[float]
    clicks: float
    extra_slices: float
    missed_slices: float
    no_slice_beyond_extent: float
    seconds_per_object: float
    n_objects: int
    max_clicks: int
    rounds: int
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return summary_json(self)


def summarize_stack(results: Sequence[StackObjectResult], max_clicks: int, rounds: int
                    ) -> StackSummary:
    if not results:
        raise ValueError("no objects were evaluated")
    return StackSummary(
        dice3d=np.mean([r.dice for r in results], axis=0).round(5).tolist(),
        clicks=float(np.mean([r.clicks for r in results])),
        extra_slices=float(np.mean([r.extra_slices for r in results])),
        missed_slices=float(np.mean([r.missed_slices for r in results])),
        no_slice_beyond_extent=float(np.mean([r.beyond_extent == 0 for r in results])),
        seconds_per_object=float(np.mean([r.seconds for r in results])),
        n_objects=len(results), max_clicks=max_clicks, rounds=rounds)


def list_stack_objects(root: str | Path, min_voxels: int = 64
                       ) -> tuple[list[tuple[Path, Path, int]], int]:
    """(image file, labels file, label id) of every 3D object of a dataset with ``labels/``
    holding (Z, Y, X) stacks, and the number skipped for having fewer than ``min_voxels``."""
    refs, skipped = [], 0
    for entry in list_dataset(root):
        if entry.labels is None:
            raise ValueError(f"{root}: {entry.stem} has no labels/ file (the stack benchmark "
                             f"needs one 3D object per label)")
        labels = read_array(entry.labels)
        if labels.ndim != 3:
            raise ValueError(f"{entry.labels}: expected a (Z, Y, X) label stack, got shape "
                             f"{labels.shape}")
        ids, small = label_ids(labels, min_voxels)
        skipped += small
        refs += [(entry.image, entry.labels, i) for i in ids]
    return refs, skipped


def iter_stack_objects(refs: Sequence[tuple[Path, Path, int]]) -> Iterator[StackObject]:
    """Load the objects one by one (the last volume stays in memory)."""
    cache: dict = {}
    for image_path, labels_path, label in refs:
        if cache.get("path") != image_path:
            cache = {"path": image_path, "image": read_array(image_path),
                     "labels": read_array(labels_path)}
        image, labels = cache["image"], cache["labels"]
        if image.shape[:3] != labels.shape:
            raise ValueError(f"{image_path.name}: image {image.shape} and labels "
                             f"{labels.shape} differ")
        yield StackObject(f"{image_path.stem}:l{label}", image, labels == label)


def evaluate_stack(method: Any, objects: Iterable[StackObject], max_clicks: int = 5,
                   rounds: int = 3, stop_iou: float = 0.85, rule: StopRule | None = None,
                   click_options: dict | None = None,
                   progress: Callable[[StackObjectResult], None] | None = None
                   ) -> tuple[StackSummary, list[StackObjectResult]]:
    """Evaluate ``method`` on every object; ``progress`` is called after each one."""
    results = []
    for obj in objects:
        results.append(evaluate_stack_object(method, obj, max_clicks, rounds, stop_iou, rule,
                                             click_options))
        if progress is not None:
            progress(results[-1])
    return summarize_stack(results, max_clicks, rounds), results


def format_stack_table(rows: dict[str, StackSummary]) -> str:
    """A plain-text table, one row per method."""
    n = max(len(s.dice3d) for s in rows.values())
    head = (f"{'method':<12}" + "".join(f"{f'Dice r{i}':>9}" for i in range(n))
            + f"{'clicks':>8}{'extra':>7}{'missed':>8}{'in extent':>10}{'s/obj':>7}"
            f"{'objects':>9}")
    lines = [head, "-" * len(head)]
    for name, s in rows.items():
        lines.append(f"{name:<12}" + "".join(f"{d:>9.3f}" for d in s.dice3d)
                     + f"{s.clicks:>8.2f}{s.extra_slices:>7.2f}{s.missed_slices:>8.2f}"
                     f"{s.no_slice_beyond_extent:>10.0%}{s.seconds_per_object:>7.1f}"
                     f"{s.n_objects:>9d}")
    return "\n".join(lines)


def save_stack_json(summary: StackSummary, path: str | Path,
                    results: Sequence[StackObjectResult] = ()) -> None:
    """Write the summary and the per-object scores as JSON."""
    d = summary.to_json()
    d["objects"] = [{"name": r.name, "dice": np.round(r.dice, 5).tolist(), "clicks": r.clicks,
                     "extra_slices": r.extra_slices, "missed_slices": r.missed_slices,
                     "beyond_extent": r.beyond_extent, "gt_slices": r.gt_slices,
                     "seconds": round(r.seconds, 3)} for r in results]
    Path(path).write_text(json.dumps(d, indent=1))


def plot_stack_curves(rows: dict[str, StackSummary], path: str | Path, title: str = "") -> None:
    """PNG of mean 3D Dice against correction rounds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.6), dpi=120)
    for name, s in rows.items():
        ax.plot(range(len(s.dice3d)), s.dice3d, marker="o", ms=3, label=name)
    ax.axhline(0.85, color="grey", lw=0.6, ls=":")
    ax.set_xlabel("correction rounds")
    ax.set_ylabel("mean 3D Dice")
    ax.set_ylim(0, 1)
    ax.set_xticks(range(max(len(s.dice3d) for s in rows.values())))
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


__all__ = ["StackObject", "StackObjectResult", "StackSummary", "dice3d", "evaluate_stack",
           "evaluate_stack_object", "format_stack_table", "iter_stack_objects",
           "list_stack_objects", "plot_stack_curves", "save_stack_json", "slice_errors",
           "summarize_stack"]
