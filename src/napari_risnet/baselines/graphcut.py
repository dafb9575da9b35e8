"""Boykov-Jolly interactive graph cut from the clicks alone (the seed's "graph cut" row)."""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Sequence

import numpy as np

from napari_risnet.baselines._base import _ClickBaseline
from napari_risnet.clicks import Click
from napari_risnet.inference.graphcut import GraphCutParams, graph_cut
from napari_risnet.inference.predictor import Prediction

BINS = 16


class GraphCutBaseline(_ClickBaseline):
    """Interactive graph cut from the clicks alone (the seed's "graph cut" row)."""

    def __init__(self, params: GraphCutParams | None = None, seed_radius: int | None = None
                 ) -> None:
        super().__init__(seed_radius)
        self.params = params or GraphCutParams(unary_weight=1.0, pairwise_weight=5.0)

    def _histogram_costs(self, fg: np.ndarray, bg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        q = np.minimum((self.rgb * BINS).astype(np.int32), BINS - 1)
        idx = (q[..., 0] * BINS + q[..., 1]) * BINS + q[..., 2]
        costs = []
        for seed in (fg, bg):
            hist = np.bincount(idx[seed], minlength=BINS ** 3).astype(np.float64) + 1.0
            costs.append(-np.log(hist / hist.sum())[idx])
        return costs[0].astype(np.float32), costs[1].astype(np.float32)

    def predict(self, clicks: Sequence[Click], prev_mask: np.ndarray | None = None
                ) -> Prediction:
        tic = time.perf_counter()
        clicks, fg, bg = self._seeds(clicks)
        cost_fg, cost_bg = self._histogram_costs(fg, bg)
        probs = 1.0 / (1.0 + np.exp(cost_fg - cost_bg))
        params = replace(self.params, click_radius=self.radius)
        mask = graph_cut(probs.astype(np.float32), self.rgb, clicks, params,
                         unary_costs=(np.where(bg, 1e9, cost_fg), np.where(fg, 1e9, cost_bg)))
        return Prediction(probs.astype(np.float32), mask,
                          {"total": time.perf_counter() - tic})
