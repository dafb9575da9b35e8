"""Clicks, the distance maps fed to the network and RIS-Net's ROI proposals.

Coordinates are (row, col) everywhere, matching napari's (y, x).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
from scipy import ndimage

#: Distance maps are truncated here, as in the paper (Xu et al. 2016 / RIS-Net).
DISTANCE_TRUNCATION = 255.0
#: Smallest ROI side in pixels, so that a click pair one pixel apart still yields a usable box.
MIN_ROI_SIDE = 8.0


@dataclass(frozen=True)
class Click:
    """One user click. ``positive`` clicks mark the object, negative ones the background."""

    row: float
    col: float
    positive: bool = True

    def scaled(self, row_scale: float, col_scale: float, row_offset: float = 0.0,
               col_offset: float = 0.0) -> "Click":
        """Map the click with ``new = (old - offset) * scale`` (used by crop / zoom transforms)."""
        return Click((self.row - row_offset) * row_scale, (self.col - col_offset) * col_scale,
                     self.positive)


def validate_clicks(clicks: Sequence[Click], shape: tuple[int, int]) -> list[Click]:
    """Check that ``clicks`` is a non-empty list of :class:`Click` inside an image of ``shape``.

    Raises:
        TypeError: an element is not a Click.
        ValueError: no clicks, or a click lies outside the image or is not finite.
    """
    clicks = list(clicks)
    if not clicks:
        raise ValueError("at least one click is needed; the first click should be positive")
    h, w = shape
    for c in clicks:
        if not isinstance(c, Click):
            raise TypeError(f"expected Click objects, got {type(c).__name__}")
        if not (math.isfinite(c.row) and math.isfinite(c.col)):
            raise ValueError(f"click {c} has a non-finite coordinate")
        if not (-0.5 <= c.row < h - 0.5 and -0.5 <= c.col < w - 0.5):
            raise ValueError(f"click at (row={c.row:.1f}, col={c.col:.1f}) lies outside the "
                             f"image of shape {h}x{w}")
    return clicks


def distance_maps(shape: tuple[int, int], clicks: Iterable[Click],
                  truncation: float = DISTANCE_TRUNCATION) -> np.ndarray:
    """Euclidean distance to the nearest positive / negative click.

    Args:
        shape: (H, W) of the image.
        clicks: the clicks; a sign without any click gives a map filled with ``truncation``.
        truncation: distances are clipped to this value (255 in the paper).

    Returns:
        float32 array (2, H, W): [positive, negative] distances in pixels, in [0, truncation].
    """
    h, w = shape
    out = np.full((2, h, w), truncation, dtype=np.float32)
    for channel, sign in ((0, True), (1, False)):
        seeds = np.ones((h, w), dtype=bool)
        any_click = False
        for c in clicks:
            if c.positive == sign:
                r = int(np.clip(round(c.row), 0, h - 1))
                q = int(np.clip(round(c.col), 0, w - 1))
                seeds[r, q] = False
                any_click = True
        if any_click:
            out[channel] = np.minimum(ndimage.distance_transform_edt(seeds), truncation)
    return out


def square_box(a: Click, b: Click, shape: tuple[int, int]) -> np.ndarray:
    """Square box around a click pair: their bounding box with the shorter side grown to the
    longer one (about the pair's midpoint), then clipped to the image.

    Returns:
        float32 array [r0, c0, r1, c1] (exclusive end) in pixel coordinates.
    """
    side = max(abs(a.row - b.row), abs(a.col - b.col), MIN_ROI_SIDE)
    return _clip_box((a.row + b.row) / 2, (a.col + b.col) / 2, side, shape)


def _clip_box(center_r: float, center_c: float, side: float, shape: tuple[int, int]) -> np.ndarray:
    h, w = shape
    half = side / 2
    r0, r1 = max(0.0, center_r - half), min(float(h), center_r + half + 1)
    c0, c1 = max(0.0, center_c - half), min(float(w), center_c + half + 1)
    return np.array([r0, c0, r1, c1], dtype=np.float32)


def pair_rois(clicks: Sequence[Click], shape: tuple[int, int]) -> np.ndarray:
    """One square ROI per positive click, paired with its nearest negative click.

    With no negative click yet the whole image is the only ROI (as in the paper).

    Returns:
        float32 array (K, 4) of [r0, c0, r1, c1] boxes.
    """
    pos = [c for c in clicks if c.positive]
    neg = [c for c in clicks if not c.positive]
    h, w = shape
    if not neg or not pos:
        return np.array([[0, 0, h, w]], dtype=np.float32)
    neg_xy = np.array([[c.row, c.col] for c in neg])
    boxes = []
    for p in pos:
        d = np.hypot(neg_xy[:, 0] - p.row, neg_xy[:, 1] - p.col)
        boxes.append(square_box(p, neg[int(np.argmin(d))], shape))
    return np.stack(boxes)


def propose_rois(clicks: Sequence[Click], shape: tuple[int, int], n_roi: int = 5,
                 slide: bool = True) -> np.ndarray:
    """RIS-Net ROI proposals: click-pair boxes, then boxes slid between neighbours up to ``n_roi``.

    Neighbouring ROIs are those adjacent when the boxes are ordered by angle around the
    centroid of the positive clicks (they hug the object boundary). Extra ROIs are interpolated
    (centre and side) along the straight segment between two neighbours, i.e. the shorter path,
    the widest gaps getting them first. With more pair boxes than ``n_roi`` the boxes of the
    most recent positive clicks are kept, a deterministic choice that follows the user's focus.

    Args:
        clicks: the clicks so far.
        shape: (H, W) of the image.
        n_roi: the number of ROIs wanted (paper: 5). Fewer are returned only when there is a
            single pair box or no negative click (sliding needs two distinct boxes).
        slide: add the sliding ROIs (False gives just the pair boxes, capped at ``n_roi``).

    Returns:
        float32 array (K, 4) of [r0, c0, r1, c1] boxes, 1 <= K <= n_roi.
    """
    if n_roi < 1:
        raise ValueError(f"n_roi must be >= 1, got {n_roi}")
    boxes = pair_rois(clicks, shape)
    if len(boxes) > n_roi:
        return boxes[-n_roi:]
    boxes = _unique_boxes(boxes)
    if not slide or len(boxes) < 2 or len(boxes) >= n_roi:
        return boxes
    pos = np.array([[c.row, c.col] for c in clicks if c.positive])
    centroid = pos.mean(axis=0)
    centres = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], axis=1)
    order = np.argsort(np.arctan2(centres[:, 0] - centroid[0], centres[:, 1] - centroid[1]),
                       kind="stable")
    boxes, centres = boxes[order], centres[order]
    sides = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    k = len(boxes)
    pairs = [(i, (i + 1) % k) for i in range(k if k > 2 else 1)]
    gaps = np.array([np.hypot(*(centres[i] - centres[j])) for i, j in pairs])
    extra = _split_extra(n_roi - k, gaps)
    new = []
    for (i, j), m in zip(pairs, extra):
        for s in range(1, m + 1):
            t = s / (m + 1)
            cr, cc = centres[i] * (1 - t) + centres[j] * t
            new.append(_clip_box(cr, cc, sides[i] * (1 - t) + sides[j] * t, shape))
    return np.concatenate([boxes, np.stack(new)]) if new else boxes


def _unique_boxes(boxes: np.ndarray) -> np.ndarray:
    _, idx = np.unique(np.round(boxes, 3), axis=0, return_index=True)
    return boxes[np.sort(idx)]


def _split_extra(n_extra: int, gaps: np.ndarray) -> list[int]:
    """Share ``n_extra`` sliding ROIs among gaps, one at a time to the gap with the largest
    per-ROI spacing (deterministic: ties go to the first gap)."""
    counts = [0] * len(gaps)
    for _ in range(n_extra):
        spacing = gaps / (np.array(counts) + 1)
        counts[int(np.argmax(spacing))] += 1
    return counts


def pad_rois(boxes: np.ndarray, n_roi: int) -> np.ndarray:
    """Repeat boxes cyclically up to ``n_roi`` (training: a single pair box is repeated)."""
    if len(boxes) >= n_roi:
        return boxes[:n_roi]
    reps = [boxes[i % len(boxes)] for i in range(n_roi)]
    return np.stack(reps)
