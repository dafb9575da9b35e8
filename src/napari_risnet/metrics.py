"""Mask metrics shared by evaluation and annotation (numpy only, the lowest layer)."""
from __future__ import annotations

import numpy as np


def iou(pred: np.ndarray, gt: np.ndarray, ignore: np.ndarray | None = None) -> float:
    """Intersection over union, ignoring ``ignore`` pixels (1.0 when both are empty)."""
    valid = np.ones_like(gt, bool) if ignore is None else ~ignore
    p, g = pred & valid, gt & valid
    union = np.count_nonzero(p | g)
    return 1.0 if union == 0 else np.count_nonzero(p & g) / union


def clicks_to_reach(ious: list[float], threshold: float, max_clicks: int) -> int:
    """NoC of one object: the first click count whose IoU reaches ``threshold``, ``max_clicks``
    when none does (the robot user's convention, which the paper's tables use too)."""
    return next((i + 1 for i, v in enumerate(ious) if v >= threshold), max_clicks)


__all__ = ["clicks_to_reach", "iou"]
