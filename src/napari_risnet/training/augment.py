"""Augmentations that make a new modality less foreign (issue 25): grey conversion, intensity
inversion, gamma, contrast, blur, noise and scale, each with its own probability and range.

They act on a training crop after the cropping, flips and colour jitter of
``datasets._augment`` (which the bundled model's recipes always had) and before the crop is
padded to the network's canvas, so the CPU trainer and the GPU run's loader workers (both call
``ObjectPool.sample``) apply them alike. Everything is off by default: a transform with
probability 0 draws nothing from the random generator, so a recipe without ``[augment]``
samples exactly the crops it sampled before this module existed.

The crop is float32 RGB in [0, 1]; scale moves the masks (object, ignore, other objects, the
previous mask) with the image by the same sampling grid, so they stay aligned.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from scipy import ndimage

Range = tuple[float, float]


@dataclass
class AugmentConfig:
    """The ``[augment]`` table of a training recipe. ``*_prob``: the share of crops a transform
    is applied to (0 = off, the default); the matching range is where its strength is drawn
    uniformly (gamma and scale log-uniformly, so a range like [0.7, 1.4] is symmetric)."""

    grey_prob: float = 0.0  # channels replaced by their mean (EM, MRI, fluorescence are grey)
    invert_prob: float = 0.0  # 1 - intensity (dark objects on a light ground and the reverse)
    gamma_prob: float = 0.0
    gamma_range: Range = (0.6, 1.6)  # intensity ** gamma
    contrast_prob: float = 0.0
    contrast_range: Range = (0.5, 1.5)  # stretch about the crop's mean intensity
    blur_prob: float = 0.0
    blur_sigma: Range = (0.5, 1.5)  # Gaussian sigma in crop pixels
    noise_prob: float = 0.0
    noise_std: Range = (0.01, 0.08)  # Gaussian noise, one value per pixel (grey stays grey)
    scale_prob: float = 0.0
    scale_range: Range = (0.7, 1.4)  # zoom of the crop: < 1 shows the object smaller

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_prob"):
                if isinstance(value, bool) or not isinstance(value, (int, float)) \
                        or not 0.0 <= value <= 1.0:
                    raise ValueError(f"augment.{f.name} must be a number in [0, 1], got "
                                     f"{value!r}")
                setattr(self, f.name, float(value))
                continue
            try:
                lo, hi = (float(v) for v in value)
            except (TypeError, ValueError):
                raise ValueError(f"augment.{f.name} must be two numbers [low, high], got "
                                 f"{value!r}") from None
            low_ok = lo >= 0 if f.name in ("noise_std", "blur_sigma") else lo > 0
            if not (low_ok and lo <= hi):
                raise ValueError(f"augment.{f.name} must be [low, high] with 0 "
                                 f"{'<=' if f.name in ('noise_std', 'blur_sigma') else '<'} "
                                 f"low <= high, got {value!r}")
            setattr(self, f.name, (lo, hi))

    @property
    def is_off(self) -> bool:
        """No transform can fire: crops are returned untouched and no random number drawn."""
        return all(getattr(self, f.name) == 0 for f in fields(self) if f.name.endswith("_prob"))


def _fires(rng: np.random.Generator, prob: float) -> bool:
    """A draw only where the transform is on, so switched-off transforms change nothing."""
    return prob > 0 and rng.random() < prob


def _uniform(rng: np.random.Generator, r: Range, log: bool = False) -> float:
    if log:
        return float(np.exp(rng.uniform(np.log(r[0]), np.log(r[1]))))
    return float(rng.uniform(r[0], r[1]))


def to_grey(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) with every channel the mean of the three."""
    return np.repeat(rgb.mean(-1, keepdims=True), rgb.shape[-1], axis=-1)


def invert(rgb: np.ndarray) -> np.ndarray:
    return 1.0 - rgb


def adjust_gamma(rgb: np.ndarray, gamma: float) -> np.ndarray:
    return np.clip(rgb, 0.0, 1.0) ** gamma


def adjust_contrast(rgb: np.ndarray, factor: float) -> np.ndarray:
    """Stretch (> 1) or flatten (< 1) about the crop's mean intensity."""
    mean = rgb.mean()
    return (rgb - mean) * factor + mean


def blur(rgb: np.ndarray, sigma: float) -> np.ndarray:
    return ndimage.gaussian_filter(rgb, sigma=(sigma, sigma, 0), mode="reflect")


