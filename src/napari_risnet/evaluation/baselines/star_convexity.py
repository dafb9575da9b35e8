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

Both cut the image downscaled to ``max_side`` (320 px) and upsample the mask: at full 480x640
size Boykov-Kolmogorov's max-flow has a heavy tail with the star edges (3-4 s on some clicks of
natural/coco_mval photos, 10-30 s while the CPU was shared, where the plain graph cut takes
0.2 s; integer capacities or shortcut edges to further ancestors did not help); at 320 px the
slowest click we saw took about 1.5 s with the CPU shared. Images up to ``max_side`` are cut at
full size.
"""
from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np
from scipy import ndimage
from skimage.graph import MCP_Geometric
from skimage.transform import resize

from napari_risnet.evaluation.baselines.graphcut import GraphCutBaseline
from napari_risnet.clicks import Click, validate_clicks
from napari_risnet.inference.graphcut import GraphCutParams, click_seeds
from napari_risnet.inference.predictor import Prediction


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

    def __init__(self, params: GraphCutParams | None = None, seed_radius: int | None = None,
                 max_side: int = 320) -> None:
        super().__init__(params, seed_radius)
        if max_side < 8:
            raise ValueError(f"max_side must be >= 8 pixels, got {max_side}")
        self.max_side = max_side
        self._full: tuple[int, int] = (0, 0)
        self._full_radius = 1
        self._scale = 1.0

    def set_image(self, image: Any, channels: Sequence[int] | None = None) -> None:
        super().set_image(image, channels)
        h, w = self._full = self.rgb.shape[:2]
        self._full_radius = self.radius
        self._scale = min(1.0, self.max_side / max(h, w))
        if self._scale < 1.0:  # the cut runs on a smaller copy (module docstring)
            small = (max(2, round(h * self._scale)), max(2, round(w * self._scale)))
            self.rgb = resize(self.rgb, small + (3,), order=1, anti_aliasing=True
                              ).astype(np.float32)
            self.radius = max(1, round(self.radius * self._scale))
            self.band = max(1, round(self.band * self._scale))

    def predict(self, clicks: Sequence[Click], prev_mask: np.ndarray | None = None
                ) -> Prediction:
        if self.rgb is None or self._scale == 1.0:
            return super().predict(clicks, prev_mask)
        tic = time.perf_counter()
        clicks = validate_clicks(clicks, self._full)
        sh, sw = self.rgb.shape[:2]
        small = [Click(min(c.row * self._scale, sh - 1.0), min(c.col * self._scale, sw - 1.0),
                       c.positive) for c in clicks]
        pred = super().predict(small)
        probs = resize(pred.probabilities, self._full, order=1).astype(np.float32)
        mask = resize(pred.mask.astype(np.float32), self._full, order=1) >= 0.5
        fg, bg = click_seeds(self._full, clicks, self._full_radius)
        mask = (mask | fg) & ~bg  # the clicks hold at full resolution too
        return Prediction(probs, mask, {"total": time.perf_counter() - tic})

    def _seeds(self, clicks: Sequence[Click]) -> tuple[list[Click], np.ndarray, np.ndarray]:
        clicks, fg, bg = super()._seeds(clicks)
        if not fg.any():  # no star centre: the only star-convex object is the empty one
            bg = np.ones_like(bg)
        return clicks, fg, bg

    def _shape_constraint(self, fg: np.ndarray, bg: np.ndarray
                          ) -> tuple[np.ndarray, np.ndarray | None]:
        """Edges p -> parent(p) for every pixel that is not a star centre."""
        if not fg.any():
            return bg, None
        parent_r, parent_c = self._parents(fg)
        w = fg.shape[1]
        src = np.flatnonzero(~fg)
        return bg, np.stack([src, (parent_r * w + parent_c).ravel()[src]], axis=1)

    def _parents(self, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


class EuclideanStarConvexityBaseline(_StarConvexityBaseline):
    """Graph cut constrained to a union of Euclidean stars around the positive clicks (ESC)."""

    def _parents(self, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return euclidean_star_parents(centres)


class GeodesicStarConvexityBaseline(_StarConvexityBaseline):
    """Graph cut constrained to a union of geodesic stars around the positive clicks (GSC).

    Args:
        gamma: weight of the image gradient in the geodesic metric (0 = Euclidean paths). 0.5
            was chosen on natural/coco_mval (benchmarks/tune_baselines.py, 15 objects, 10
            clicks: NoC@85 8.07 vs 8.47 for 0.9 and 8.80 for 1.0, edges only, where flat regions
            cost nothing and their paths wander).
        max_side: see the module docstring.
    """

    def __init__(self, params: GraphCutParams | None = None, seed_radius: int | None = None,
                 max_side: int = 320, gamma: float = 0.5) -> None:
        super().__init__(params, seed_radius, max_side)
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {gamma}")
        self.gamma = gamma

    def _parents(self, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return geodesic_star_parents(centres, self.rgb, self.gamma)
