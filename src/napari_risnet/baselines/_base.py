"""Shared image handling and input checks of the classic click-only baselines."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from napari_risnet.clicks import Click, validate_clicks
from napari_risnet.inference.graphcut import click_seeds
from napari_risnet.inference.preprocess import ImageNormalizer


class _ClickBaseline:
    """Shared image handling of the baselines (they work on the whole, normalised image).

    Clicks become seed discs of ``seed_radius`` pixels, and before the first negative click a
    ``border`` band of the image is background. ``None`` scales both with the image (1 % of its
    long side, at least 1 pixel): 5 px on a 480x640 photo, 1 px on a 50 px MRI slice, where a
    fixed 5 px disc would swallow the object.
    """

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
