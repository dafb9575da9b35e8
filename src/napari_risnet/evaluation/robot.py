"""The ONE robot user: evaluation and training both place their clicks with it.

Protocol (../shared/data/README.md): the first click is positive, at the point of the object
farthest from its boundary; each next click goes at the point farthest from the boundary of the
larger error region (false negatives -> positive click, false positives -> negative click).
Ignored pixels (GrabCut's 128 band) are never clicked and never counted.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from napari_risnet.clicks import Click
from napari_risnet.metrics import iou


def _interior_distance(region: np.ndarray) -> np.ndarray:
    """Distance to the region's boundary, the image border counting as boundary.

    Computed on the region's bounding box padded by one pixel: every pixel of the box has its
    nearest non-region pixel in the box or on that one-pixel ring, so the distances are the
    whole image's, at the cost of the box (an error region is mostly a sliver of the image).
    """
    out = np.zeros(region.shape)
    rows = np.flatnonzero(region.any(axis=1))
    if not len(rows):
        return out
    cols = np.flatnonzero(region.any(axis=0))
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    padded = np.pad(region[box], 1, constant_values=False)
    out[box] = ndimage.distance_transform_edt(padded)[1:-1, 1:-1]
    return out


def _argmax(dist: np.ndarray) -> tuple[int, int]:
    """First (row-major) location of the maximum: deterministic."""
    idx = int(np.argmax(dist))
    return divmod(idx, dist.shape[1])


class RobotUser:
    """Places the next click on the largest error, as a deterministic annotator would.

    Args:
        gt: (H, W) bool ground-truth object.
        ignore: optional (H, W) bool pixels excluded from clicks and scoring.
    """

    def __init__(self, gt: np.ndarray, ignore: np.ndarray | None = None) -> None:
        gt = np.asarray(gt).astype(bool)
        if gt.ndim != 2:
            raise ValueError(f"ground truth must be 2D, got shape {gt.shape}")
        if ignore is None:
            ignore = np.zeros_like(gt)
        ignore = np.asarray(ignore).astype(bool)
        if ignore.shape != gt.shape:
            raise ValueError(f"ignore mask {ignore.shape} does not match ground truth {gt.shape}")
        if not (gt & ~ignore).any():
            raise ValueError("the ground-truth object is empty")
        self.gt = gt
        self.ignore = ignore
        self.clicks: list[Click] = []

    def first_click(self) -> Click:
        """Positive click at the object's most interior pixel."""
        dist = _interior_distance(self.gt & ~self.ignore)
        r, c = _argmax(dist)
        click = Click(r, c, True)
        self.clicks = [click]
        return click

    def next_click(self, pred: np.ndarray) -> Click | None:
        """Click on the larger error region of ``pred`` (None when there is no error).

        The region whose interior distance is larger wins (ties go to false negatives).
        """
        if not self.clicks:
            return self.first_click()
        pred = np.asarray(pred).astype(bool)
        if pred.shape != self.gt.shape:
            raise ValueError(f"prediction {pred.shape} does not match ground truth "
                             f"{self.gt.shape}")
        valid = ~self.ignore
        fn = self.gt & ~pred & valid
        fp = pred & ~self.gt & valid
        if not fn.any() and not fp.any():
            return None
        d_fn = _interior_distance(fn)
        d_fp = _interior_distance(fp)
        positive = d_fn.max() >= d_fp.max()
        r, c = _argmax(d_fn if positive else d_fp)
        click = Click(r, c, bool(positive))
        self.clicks.append(click)
        return click


def robot_next_click(gt: np.ndarray, ignore: np.ndarray | None, clicks: list[Click],
                     pred: np.ndarray) -> Click | None:
    """The next click of a RobotUser that has placed ``clicks`` and now sees ``pred`` (a plain
    function of its inputs, so training can run many in a process pool)."""
    robot = RobotUser(gt, ignore)
    robot.clicks = list(clicks)
    return robot.next_click(pred)


__all__ = ["RobotUser", "iou", "robot_next_click"]
