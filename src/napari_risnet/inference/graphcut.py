"""Boykov-Jolly graph cut (PyMaxflow) on the fused probabilities.

Energy: unary ``-log p`` / ``-log(1 - p)`` times ``unary_weight``; contrast-sensitive Potts
pairwise term ``pairwise_weight * exp(-||I_p - I_q||^2 / (2 <||I_p - I_q||^2>))`` on the
4-neighbourhood; hard constraints in a small disc at every click. Only the uncertain band
(probabilities between ``band`` and ``1 - band``, dilated by ``band_margin``) goes into the graph:
the rest keeps its thresholded label, so the cost follows the object's boundary, not the image.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import maxflow
import numpy as np
from scipy import ndimage

from napari_risnet.clicks import Click

INF = 1e9


@dataclass(frozen=True)
class GraphCutParams:
    """Parameters of the graph cut (defaults picked on training data, never on test sets)."""

    unary_weight: float = 1.0
    pairwise_weight: float = 0.5
    click_radius: int = 2
    band: float = 0.02
    band_margin: int = 3
    eps: float = 1e-4


def contrast_weights(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """exp(-beta ||I_p - I_q||^2) for right and down neighbours, beta = 1 / (2 <d^2>).

    image: (H, W) or (H, W, C) float. Returns two (H, W) arrays (last col / row = 0)."""
    img = image.astype(np.float32)
    if img.ndim == 2:
        img = img[..., None]
    dr = np.zeros(img.shape[:2], np.float32)
    dd = np.zeros(img.shape[:2], np.float32)
    dr[:, :-1] = ((img[:, 1:] - img[:, :-1]) ** 2).sum(-1)
    dd[:-1] = ((img[1:] - img[:-1]) ** 2).sum(-1)
    n = dr[:, :-1].size + dd[:-1].size
    mean = (dr.sum() + dd.sum()) / max(n, 1)
    beta = 1.0 / (2 * mean) if mean > 0 else 0.0
    wr, wd = np.exp(-beta * dr), np.exp(-beta * dd)
    wr[:, -1] = 0
    wd[-1] = 0
    return wr, wd


def click_seeds(shape: tuple[int, int], clicks: Sequence[Click], radius: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """Boolean discs of ``radius`` around positive and negative clicks (later clicks win)."""
    fg = np.zeros(shape, bool)
    bg = np.zeros(shape, bool)
    h, w = shape
    for c in clicks:
        r, q = int(round(c.row)), int(round(c.col))
        r0, r1, c0, c1 = max(0, r - radius), min(h, r + radius + 1), max(0, q - radius), \
            min(w, q + radius + 1)
        if r0 >= r1 or c0 >= c1:
            continue
        yy, xx = np.ogrid[r0:r1, c0:c1]
        disc = (yy - r) ** 2 + (xx - q) ** 2 <= radius ** 2
        (fg if c.positive else bg)[r0:r1, c0:c1] |= disc
        (bg if c.positive else fg)[r0:r1, c0:c1] &= ~disc
    return fg, bg


def graph_cut(probs: np.ndarray, image: np.ndarray, clicks: Sequence[Click] = (),
              params: GraphCutParams | None = None,
              unary_costs: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Refine probabilities into a mask.

    Args:
        probs: (H, W) float foreground probabilities in [0, 1].
        image: (H, W) or (H, W, C) image (any scale: the contrast term is normalised).
        clicks: clicks in the same pixel grid; hard constraints.
        params: GraphCutParams.
        unary_costs: optional (cost_fg, cost_bg) replacing the ones derived from ``probs``
            (the click-only baseline brings its colour-model costs).
    Returns:
        (H, W) bool mask.
    """
    p = params or GraphCutParams()
    if probs.ndim != 2 or image.shape[:2] != probs.shape:
        raise ValueError(f"probabilities {probs.shape} and image {image.shape} do not match")
    fg_seed, bg_seed = click_seeds(probs.shape, clicks, p.click_radius)
    mask = probs >= 0.5
    if unary_costs is None:
        uncertain = (probs > p.band) & (probs < 1 - p.band)
    else:
        uncertain = np.ones(probs.shape, bool)
    uncertain |= fg_seed | bg_seed
    if not uncertain.any():
        return mask
    if p.band_margin > 0 and unary_costs is None:
        uncertain = ndimage.binary_dilation(uncertain, iterations=p.band_margin)
    rows, cols = np.nonzero(uncertain)
    r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    sub = (slice(r0, r1), slice(c0, c1))
    pr = np.clip(probs[sub], p.eps, 1 - p.eps)
    if unary_costs is None:
        cost_fg, cost_bg = -np.log(pr), -np.log(1 - pr)  # cost of labelling fg / bg
    else:
        cost_fg, cost_bg = unary_costs[0][sub], unary_costs[1][sub]
    cost_fg = p.unary_weight * cost_fg
    cost_bg = p.unary_weight * cost_bg
    # Outside the band the label is fixed: infinite cost for the other label.
    fixed = ~uncertain[sub]
    sure_fg = (fixed & mask[sub]) | fg_seed[sub]
    sure_bg = (fixed & ~mask[sub]) | bg_seed[sub]
    cost_bg = np.where(sure_fg, INF, cost_bg)
    cost_fg = np.where(sure_bg, INF, cost_fg)
    cost_fg = np.where(sure_fg, 0, cost_fg)
    cost_bg = np.where(sure_bg, 0, cost_bg)
    wr, wd = contrast_weights(image[sub])
    g = maxflow.Graph[float]()
    nodes = g.add_grid_nodes(pr.shape)
    right = np.array([[0, 0, 0], [0, 0, 1], [0, 0, 0]])
    down = np.array([[0, 0, 0], [0, 0, 0], [0, 1, 0]])
    g.add_grid_edges(nodes, weights=p.pairwise_weight * wr, structure=right, symmetric=True)
    g.add_grid_edges(nodes, weights=p.pairwise_weight * wd, structure=down, symmetric=True)
    # source = foreground: the edge to the source is cut when the pixel is background.
    g.add_grid_tedges(nodes, cost_bg, cost_fg)
    g.maxflow()
    out = mask.copy()
    out[sub] = ~g.get_grid_segments(nodes)
    return out
