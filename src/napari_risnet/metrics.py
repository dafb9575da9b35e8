"""Mask metrics shared by evaluation and annotation (numpy only, the lowest layer)."""
from __future__ import annotations

import numpy as np


def iou(pred: np.ndarray, gt: np.ndarray, ignore: np.ndarray | None = None) -> float:
    """Intersection over union, ignoring ``ignore`` pixels (1.0 when both are empty)."""
    valid = np.ones_like(gt, bool) if ignore is None else ~ignore
    p, g = pred & valid, gt & valid
    union = np.count_nonzero(p | g)
    return 1.0 if union == 0 else np.count_nonzero(p & g) / union


__all__ = ["iou"]
