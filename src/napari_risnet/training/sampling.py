"""Training clicks as in Xu et al. 2016, plus iterative clicks by the evaluation's RobotUser.

Positive clicks: 1..N inside the object, at least ``d_margin`` from its boundary and ``d_step``
from each other. Negative clicks, one of three strategies per sample:
  1. random background pixels within ``d`` of the object (and ``d_margin`` away from it);
  2. on other objects of the same image (instance labels), else strategy 1;
  3. spread along the object's surroundings (farthest-point sampling in a band around it).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from napari_risnet.clicks import Click


def _pick_spread(candidates: np.ndarray, n: int, d_step: float, rng: np.random.Generator
                 ) -> list[tuple[int, int]]:
    """Up to ``n`` points of ``candidates`` (K, 2) pairwise >= d_step apart, random order."""
    if len(candidates) == 0 or n <= 0:
        return []
    order = rng.permutation(len(candidates))[: 4000]
    picked: list[np.ndarray] = []
    for i in order:
        p = candidates[i]
        if all(np.hypot(*(p - q)) >= d_step for q in picked):
            picked.append(p)
            if len(picked) == n:
                break
    return [(int(r), int(c)) for r, c in picked]


def _farthest_points(candidates: np.ndarray, n: int, rng: np.random.Generator
                     ) -> list[tuple[int, int]]:
    if len(candidates) == 0 or n <= 0:
        return []
    sub = candidates[rng.permutation(len(candidates))[:2000]]
    chosen = [0]
    dmin = np.hypot(*(sub - sub[0]).T)
    for _ in range(1, min(n, len(sub))):
        i = int(np.argmax(dmin))
        chosen.append(i)
        dmin = np.minimum(dmin, np.hypot(*(sub - sub[i]).T))
    return [(int(sub[i, 0]), int(sub[i, 1])) for i in chosen]


def sample_clicks(gt: np.ndarray, ignore: np.ndarray, others: np.ndarray | None,
                  rng: np.random.Generator, max_positive: int = 5, max_negative: int = 10
                  ) -> list[Click]:
    """Random training clicks for one object (Xu et al. 2016).

    Args:
        gt: (H, W) bool object. ignore: (H, W) bool never clicked. others: (H, W) bool pixels of
            other objects, or None.
    Returns:
        clicks, positives first; at least one positive when the object is non-empty.
    """
    valid = ~ignore
    obj = gt & valid
    if not obj.any():
        return []
    size = np.sqrt(obj.sum())
    d_margin = max(1.0, min(5.0, size * 0.08))
    d_step = max(2.0, min(10.0, size * 0.15))
    inside = ndimage.distance_transform_edt(np.pad(obj, 1))[1:-1, 1:-1]
    cand = np.argwhere(inside >= d_margin)
    if len(cand) == 0:
        cand = np.argwhere(inside >= inside.max())
    n_pos = int(rng.integers(1, max_positive + 1)) if rng.random() < 0.5 else 1
    pos = _pick_spread(cand, n_pos, d_step, rng)
    clicks = [Click(r, c, True) for r, c in pos]
    n_neg = int(rng.integers(0, max_negative + 1))
    if n_neg == 0:
        return clicks
    outside = ndimage.distance_transform_edt(~gt)
    far = max(d_margin * 2, min(40.0, size * 1.5))
    strategy = int(rng.integers(0, 3))
    band = (outside >= d_margin * 2) & (outside <= far) & valid
    if strategy == 1 and others is not None and (others & valid & ~gt).any():
        other = others & valid & ~gt
        depth = ndimage.distance_transform_edt(other)
        neg = _pick_spread(np.argwhere(depth >= min(2.0, depth.max())), n_neg, d_step, rng)
    elif strategy == 2:
        neg = _farthest_points(np.argwhere(band), n_neg, rng)
    else:
        neg = _pick_spread(np.argwhere(band), n_neg, d_step, rng)
    return clicks + [Click(r, c, False) for r, c in neg]
