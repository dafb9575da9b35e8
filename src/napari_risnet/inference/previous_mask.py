"""The object's previous mask as the predictor needs it: its box (where the next zoom-in window
goes) and its part inside a window (the architecture-v2 model's previous-mask input). A huge,
lazily read image keeps only the last Prediction's window, so both accept that too.
"""
from __future__ import annotations

import numpy as np

from napari_risnet.inference.prediction import Prediction
from napari_risnet.inference.preprocess import CropTransform


def prev_in_window(prev: "np.ndarray | Prediction | None", t: CropTransform
                   ) -> np.ndarray | None:
    """The previous mask cut to the window ``t`` (None when there is none)."""
    if prev is None:
        return None
    if isinstance(prev, Prediction):
        mask, window = prev.mask, prev.window
        if window is None or mask.shape[:2] != (window[2] - window[0], window[3] - window[1]):
            window = (0, 0, *mask.shape[:2])
        out = np.zeros(t.crop_shape, bool)
        r0, c0 = max(t.r0, window[0]), max(t.c0, window[1])
        r1, c1 = min(t.r1, window[2]), min(t.c1, window[3])
        if r1 > r0 and c1 > c0:
            out[r0 - t.r0:r1 - t.r0, c0 - t.c0:c1 - t.c0] = \
                mask[r0 - window[0]:r1 - window[0], c0 - window[1]:c1 - window[1]]
        return out
    return np.asarray(prev)[t.r0:t.r1, t.c0:t.c1]


def mask_box(prev: "np.ndarray | Prediction | None", shape: tuple[int, int]
             ) -> tuple[int, int, int, int] | None:
    """Bounding box (r0, c0, r1, c1) of a previous mask or Prediction; None when empty."""
    if prev is None:
        return None
    r0 = c0 = 0
    if isinstance(prev, Prediction):
        mask = prev.mask
        if prev.window is not None and mask.shape != shape:
            r0, c0 = prev.window[:2]
    else:
        mask = np.asarray(prev)
        if mask.shape != shape:
            raise ValueError(f"prev_mask of shape {mask.shape} does not match the image {shape}")
    rows = np.flatnonzero(mask.any(axis=1))
    if len(rows) == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return r0 + rows[0], c0 + cols[0], r0 + rows[-1] + 1, c0 + cols[-1] + 1


__all__ = ["mask_box", "prev_in_window"]
