"""Classic interactive methods behind the Predictor's interface (set_image / predict).

- ``GraphCutBaseline``: Boykov-Jolly from the clicks alone: colour histograms of discs around
  the clicks (the image border stands in for the background before the first negative click),
  contrast-sensitive Potts, hard constraints at the clicks.
- ``RandomWalkerBaseline``: scikit-image's random walker with the click discs as seeds.
"""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, Sequence

import numpy as np
from skimage.segmentation import random_walker
from skimage.transform import resize

from napari_risnet.clicks import Click, validate_clicks
from napari_risnet.inference.graphcut import GraphCutParams, click_seeds, graph_cut
from napari_risnet.inference.predictor import Prediction
from napari_risnet.inference.preprocess import ImageNormalizer

BINS = 16


class _ClickBaseline:
    """Shared image handling of the baselines (they work on the whole, normalised image).

    Clicks become seed discs of ``seed_radius`` pixels, and before the first negative click a
    ``border`` band of the image is background. ``None`` scales both with the image (1 % of its
    long side, at least 1 pixel): 5 px on a 480x640 photo, 1 px on a 50 px MRI slice, where a
    fixed 5 px disc would swallow the object.

    ``calibrated = False``: their probabilities are colour / diffusion posteriors, not a
    model's confidence, so stack propagation does not read them as such.
    """

    calibrated = False

    def __init__(self, seed_radius: int | None = None, border: int | None = None) -> None:
        self.seed_radius = seed_radius
        self.border = border
        self.rgb: np.ndarray | None = None
        self.radius = self.band = 1

    def set_image(self, image: Any, channels: Sequence[int] | None = None) -> None:
        self.rgb = ImageNormalizer(image, channels).window()
        auto = max(1, round(max(self.rgb.shape[:2]) / 100))
        self.radius = auto if self.seed_radius is None else self.seed_radius
        self.band = auto if self.border is None else self.border

    def _seeds(self, clicks: Sequence[Click]) -> tuple[list[Click], np.ndarray, np.ndarray]:
        if self.rgb is None:
            raise RuntimeError("call set_image(image) before predict()")
        clicks = validate_clicks(clicks, self.rgb.shape[:2])
        fg, bg = click_seeds(self.rgb.shape[:2], clicks, self.radius)
        if not bg.any():  # no negative click yet: the image border is background
            b = self.band
            bg[:b], bg[-b:], bg[:, :b], bg[:, -b:] = True, True, True, True
            bg &= ~fg
        return clicks, fg, bg


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


class RandomWalkerBaseline(_ClickBaseline):
    """scikit-image's random walker (Grady 2006) seeded by the click discs.

    The linear system is solved on the image downscaled to ``max_side`` (its cost grows
    super-linearly: 5-25 s per click at 640x480 on our CPU), the probabilities upsampled back.
    """

    def __init__(self, beta: float = 130.0, seed_radius: int | None = None,
                 max_side: int = 320) -> None:
        super().__init__(seed_radius)
        self.beta = beta
        self.max_side = max_side

    def predict(self, clicks: Sequence[Click], prev_mask: np.ndarray | None = None
                ) -> Prediction:
        tic = time.perf_counter()
        clicks, fg, bg = self._seeds(clicks)
        h, w = fg.shape
        scale = min(1.0, self.max_side / max(h, w))
        small = (max(2, round(h * scale)), max(2, round(w * scale)))
        rgb = resize(self.rgb, small + (3,), order=1, anti_aliasing=scale < 1)
        labels = np.zeros(small, np.int32)
        labels[resize(bg, small, order=0) > 0] = 2
        labels[resize(fg, small, order=0) > 0] = 1
        for c in clicks:  # a click always survives the downscaling
            labels[min(small[0] - 1, int(c.row * scale)),
                   min(small[1] - 1, int(c.col * scale))] = 1 if c.positive else 2
        probs = random_walker(rgb, labels, beta=self.beta, mode="bf", channel_axis=-1,
                              return_full_prob=True)[0]
        probs = resize(probs, (h, w), order=1).astype(np.float32)
        return Prediction(probs, probs >= 0.5, {"total": time.perf_counter() - tic})


BASELINES = {"graphcut": GraphCutBaseline, "random_walker": RandomWalkerBaseline}
