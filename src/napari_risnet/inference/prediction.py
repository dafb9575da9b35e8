"""What one click returns (its own module so the helpers that read a previous answer need not
import the predictor)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Prediction:
    """Result of one click: float32 probabilities in [0, 1] and the bool mask, both (H, W) over
    the whole image (zero outside the window that was predicted), plus per-stage seconds.

    For a lazy, huge image they cover only ``window`` = (r0, c0, r1, c1) of the image.
    """

    probabilities: np.ndarray
    mask: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)
    window: tuple[int, int, int, int] | None = None


__all__ = ["Prediction"]