def add_noise(rgb: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise, the same value in every channel of a pixel (a grey image stays grey)."""
    return rgb + rng.normal(0.0, std, rgb.shape[:2]).astype(np.float32)[..., None]


def _grid(n_in: int, n_out: int) -> np.ndarray:
    """Input coordinates (pixel centres) of ``n_out`` output pixels spanning ``n_in`` inputs."""
    return (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5


def _bilinear_rows(arr: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """``arr`` resampled along axis 0 at ``coords`` (linear, edges clamped)."""
    c = np.clip(coords, 0, arr.shape[0] - 1)
    i0 = np.floor(c).astype(int)
    i1 = np.minimum(i0 + 1, arr.shape[0] - 1)
    w = (c - i0).astype(np.float32).reshape((-1,) + (1,) * (arr.ndim - 1))
    return arr[i0] * (1 - w) + arr[i1] * w


def _nearest(n: int, coords: np.ndarray) -> np.ndarray:
    return np.clip(np.floor(coords + 0.5).astype(int), 0, n - 1)


def rescale(rgb: np.ndarray, masks: tuple[np.ndarray, ...], factor: float, max_side: int,
            rng: np.random.Generator) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """Zoom a crop and its masks by ``factor`` on one sampling grid (image bilinear, masks
    nearest), each side then cut to at most ``max_side`` by a window that keeps the centre of
    the first mask (the object) in view; each side at least 16 pixels.

    Args:
        rgb: (H, W, C) float32. masks: (H, W) arrays (object first).
    Returns:
        (h, w, C) image and the masks at (h, w), h, w <= max_side.
    """
    h, w = rgb.shape[:2]
    out_h, out_w = max(16, round(h * factor)), max(16, round(w * factor))
    rows, cols = _grid(h, out_h), _grid(w, out_w)
    obj = masks[0] if masks else np.zeros((h, w), bool)
    centre = np.argwhere(obj).mean(0) if obj.any() else np.array([h / 2, w / 2])
    windows = []
    for coords, size, c in ((rows, out_h, centre[0]), (cols, out_w, centre[1])):
        if size <= max_side:
            windows.append(coords)
            continue
        at = int(np.argmin(np.abs(coords - c)))  # the object's centre in output pixels
        lo, hi = max(0, at - max_side + 1), min(at, size - max_side)
        start = int(rng.integers(lo, hi + 1))
        windows.append(coords[start:start + max_side])
    rows, cols = windows
    out = _bilinear_rows(rgb, rows)
    out = _bilinear_rows(out.transpose(1, 0, 2), cols).transpose(1, 0, 2)
    ri, ci = _nearest(h, rows), _nearest(w, cols)
    return (np.ascontiguousarray(out, dtype=np.float32),
            tuple(np.ascontiguousarray(m[np.ix_(ri, ci)]) for m in masks))


def augment_crop(rng: np.random.Generator, config: AugmentConfig, rgb: np.ndarray,
                 masks: tuple[np.ndarray, ...], max_side: int
                 ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """Scale, grey, invert, gamma, contrast, blur, noise — each with its probability — on a
    (H, W, 3) float32 crop in [0, 1] and its (H, W) masks. Returns the crop (clipped to [0, 1])
    and the masks; with every probability 0 the very same arrays, and ``rng`` untouched."""
    if config.is_off:
        return rgb, masks
    if _fires(rng, config.scale_prob):
        rgb, masks = rescale(rgb, masks, _uniform(rng, config.scale_range, log=True),
                             max_side, rng)
    if _fires(rng, config.grey_prob):
        rgb = to_grey(rgb)
    if _fires(rng, config.invert_prob):
        rgb = invert(rgb)
    if _fires(rng, config.gamma_prob):
        rgb = adjust_gamma(rgb, _uniform(rng, config.gamma_range, log=True))
    if _fires(rng, config.contrast_prob):
        rgb = adjust_contrast(rgb, _uniform(rng, config.contrast_range))
    if _fires(rng, config.blur_prob):
        rgb = blur(rgb, _uniform(rng, config.blur_sigma))
    if _fires(rng, config.noise_prob):
        rgb = add_noise(rgb, _uniform(rng, config.noise_std), rng)
    return np.ascontiguousarray(np.clip(rgb, 0.0, 1.0), dtype=np.float32), masks


__all__ = ["AugmentConfig", "augment_crop", "rescale", "to_grey", "invert", "adjust_gamma",
           "adjust_contrast", "blur", "add_noise"]
