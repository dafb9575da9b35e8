"""When a propagated slice is no longer the object: the ``StopRule`` that ends a direction of
stack propagation, and the image measures it compares with the slice the user clicked (an
object's contrast against a ring around it, its brightness above the slice's dark level).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from napari_risnet.metrics import iou  # the evaluation's IoU, also the propagation stop rule


@dataclass(frozen=True)
class StopRule:
    """When a propagated slice is no longer the object (thresholds chosen on the training
    volumes of msd_hippocampus with benchmarks/stack_tuning.py).

    Args:
        min_area: fewer pixels: the object vanished.
        min_iou: IoU with the neighbouring slice's mask below this: it jumped elsewhere.
        max_area_ratio: area changed by more than this factor from the neighbour.
        min_confidence: mean model probability inside the mask below this: the model is unsure
            (skipped for segmenters whose ``calibrated`` attribute is False, e.g. the graph
            cut baseline, whose probabilities are colour posteriors).
        min_contrast: the object's contrast against a ring around it, as a fraction of that
            contrast on its brightest clicked slice, below this: the object fades into its
            surroundings (or the mask spread into background). 0 disables it.
        min_brightness: the object's mean intensity above the slice's dark level, as a fraction
            of that on its brightest clicked slice, below this: the object fades out. 0
            disables it.
        hold_contrast: not a stop but a brake: where the relative contrast falls below this,
            the mask may not grow beyond the neighbour's -- a fading end keeps or shrinks its
            outline instead of spreading into the background. Off by default (it cost 3D
            Dice on the hippocampus training volumes); 0.7 suits fluorescence nuclei whose
            dim ends the model turns into blobs.
    """

    min_area: int = 4
    min_iou: float = 0.25
    max_area_ratio: float = 2.5
    min_confidence: float = 0.0
    min_contrast: float = 0.0
    min_brightness: float = 0.0
    hold_contrast: float = 0.0

    def __post_init__(self) -> None:
        if self.min_area < 0 or not 0 <= self.min_iou <= 1 or self.max_area_ratio < 1 \
                or not 0 <= self.min_confidence <= 1 or self.min_contrast < 0 \
                or self.min_brightness < 0:
            raise ValueError(f"invalid stop rule {self}: need min_area >= 0, min_iou and "
                             f"min_confidence in [0, 1], max_area_ratio >= 1, min_contrast "
                             f"and min_brightness >= 0")

    @property
    def uses_image(self) -> bool:
        return self.min_contrast > 0 or self.min_brightness > 0 or self.hold_contrast > 0

    def measure(self, mask: np.ndarray, prev: np.ndarray, probabilities: np.ndarray | None,
                contrast: float | None = None, brightness: float | None = None
                ) -> dict[str, Any]:
        """What the rule looks at: area, area ratio and IoU to the neighbour, confidence (mean
        probability inside the mask), and ``contrast`` / ``brightness`` relative to the start
        slice (computed by the caller from the image; None = unknown)."""
        area, prev_area = int(mask.sum()), int(prev.sum())
        return {
            "area": area,
            "area_ratio": max(area, prev_area) / max(1, min(area, prev_area)),
            "iou": iou(mask, prev) if area else 0.0,
            "confidence": (float(probabilities[mask].mean())
                           if probabilities is not None and area else None),
            "contrast": contrast,
            "brightness": brightness,
        }

    def reason(self, m: dict[str, Any]) -> str | None:
        """Why the measured slice ends the object; None = go on."""
        if m["area"] < max(1, self.min_area):
            return "the object vanished"
        if m["area_ratio"] > self.max_area_ratio:
            return f"the area changed by a factor {m['area_ratio']:.1f}"
        if m["iou"] < self.min_iou:
            return f"the overlap with the neighbouring slice fell to IoU {m['iou']:.2f}"
        if m["confidence"] is not None and m["confidence"] < self.min_confidence:
            return f"the model's confidence fell to {m['confidence']:.2f}"
        if m.get("contrast") is not None and m["contrast"] < self.min_contrast:
            return f"the object faded: {m['contrast']:.0%} of its contrast where it started"
        if m.get("brightness") is not None and m["brightness"] < self.min_brightness:
            return f"the object faded: {m['brightness']:.0%} of its brightness where it started"
        return None

    def check(self, mask: np.ndarray, prev: np.ndarray, probabilities: np.ndarray | None = None,
              contrast: float | None = None, brightness: float | None = None) -> str | None:
        """Why ``mask`` (predicted from the neighbour ``prev``) ends the object; None = go on."""
        return self.reason(self.measure(mask, prev, probabilities, contrast, brightness))


#: The rule ``propagate`` uses unless told otherwise.
DEFAULT_STOP_RULE = StopRule(min_iou=0.4, max_area_ratio=2.5, min_confidence=0.75,
                             min_brightness=0.5)


def object_brightness(grey: np.ndarray, mask: np.ndarray) -> float | None:
    """Mean intensity inside ``mask`` above the slice's dark level (its 2nd percentile)."""
    if not mask.any():
        return None
    return float(grey[mask].mean() - np.percentile(grey, 2))


def object_contrast(grey: np.ndarray, mask: np.ndarray) -> float | None:
    """Mean intensity inside ``mask`` minus the mean in a ring around it (width about a third
    of the object's radius, at least 2 px); None when the ring or the mask is empty."""
    area = int(mask.sum())
    if area == 0:
        return None
    width = max(2, int(round(0.33 * np.sqrt(area / np.pi))))
    box = _box(mask, width + 1)
    m = mask[box]
    ring = ndimage.binary_dilation(m, iterations=width) & ~m
    if not ring.any():
        return None
    g = grey[box]
    return float(g[m].mean() - g[ring].mean())


def relative_to(value: float | None, reference: float | None) -> float | None:
    """``value`` as a fraction of ``reference`` (signs follow the reference: a dark object's
    negative contrast counts like a bright one's); None when either is unknown or ~0."""
    if value is None or reference is None or abs(reference) < 1e-6:
        return None
    return value / reference


def _box(mask: np.ndarray, pad: int) -> tuple[slice, slice]:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return (slice(max(0, rows[0] - pad), rows[-1] + pad + 1),
            slice(max(0, cols[0] - pad), cols[-1] + pad + 1))


__all__ = ["DEFAULT_STOP_RULE", "StopRule", "object_brightness", "object_contrast",
           "relative_to"]
