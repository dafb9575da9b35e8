"""Geodesic matting (Bai & Sapiro, IJCV 2009): the seed's "geodesic matting" row.

Colour models of the foreground and background seed discs give the foreground likelihood
``P_F = p_F / (p_F + p_B)``; the geodesic distance from each seed set integrates ``|grad P_F|``
along paths (scikit-image's ``MCP_Geometric``), so crossing a change of likelihood is expensive.
A pixel is foreground when it is geodesically closer to the foreground seeds.

Written here, because no library has it: the binned colour density (a joint RGB histogram
smoothed by a Gaussian, the kernel density estimate of the paper on a grid) and the comparison.
The paper's weight is the derivative of ``P_F`` along the path; ``MCP_Geometric`` takes one
cost per pixel, so the gradient magnitude stands in for it (an upper bound).
"""
from __future__ import annotations

import time
from typing import Sequence

import numpy as np
from skimage.graph import MCP_Geometric

from napari_risnet.evaluation.baselines._base import _ClickBaseline, histogram_costs
from napari_risnet.clicks import Click
from napari_risnet.inference.predictor import Prediction


def geodesic_distance(cost: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """Minimal path integral of ``cost`` (8-connected) from any ``seeds`` pixel; inf if none."""
    if not seeds.any():
        return np.full(cost.shape, np.inf)
    distance, _ = MCP_Geometric(cost, fully_connected=True).find_costs(np.argwhere(seeds))
    return distance


class GeodesicMattingBaseline(_ClickBaseline):
    """Bai & Sapiro's geodesic segmentation from the click discs.

    Args:
        bins: colour histogram bins per channel.
        kde_sigma: Gaussian smoothing of the histogram, in bins (the density estimate's kernel).
        eps: cost added to every pixel, so flat likelihood goes to the nearer seed instead of a
            tie. Chosen on natural/coco_mval (benchmarks/tune_baselines.py).
        seed_radius: see ``_ClickBaseline``.
    """

    def __init__(self, bins: int = 32, kde_sigma: float = 1.0, eps: float = 1e-3,
                 seed_radius: int | None = None) -> None:
        super().__init__(seed_radius)
        if bins < 2 or kde_sigma < 0 or eps <= 0:
            raise ValueError(f"need bins >= 2, kde_sigma >= 0 and eps > 0, got {bins}, "
                             f"{kde_sigma}, {eps}")
        self.bins, self.kde_sigma, self.eps = bins, kde_sigma, eps

    def predict(self, clicks: Sequence[Click], prev_mask: np.ndarray | None = None
                ) -> Prediction:
        tic = time.perf_counter()
        clicks, fg, bg = self._seeds(clicks)
        cost_fg, cost_bg = histogram_costs(self.rgb, fg, bg, self.bins, self.kde_sigma)
        likelihood = 1.0 / (1.0 + np.exp(np.clip(cost_fg - cost_bg, -50, 50)))
        grad_r, grad_c = np.gradient(likelihood)
        cost = np.hypot(grad_r, grad_c) + self.eps
        d_fg, d_bg = geodesic_distance(cost, fg), geodesic_distance(cost, bg)
        with np.errstate(invalid="ignore", divide="ignore"):
            probs = np.where(np.isinf(d_bg), 1.0, d_bg / (d_fg + d_bg))
        probs = np.nan_to_num(probs, nan=0.5).astype(np.float32)
        mask = (d_fg < d_bg) | fg
        mask &= ~bg
        return Prediction(probs, mask, {"total": time.perf_counter() - tic})
