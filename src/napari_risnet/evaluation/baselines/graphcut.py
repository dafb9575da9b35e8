"""Boykov-Jolly interactive graph cut from the clicks alone (the seed's "graph cut" row)."""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Sequence

import numpy as np

from napari_risnet.evaluation.baselines._base import _ClickBaseline, histogram_costs
from napari_risnet.clicks import Click
from napari_risnet.inference.graphcut import GraphCutParams, graph_cut
from napari_risnet.inference.predictor import Prediction


class GraphCutBaseline(_ClickBaseline):
    """Interactive graph cut from the clicks alone (the seed's "graph cut" row)."""

    def __init__(self, params: GraphCutParams | None = None, seed_radius: int | None = None
                 ) -> None:
        super().__init__(seed_radius)
        self.params = params or GraphCutParams(unary_weight=1.0, pairwise_weight=5.0)

    def predict(self, clicks: Sequence[Click], prev_mask: np.ndarray | None = None
                ) -> Prediction:
        tic = time.perf_counter()
        clicks, fg, bg = self._seeds(clicks)
        cost_fg, cost_bg = histogram_costs(self.rgb, fg, bg)
        probs = (1.0 / (1.0 + np.exp(cost_fg - cost_bg))).astype(np.float32)
        params = replace(self.params, click_radius=self.radius)
        bg, hard_edges = self._shape_constraint(fg, bg)
        mask = graph_cut(probs, self.rgb, clicks, params,
                         unary_costs=(np.where(bg, 1e9, cost_fg), np.where(fg, 1e9, cost_bg)),
                         hard_edges=hard_edges)
        return Prediction(probs, mask, {"total": time.perf_counter() - tic})

    def _shape_constraint(self, fg: np.ndarray, bg: np.ndarray
                          ) -> tuple[np.ndarray, np.ndarray | None]:
        """A subclass's shape prior: pixels forced to background, and "p foreground implies q
        foreground" edges (flat index pairs). None here."""
        return bg, None
