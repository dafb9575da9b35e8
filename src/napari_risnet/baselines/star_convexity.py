"""Star-convexity graph cuts (Gulshan et al., CVPR 2010): the seed's ESC and GSC rows.

The graph cut of :class:`GraphCutBaseline` plus a shape constraint: the object must be a union
of stars centred on the positive clicks. Every pixel ``p`` gets a parent ``q``, its next pixel
on the path towards its nearest star centre, and the constraint "p foreground implies q
foreground" becomes an infinite directed edge p -> q in the PyMaxflow graph (submodular, so the
cut stays exact). Chaining the parents, every foreground pixel sees its centre along its path.

- ESC: paths are digital straight rays to the Euclidean-nearest centre pixel (scipy's EDT
  gives the nearest centre; the step towards it is written here, no library has it).
- GSC: paths are the shortest geodesic paths of a forest grown from all centres at once
  (scikit-image's ``MCP_Geometric``; its traceback array gives each pixel's parent).

Star centres are the positive seed discs (the clicks as the user's "strokes").
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage
from skimage.graph import MCP_Geometric

from napari_risnet.baselines.graphcut import GraphCutBaseline
from napari_risnet.clicks import Click
from napari_risnet.inference.graphcut import GraphCutParams


def _edges(parent_r: np.ndarray, parent_c: np.ndarray, free: np.ndarray) -> np.ndarray:
    """(K, 2) flat indices (p, parent(p)) for the pixels ``free`` (all but the centres)."""
    w = free.shape[1]
    rows, cols = np.nonzero(free)
    return np.stack([rows * w + cols, parent_r[rows, cols] * w + parent_c[rows, cols]], axis=1)


def euclidean_star_parents(centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each pixel's next pixel on the digital ray towards its Euclidean-nearest centre pixel.

    The step is the 8-neighbour closest in direction to the ray: the larger component of the
    vector to the centre moves by one pixel, the other by its rounded ratio. The Chebyshev
    distance to the centre drops by one per step, so every chain of parents ends on it.

    Args:
        centres: (H, W) bool, at least one True.
    Returns:
        (parent_row, parent_col) int arrays of shape (H, W); a centre is its own parent.
    """
    if not centres.any():
        raise ValueError("star convexity needs at least one centre (a positive click)")
    _, (near_r, near_c) = ndimage.distance_transform_edt(~centres, return_indices=True)
    rows, cols = np.indices(centres.shape)
    vr, vc = near_r - rows, near_c - cols
    big = np.maximum(np.abs(vr), np.abs(vc)).astype(np.float64)
    big[big == 0] = 1.0
    return rows + np.rint(vr / big).astype(np.int64), cols + np.rint(vc / big).astype(np.int64)


def geodesic_star_parents(centres: np.ndarray, rgb: np.ndarray, gamma: float
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Each pixel's predecessor on its shortest geodesic path from the nearest centre.

    Gulshan's metric ``sqrt((1 - gamma) + gamma * |grad I|^2)`` with the gradient magnitude
    standing in for its directional derivative along the path (``MCP_Geometric`` takes costs per
    pixel, not per step), the gradient normalised by its image mean so ``gamma`` means the same
    on every image: 0 = Euclidean (8-connected) paths, 1 = image edges only.
    """
    if not centres.any():
        raise ValueError("star convexity needs at least one centre (a positive click)")
    grad = np.sqrt(sum(ndimage.sobel(rgb[..., k], axis=a) ** 2
                       for k in range(rgb.shape[-1]) for a in (0, 1)))
    grad /= max(float(grad.mean()), 1e-12)
    cost = np.sqrt((1.0 - gamma) + gamma * grad ** 2) + 1e-6
    mcp = MCP_Geometric(cost, fully_connected=True)
    _, trace = mcp.find_costs(np.argwhere(centres))
    offsets = np.asarray(mcp.offsets)
    rows, cols = np.indices(centres.shape)
    step = offsets[np.maximum(trace, 0)]  # predecessor = pixel - offsets[trace]
    root = trace < 0
    parent_r = np.where(root, rows, rows - step[..., 0])
    parent_c = np.where(root, cols, cols - step[..., 1])
    return parent_r, parent_c


class _StarConvexityBaseline(GraphCutBaseline):
    """A graph cut whose object is a union of stars centred on the positive seed discs."""

    def _seeds(self, clicks: Sequence[Click]) -> tuple[list[Click], np.ndarray, np.ndarray]:
        clicks, fg, bg = super()._seeds(clicks)
        if not fg.any():  # no star centre: the only star-convex object is the empty one
            bg = np.ones_like(bg)
        return clicks, fg, bg

    def _hard_edges(self, fg: np.ndarray, bg: np.ndarray) -> np.ndarray | None:
        if not fg.any():
            return None
        parent_r, parent_c = self._parents(fg)
        return _edges(parent_r, parent_c, ~fg)

    def _parents(self, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


class EuclideanStarConvexityBaseline(_StarConvexityBaseline):
    """Graph cut constrained to a union of Euclidean stars around the positive clicks (ESC)."""

    def _parents(self, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return euclidean_star_parents(centres)


class GeodesicStarConvexityBaseline(_StarConvexityBaseline):
    """Graph cut constrained to a union of geodesic stars around the positive clicks (GSC).

    Args:
        gamma: weight of the image gradient in the geodesic metric (0 = Euclidean paths). 0.9
            was chosen on natural/coco_mval (benchmarks/tune_baselines.py); a pure-edge metric
            (1.0) makes flat regions cost nothing, so their paths wander.
    """

    def __init__(self, params: GraphCutParams | None = None, seed_radius: int | None = None,
                 gamma: float = 0.9) -> None:
        super().__init__(params, seed_radius)
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {gamma}")
        self.gamma = gamma

    def _parents(self, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return geodesic_star_parents(centres, self.rgb, self.gamma)
