"""Shared image handling and input checks of the classic click-only baselines."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from scipy import ndimage

from napari_risnet.clicks import Click, validate_clicks
from napari_risnet.inference.graphcut import click_seeds
from napari_risnet.inference.preprocess import ImageNormalizer

BINS = 16


def histogram_costs(rgb: np.ndarray, fg: np.ndarray, bg: np.ndarray, bins: int = BINS,
                    smooth: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """-log colour likelihoods of every pixel under the foreground and background seeds.

    Args:
        rgb: (H, W, 3) float in [0, 1].
        fg, bg: (H, W) bool seed pixels.
        bins: histogram bins per channel.
        smooth: Gaussian sigma in bins applied to the joint histogram (a binned kernel density
            estimate, Bai & Sapiro's choice); 0 = plain histogram plus one (graph cut).
    Returns:
        (cost_fg, cost_bg): two (H, W) float32 arrays.
    """
    q = np.minimum((rgb * bins).astype(np.int32), bins - 1)
    idx = (q[..., 0] * bins + q[..., 1]) * bins + q[..., 2]
    costs = []
    for seed in (fg, bg):
        hist = np.bincount(idx[seed], minlength=bins ** 3).astype(np.float64)
        if smooth > 0:
            hist = ndimage.gaussian_filter(hist.reshape((bins,) * 3), smooth,
                                           mode="constant").ravel()
            hist += 1e-3 * hist.sum() / hist.size + 1e-12
        else:
            hist += 1.0
        costs.append(-np.log(hist / hist.sum())[idx])
    return costs[0].astype(np.float32), costs[1].astype(np.float32)


class _ClickBaseline:
    """Shared image handling of the baselines (they work on the whole, normalised image).

    Clicks become seed discs of ``seed_radius`` pixels, and before the first negative click a
    ``border`` band of the image is background. ``None`` scales both with the image (1 % of its
    long side, at least 1 pixel): 5 px on a 480x640 photo, 1 px on a 50 px MRI slice, where a
    fixed 5 px disc would swallow the object.

    ``calibrated = False``: their probabilities are colour / diffusion / geodesic posteriors, not
    a model's confidence, so stack propagation does not read them as such.
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
