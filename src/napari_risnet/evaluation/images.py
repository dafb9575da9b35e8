"""Robot-user evaluation of any interactive method: IoU per click, NoC@85/90, NoF, SPC.

Also the Hamming distance (percentage of the image's valid pixels mislabelled) and the coverage
(fraction of the object's pixels inside the mask), both averaged per click count, as the seed
reports them alongside NoC.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from napari_risnet.data import ObjectSample
from napari_risnet.inference.predictor import InteractiveSegmenter
from napari_risnet.evaluation.robot import RobotUser, iou
from napari_risnet.evaluation.summary_json import summary_json
from napari_risnet.metrics import clicks_to_reach

THRESHOLDS = (0.85, 0.90)


@dataclass
class ObjectResult:
    """IoU, Hamming distance (%), coverage and seconds after each click of one object."""

    name: str
    ious: list[float] = field(default_factory=list)
    hamming: list[float] = field(default_factory=list)
    coverage: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def noc(self, threshold: float, max_clicks: int) -> int:
        """First click count reaching ``threshold`` (``max_clicks`` when never reached)."""
        return clicks_to_reach(self.ious, threshold, max_clicks)


def evaluate_object(method: InteractiveSegmenter, sample: ObjectSample, max_clicks: int = 20,
                    stop_iou: float | None = None) -> ObjectResult:
    """Let the robot user click up to ``max_clicks`` times on one object.

    Args:
        stop_iou: stop early once this IoU is reached; later clicks keep the last scores
            (saves time; None = always ``max_clicks`` clicks, the protocol's default).
    """
    robot = RobotUser(sample.gt, sample.ignore)
    method.set_image(sample.image)
    result = ObjectResult(sample.name)
    clicks = [robot.first_click()]
    valid = ~sample.ignore
    n_valid = max(int(valid.sum()), 1)
    n_gt = max(int((sample.gt & valid).sum()), 1)
    prev = None
    while True:
        tic = time.perf_counter()
        pred = method.predict(clicks, prev_mask=prev)
        result.seconds.append(time.perf_counter() - tic)
        mask = pred.mask
        prev = mask
        result.ious.append(iou(mask, sample.gt, sample.ignore))
        result.hamming.append(100.0 * np.count_nonzero((mask ^ sample.gt) & valid) / n_valid)
        result.coverage.append(np.count_nonzero(mask & sample.gt & valid) / n_gt)
        if len(clicks) >= max_clicks or (stop_iou is not None and result.ious[-1] >= stop_iou):
            break
        nxt = robot.next_click(mask)
        if nxt is None:
            break
        clicks.append(nxt)
    for series in (result.ious, result.hamming, result.coverage):
        series.extend([series[-1]] * (max_clicks - len(series)))
    return result


@dataclass
class Summary:
    """Aggregate over objects (what the CLI prints and writes to JSON)."""

    noc85: float
    noc90: float
    nof85: int
    nof90: int
    miou: list[float]
    hamming: list[float]
    coverage: list[float]
    spc: float
    n_objects: int
    max_clicks: int
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return summary_json(self)


def summarize(results: Sequence[ObjectResult], max_clicks: int = 20) -> Summary:
    """NoC@85/90 (mean), NoF (never reached), mean curves and seconds per click."""
    if not results:
        raise ValueError("no objects were evaluated")
    nocs = {t: [r.noc(t, max_clicks) for r in results] for t in THRESHOLDS}
    reached = {t: [any(v >= t for v in r.ious) for r in results] for t in THRESHOLDS}
    seconds = [s for r in results for s in r.seconds]
    return Summary(
        noc85=float(np.mean(nocs[0.85])), noc90=float(np.mean(nocs[0.90])),
        nof85=int(len(results) - sum(reached[0.85])), nof90=int(len(results) - sum(reached[0.90])),
        miou=np.mean([r.ious for r in results], axis=0).round(5).tolist(),
        hamming=np.mean([r.hamming for r in results], axis=0).round(5).tolist(),
        coverage=np.mean([r.coverage for r in results], axis=0).round(5).tolist(),
        spc=float(np.mean(seconds)), n_objects=len(results), max_clicks=max_clicks)


def evaluate(method: InteractiveSegmenter, samples: Iterable[ObjectSample], max_clicks: int = 20,
             stop_iou: float | None = None,
             progress: Callable[[ObjectResult], None] | None = None
             ) -> tuple[Summary, list[ObjectResult]]:
    """Evaluate ``method`` on every sample; ``progress`` is called after each object."""
    if max_clicks < 1:
        raise ValueError(f"max_clicks must be >= 1, got {max_clicks}")
    results = []
    for sample in samples:
        results.append(evaluate_object(method, sample, max_clicks, stop_iou))
        if progress is not None:
            progress(results[-1])
    return summarize(results, max_clicks), results


def format_table(rows: dict[str, Summary]) -> str:
    """A plain-text table, one row per method (the CLI and benchmarks print it)."""
    head = (f"{'method':<22}{'NoC@85':>8}{'NoC@90':>8}{'NoF@85':>8}{'NoF@90':>8}"
            f"{'IoU@1':>8}{'IoU@3':>8}{'IoU@5':>8}{'s/click':>9}{'objects':>9}")
    lines = [head, "-" * len(head)]
    for name, s in rows.items():
        m = s.miou + [s.miou[-1]] * 5
        lines.append(f"{name:<22}{s.noc85:>8.2f}{s.noc90:>8.2f}{s.nof85:>8d}{s.nof90:>8d}"
                     f"{m[0]:>8.3f}{m[2]:>8.3f}{m[4]:>8.3f}{s.spc:>9.3f}{s.n_objects:>9d}")
    return "\n".join(lines)


def save_json(summary: Summary, path: str | Path, results: Sequence[ObjectResult] = ()) -> None:
    """Write the summary (and per-object IoU curves) as JSON."""
    d = summary.to_json()
    d["objects"] = [{"name": r.name, "ious": np.round(r.ious, 5).tolist()} for r in results]
    Path(path).write_text(json.dumps(d, indent=1))


def plot_curves(rows: dict[str, Summary], path: str | Path, title: str = "") -> None:
    """PNG of mean IoU against the number of clicks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.6), dpi=120)
    for name, s in rows.items():
        ax.plot(range(1, len(s.miou) + 1), s.miou, marker="o", ms=3, label=name)
    ax.axhline(0.85, color="grey", lw=0.6, ls=":")
    ax.axhline(0.90, color="grey", lw=0.6, ls="--")
    ax.set_xlabel("number of clicks")
    ax.set_ylabel("mean IoU")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
