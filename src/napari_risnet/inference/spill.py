"""A click's edit kept near the click: a click must not flood far beyond the error it points at.

Why: most of the error a worsening click adds lies in the click's own edit (the connected
change under it), and mostly the network's own answer makes it: a positive click a few pixels
inside a missed part floods the object next to it. The robot, like a user, clicks near the
middle of an error, so the click's distance ``d`` to the previous mask's boundary says how large
the error it points at is; an edit whose area is many times ``d`` squared reaches far beyond
it. Such an edit is cut back to a disc of some ``d`` around the click; the rest of the answer is
left as it is. The predictor does not apply it on windows that show a small object: there d is
a pixel or two, and a rightful edit along the boundary covers many d^2.
"""
from __future__ import annotations

import numpy as np

from napari_risnet.clicks import Click
from napari_risnet.inference.merge import click_edit


def limit_spill(new: np.ndarray, prev: np.ndarray, click: Click, max_ratio: float,
                radius: float) -> np.ndarray:
    """``new`` with the click's edit cut back to a disc of ``radius`` x d around the click when
    the edit covers more than ``max_ratio`` x d^2 pixels (outside the disc ``prev`` stays).

    Args:
        new: (H, W) bool mask predicted with the latest click.
        prev: (H, W) bool mask before that click.
        click: the latest click, in the same (row, col) frame.
        max_ratio: the edit's largest area, in units of d^2, left whole.
        radius: the disc's radius in units of d.
    Returns:
        (H, W) bool; ``new`` itself when the click has no edit or its edit is small enough.
    """
    new, prev = np.asarray(new, bool), np.asarray(prev, bool)
    edit = click_edit(new, prev, click)
    if edit is None:
        return new
    # the edit is cut only where the click is closer than this to the other side of the
    # previous boundary (area > max_ratio d^2); the click's own pixel is never on the other
    # side, so d >= 1
    reach = np.sqrt(np.count_nonzero(edit) / max_ratio) if max_ratio > 0 else np.inf
    other_side = ~prev if prev[int(round(click.row)), int(round(click.col))] else prev
    depth = _distance_within(other_side, click, reach)
    if depth is None:
        return new
    rows, cols = np.ogrid[:new.shape[0], :new.shape[1]]
    cut = edit & ((rows - click.row) ** 2 + (cols - click.col) ** 2 > (radius * depth) ** 2)
    out = new.copy()
    out[cut] = prev[cut]
    return out


def _distance_within(target: np.ndarray, click: Click, reach: float) -> float | None:
    """Distance from the click's pixel to the nearest ``target`` pixel, when one lies within
    ``reach`` (a box around the click, not the whole window: a click costs ~1 ms, not ~10)."""
    r, c = int(round(click.row)), int(round(click.col))
    half = int(np.ceil(min(reach, max(target.shape))))
    r0, c0 = max(r - half, 0), max(c - half, 0)
    found = np.argwhere(target[r0:r + half + 1, c0:c + half + 1])
    if not len(found):
        return None
    nearest = float(np.sqrt((((found + (r0, c0)) - (r, c)) ** 2).sum(axis=1).min()))
    return nearest if nearest < reach else None


__all__ = ["limit_spill"]
