"""Clicks for the next slice of a stack, derived from the neighbouring slice's mask (what stack
propagation feeds the predictor in place of a user's clicks)."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from napari_risnet.clicks import Click


def derive_clicks(prev: np.ndarray, negatives: bool = True, elongated: bool = True,
                  margin: float = 1.0) -> list[Click]:
    """Clicks for the next slice from a neighbouring mask.

    A positive click at the mask's most interior point; on an elongated mask (``elongated``),
    a second one at the most interior point of the part farther than three radii from the
    first (one click in the middle of a long object says little about its ends). With
    ``negatives``, negative clicks left / right / above / below the mask's centre, ``margin``
    object half-extents beyond its edge (so a moderately larger object still lies inside
    them). Those off the image or on the mask (concave shapes) are dropped. (``margin`` 1.0
    and ``elongated`` were chosen on msd_hippocampus/train: benchmarks/stack_tuning_*.md.)
    """
    dist = ndimage.distance_transform_edt(np.pad(prev, 1))[1:-1, 1:-1]
    r, c = np.unravel_index(int(np.argmax(dist)), dist.shape)
    clicks = [Click(float(r), float(c), True)]
    radius = float(dist[r, c])
    if elongated and radius > 0:
        rr, cc = np.indices(prev.shape, sparse=True)
        far = (rr - r) ** 2 + (cc - c) ** 2 > (3 * radius) ** 2
        d2 = np.where(far, dist, 0)
        if d2.max() >= 0.5 * radius:
            r2, c2 = np.unravel_index(int(np.argmax(d2)), d2.shape)
            clicks.append(Click(float(r2), float(c2), True))
    if not negatives:
        return clicks
    rows, cols = np.nonzero(prev)
    h, w = prev.shape
    half_r = (rows.max() - rows.min() + 1) / 2
    half_c = (cols.max() - cols.min() + 1) / 2
    cr, cc_ = (rows.max() + rows.min()) / 2, (cols.max() + cols.min()) / 2
    for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        nr = cr + dr * ((1 + margin) * half_r + 3)
        nc = cc_ + dc * ((1 + margin) * half_c + 3)
        ir, ic = int(round(nr)), int(round(nc))
        if 0 <= ir < h and 0 <= ic < w and not prev[ir, ic]:
            clicks.append(Click(float(ir), float(ic), False))
    return clicks


__all__ = ["derive_clicks"]
