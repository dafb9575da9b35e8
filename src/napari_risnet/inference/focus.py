"""A sharper second look around the latest click (FocalClick's focus crop, Chen et al. CVPR 2022).

Why: a large object fills the network window, so a 480 x 640 photo is seen at 256 pixels and
predicted at stride 4 of that; a late click on a thin boundary error is answered by an upsampled
coarse mask that cannot move the boundary by the few pixels the user asked for. The focus
window is a square around the click, a fraction of the coarse window, seen at (up to) the image's
own resolution, with the coarse answer as its previous mask. Its answer replaces the coarse one
only within a band around the coarse boundary: seen alone, a part of a large object is not what
the network was trained on, and a focus answer pasted over the whole square carves away parts
the coarse pass had right.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from napari_risnet.clicks import Click
from napari_risnet.inference.preprocess import CropTransform


#: the focus pass runs only where it sees the object at least this much sharper
MIN_GAIN = 1.5


def focus_window(click: Click, coarse: CropTransform, input_size: int, ratio: float,
                 max_magnification: float = 1.0, min_gain: float = MIN_GAIN
                 ) -> CropTransform | None:
    """A square window of side ``ratio`` x the coarse window's long side around ``click``,
    inside the coarse window, seen at most ``max_magnification`` times enlarged.

    Returns None where it would not be seen at least ``min_gain`` times sharper than the
    coarse window (a small object already seen whole and enlarged needs no second look).
    """
    long_side = max(coarse.crop_shape)
    side = max(ratio * long_side, input_size / max_magnification)
    row, col = click.row - coarse.r0, click.col - coarse.c0
    local = CropTransform.around((row - side / 2, col - side / 2, row + side / 2, col + side / 2),
                                 coarse.crop_shape, input_size, expand=1.0)
    focus = CropTransform(local.r0 + coarse.r0, local.c0 + coarse.c0,
                          local.r1 + coarse.r0, local.c1 + coarse.c0, local.out_shape)
    if focus.magnification < min_gain * coarse.magnification:
        return None
    return focus


def cut(array: np.ndarray, coarse: CropTransform, focus: CropTransform) -> np.ndarray:
    """The part of a coarse-window array that the focus window (inside it) covers."""
    return array[focus.r0 - coarse.r0:focus.r1 - coarse.r0,
                 focus.c0 - coarse.c0:focus.c1 - coarse.c0]


def boundary_band(mask: np.ndarray, width: float) -> np.ndarray:
    """Pixels at most ``width`` pixels from the other side of ``mask``'s boundary."""
    if not mask.any() or mask.all():
        return np.zeros(mask.shape, bool)
    inside = ndimage.distance_transform_edt(mask)
    outside = ndimage.distance_transform_edt(~mask)
    return np.where(mask, inside, outside) <= width


def paste(array: np.ndarray, part: np.ndarray, coarse: CropTransform, focus: CropTransform,
          where: np.ndarray | None = None) -> np.ndarray:
    """A copy of the coarse-window ``array`` with the focus window's answer ``part`` in place
    (only at ``where``, a bool mask of the focus window, when given)."""
    out = array.copy()
    region = cut(out, coarse, focus)
    if where is None:
        region[...] = part
    else:
        region[where] = part[where]
    return out


__all__ = ["MIN_GAIN", "boundary_band", "cut", "focus_window", "paste"]
