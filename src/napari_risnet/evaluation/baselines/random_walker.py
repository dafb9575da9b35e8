"""scikit-image's random walker seeded by the clicks (the seed's "random walker" row)."""
from __future__ import annotations

import time
from typing import Sequence

import numpy as np
from skimage.segmentation import random_walker
from skimage.transform import resize

from napari_risnet.evaluation.baselines._base import _ClickBaseline
from napari_risnet.clicks import Click
from napari_risnet.inference.predictor import Prediction


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
