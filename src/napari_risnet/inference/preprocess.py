"""Any image the user has -> what the network eats, and one transform to the crop and back.

``ImageNormalizer`` validates an image (2D grey, RGB(A), or multichannel with channels picked),
decides its intensity scaling once (uint8 / 255, else the 0.5-99.5 percentiles, from a strided
sample so a lazy 20000^2 array is never read whole) and turns any window of it into float32 RGB
in [0, 1]. ``CropTransform`` maps image, clicks and masks into the network's input window
(zoom-in) and probabilities back to image space.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from napari_risnet.clicks import Click

#: Smallest image side we accept: a network with stride 8 has nothing to work with below it.
MIN_SIDE = 8
#: Images with more pixels than this are never converted whole (read window by window).
LAZY_PIXELS = 4096 * 4096
#: Number of pixels sampled to estimate the percentiles of a large image.
PERCENTILE_SAMPLE = 2_000_000


def _shape_of(image: Any) -> tuple[int, ...]:
    shape = getattr(image, "shape", None)
    if shape is None:
        raise TypeError(f"expected an array-like image with a shape, got {type(image).__name__}")
    return tuple(int(s) for s in shape)


class ImageNormalizer:
    """Validate an image once, then cut normalised RGB windows from it.

    Args:
        image: (H, W) grey, (H, W, 3) RGB, (H, W, 4) RGBA (alpha dropped) or (H, W, C)
            multichannel; numpy, dask, zarr or memory-mapped arrays.
        channels: for multichannel images, which 1 or 3 channels to use (grey / RGB);
            ``None`` uses the image as it is when it has 1, 3 or 4 channels.
    """

    def __init__(self, image: Any, channels: Sequence[int] | None = None) -> None:
        shape = _shape_of(image)
        if len(shape) == 2:
            self.channels: list[int] | None = None
        elif len(shape) == 3:
            c = shape[2]
            if channels is not None:
                channels = [int(i) for i in channels]
                if len(channels) not in (1, 3) or not all(0 <= i < c for i in channels):
                    raise ValueError(f"channels must be 1 or 3 indices in [0, {c}), got "
                                     f"{channels}")
                self.channels = channels
            elif c in (3, 4):
                self.channels = [0, 1, 2]
            elif c == 1:
                self.channels = [0]
            else:
                raise ValueError(f"image has {c} channels in its last axis: pick 1 or 3 of them "
                                 f"(channels=[...]) or pass one channel as a 2D image")
        else:
            raise ValueError(f"expected a 2D image (H, W) or (H, W, C), got shape {shape}; for a "
                             f"stack pass one slice at a time")
        self.image = image
        self.shape: tuple[int, int] = (shape[0], shape[1])
        if min(self.shape) < MIN_SIDE:
            raise ValueError(f"image of {shape[0]}x{shape[1]} pixels is too small: each side "
                             f"must be at least {MIN_SIDE} pixels")
        self.dtype = np.dtype(getattr(image, "dtype", np.float32))
        if not (np.issubdtype(self.dtype, np.number) or self.dtype == bool):
            raise TypeError(f"image dtype {self.dtype} is not numeric")
        self.lo, self.hi = self._intensity_range()

    @property
    def is_large(self) -> bool:
        return self.shape[0] * self.shape[1] > LAZY_PIXELS

    def _sample(self) -> np.ndarray:
        h, w = self.shape
        step = max(1, int(math.sqrt(h * w / PERCENTILE_SAMPLE)))
        return np.asarray(self.image[::step, ::step])

    def _intensity_range(self) -> tuple[float, float]:
        sample = self._select(self._sample()).astype(np.float32)
        if not np.all(np.isfinite(sample)):
            raise ValueError("image contains NaN or infinite values; replace them first "
                             "(e.g. numpy.nan_to_num)")
        if sample.min() == sample.max():
            raise ValueError(f"image is constant (every pixel = {sample.min():g}): there is "
                             f"nothing to segment")
        if self.dtype == np.uint8:
            return 0.0, 255.0
        if self.dtype == bool:
            return 0.0, 1.0
        lo, hi = np.percentile(sample, [0.5, 99.5])
        if hi <= lo:
            lo, hi = float(sample.min()), float(sample.max())
        return float(lo), float(hi)

    def _select(self, arr: np.ndarray) -> np.ndarray:
        if self.channels is None:
            return arr
        return arr[..., self.channels]

    def window(self, r0: int = 0, c0: int = 0, r1: int | None = None, c1: int | None = None
               ) -> np.ndarray:
        """Normalised float32 (h, w, 3) RGB in [0, 1] of ``image[r0:r1, c0:c1]``."""
        r1 = self.shape[0] if r1 is None else r1
        c1 = self.shape[1] if c1 is None else c1
        arr = self._select(np.asarray(self.image[r0:r1, c0:c1])).astype(np.float32)
        if self.dtype != np.uint8 and not np.all(np.isfinite(arr)):
            raise ValueError("image contains NaN or infinite values; replace them first")
        arr = np.clip((arr - self.lo) / (self.hi - self.lo), 0.0, 1.0)
        if arr.ndim == 2:
            arr = arr[..., None]
        if arr.shape[-1] == 1:
            arr = np.repeat(arr, 3, axis=-1)
        return np.ascontiguousarray(arr)


@dataclass(frozen=True)
class CropTransform:
    """Crop ``[r0:r1, c0:c1]`` of the image, resized to ``out_shape`` (the network input).

    Maps image -> crop for clicks and arrays, and crop -> image for probabilities.
    """

    r0: int
    c0: int
    r1: int
    c1: int
    out_shape: tuple[int, int]

    @property
    def crop_shape(self) -> tuple[int, int]:
        return self.r1 - self.r0, self.c1 - self.c0

    @property
    def scale(self) -> tuple[float, float]:
        return self.out_shape[0] / self.crop_shape[0], self.out_shape[1] / self.crop_shape[1]

    @property
    def magnification(self) -> float:
        """How much larger the network sees the crop (> 1: a small object shown enlarged)."""
        return max(self.scale)

    @staticmethod
    def around(box: Sequence[float], image_shape: tuple[int, int], input_size: int,
               expand: float = 1.4, min_side: int = 0, multiple: int = 16) -> "CropTransform":
        """A crop around ``box`` = (r0, c0, r1, c1) grown by ``expand`` (at least ``min_side``),
        shifted to lie inside the image, resized so that its long side is ``input_size``."""
        h, w = image_shape
        cr, cc = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        sh = min(h, max((box[2] - box[0]) * expand, min_side))
        sw = min(w, max((box[3] - box[1]) * expand, min_side))
        r0 = int(round(min(max(cr - sh / 2, 0), h - sh)))
        c0 = int(round(min(max(cc - sw / 2, 0), w - sw)))
        r1, c1 = min(h, r0 + max(1, int(round(sh)))), min(w, c0 + max(1, int(round(sw))))
        return CropTransform(r0, c0, r1, c1, fit_shape((r1 - r0, c1 - c0), input_size, multiple))

    def clicks(self, clicks: Sequence[Click]) -> list[Click]:
        """Image clicks -> network-input clicks (pixel centres mapped consistently)."""
        sr, sc = self.scale
        return [Click((c.row - self.r0 + 0.5) * sr - 0.5, (c.col - self.c0 + 0.5) * sc - 0.5,
                      c.positive) for c in clicks]

    def in_crop(self, click: Click) -> Click:
        """An image click in the crop's own pixel frame (what crop-sized masks are indexed by)."""
        return Click(click.row - self.r0, click.col - self.c0, click.positive)

    def image(self, window: np.ndarray) -> np.ndarray:
        """Resize the (crop_h, crop_w, C) window (already cut) to the network input."""
        t = torch.from_numpy(np.ascontiguousarray(window)).permute(2, 0, 1)[None]
        out = F.interpolate(t, size=self.out_shape, mode="bilinear", align_corners=False,
                            antialias=self.scale[0] < 1)
        return out[0].permute(1, 2, 0).numpy()

    def mask(self, window: np.ndarray | None) -> torch.Tensor:
        """A (crop_h, crop_w) bool mask (already cut; None = empty) -> (h_out, w_out) float 0 / 1
        on the network input (bilinear, then thresholded: no blocky edges when magnified)."""
        if window is None or not window.any():
            return torch.zeros(self.out_shape)
        t = torch.from_numpy(np.ascontiguousarray(window, dtype=np.float32))[None, None]
        out = F.interpolate(t, size=self.out_shape, mode="bilinear", align_corners=False,
                            antialias=self.scale[0] < 1)
        return (out[0, 0] >= 0.5).float()

    def probabilities_back(self, probs: torch.Tensor) -> np.ndarray:
        """(h_out, w_out) network probabilities -> (crop_h, crop_w) float32 on the crop."""
        t = probs.reshape(1, 1, *probs.shape[-2:]).float()
        out = F.interpolate(t, size=self.crop_shape, mode="bilinear", align_corners=False)
        return out[0, 0].cpu().numpy()

    def contains(self, click: Click) -> bool:
        return self.r0 <= click.row < self.r1 and self.c0 <= click.col < self.c1


def fit_shape(shape: tuple[int, int], input_size: int, multiple: int = 16) -> tuple[int, int]:
    """Shape with long side ``input_size`` and the aspect of ``shape``, both multiples of
    ``multiple`` (what the backbone's strides need)."""
    h, w = shape
    s = input_size / max(h, w)
    return (max(multiple, int(round(h * s / multiple)) * multiple),
            max(multiple, int(round(w * s / multiple)) * multiple))


def network_input(rgb: np.ndarray, dist: np.ndarray, mean: Sequence[float], std: Sequence[float]
                  ) -> torch.Tensor:
    """(h, w, 3) RGB in [0, 1] + (2, h, w) distances in pixels -> (1, 5, h, w) float tensor:
    the backbone's normalisation for the image, distances / 255."""
    img = (torch.from_numpy(rgb).permute(2, 0, 1) - torch.tensor(mean)[:, None, None]) \
        / torch.tensor(std)[:, None, None]
    d = torch.from_numpy(dist) / 255.0
    return torch.cat([img, d], dim=0)[None].float()
