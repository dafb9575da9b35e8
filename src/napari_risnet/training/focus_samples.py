"""Training crops for the predictor's focus pass (:mod:`napari_risnet.inference.focus`).

At a late click on a large object the predictor takes a second look: a square around the click,
at up to the image's own resolution, whose previous-mask input is the coarse pass's answer — the
object as seen in a window several times smaller. Ordinary object-centric crops never show the
network that: a part of an object, cut by the window, with a nearly right but blurred mask.
These crops do: a window of the stored image around a point of the object's boundary, and a
previous mask made from the ground truth seen at the coarse window's resolution (down- and
up-sampled, thresholded, grown or shrunk by a pixel or two).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from napari_risnet.inference.focus import MIN_GAIN
from napari_risnet.inference.settings import PredictorSettings
from napari_risnet.inference.preprocess import CropTransform

#: the predictor's window around a box (its default ``expand``)
COARSE_EXPAND = PredictorSettings().expand


def focus_transform(gt: np.ndarray, box: np.ndarray, crop_size: int,
                    rng: np.random.Generator) -> tuple[CropTransform, float] | None:
    """A crop_size window (image resolution) around a random point of ``gt``'s boundary, and
    the scale of the coarse window the predictor would show this object in; None for objects
    small enough that the predictor would take no second look."""
    side = max(box[2] - box[0], box[3] - box[1])
    coarse_scale = min(1.0, crop_size / (COARSE_EXPAND * side))
    if coarse_scale * MIN_GAIN > 1.0:
        return None
    edge = np.argwhere(gt & ~ndimage.binary_erosion(gt))
    r, c = edge[int(rng.integers(len(edge)))] + rng.normal(0.0, 0.1 * crop_size, 2)
    half = crop_size / 2
    t = CropTransform.around((r - half, c - half, r + half, c + half), gt.shape, crop_size,
                             expand=1.0)
    return t, coarse_scale


def coarse_view(gt: np.ndarray, coarse_scale: float, rng: np.random.Generator) -> np.ndarray:
    """``gt`` as a coarse pass at ``coarse_scale`` would answer it at best: area-downsampled by
    1-3x more than that scale (the network's own stride), upsampled, thresholded, then
    dilated or eroded by up to 2 pixels."""
    factor = rng.uniform(1.0, 3.0) / coarse_scale
    h, w = gt.shape
    small = (max(1, round(h / factor)), max(1, round(w / factor)))
    x = torch.from_numpy(gt.astype(np.float32))[None, None]
    x = F.interpolate(F.interpolate(x, size=small, mode="area"), size=(h, w), mode="bilinear",
                      align_corners=False)
    prev = x[0, 0].numpy() >= 0.5
    grow = int(rng.integers(-2, 3))
    if grow > 0:
        prev = ndimage.binary_dilation(prev, iterations=grow)
    elif grow < 0:
        prev = ndimage.binary_erosion(prev, iterations=-grow)
    return prev


__all__ = ["coarse_view", "focus_transform"]
