"""Progressive merge (FocalClick, Chen et al. CVPR 2022): a later click changes only the part of
the mask it is about.

Why: the network re-predicts the whole object at every click, so a click that fixes one part
can undo another that earlier clicks had settled (the model card's diagnosis measures how
often). Keeping the previous mask everywhere except the connected region of change that holds
the new click makes each click a local edit, as a user expects.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from napari_risnet.clicks import Click

_EIGHT = np.ones((3, 3), bool)


def progressive_merge(new: np.ndarray, prev: np.ndarray, click: Click,
                      min_elsewhere: float = 0.0) -> np.ndarray:
    """The previous mask with only the changed region under ``click`` taken from ``new``.

    Args:
        new: (H, W) bool mask predicted with the latest click.
        prev: (H, W) bool mask before that click.
        click: the latest click, in the same (row, col) frame.
        min_elsewhere: merge only when the changes away from the click's region cover more
            than this fraction of ``prev``'s area (0: always): smaller ones are refinements
            to keep, larger ones a click that undid what earlier clicks had settled.
    Returns:
        (H, W) bool. ``new`` itself when the click lies outside, when the prediction did not
        change at the click (then no region can be attributed to it), or when the changes
        elsewhere stay within ``min_elsewhere``.
    """
    new, prev = np.asarray(new, bool), np.asarray(prev, bool)
    region = click_edit(new, prev, click)
    if region is None:
        return new
    changed = new ^ prev
    if min_elsewhere > 0 and np.count_nonzero(changed & ~region) <= min_elsewhere * prev.sum():
        return new
    removal = prev[region].any()  # the edit lies inside prev (removed) or outside (added)
    return (prev & ~region) if removal else (prev | region)


def click_edit(new: np.ndarray, prev: np.ndarray, click: Click) -> np.ndarray | None:
    """The click's own edit: the connected additions (or removals) of ``new`` against ``prev``
    under ``click``; None when the click lies outside or the answer did not change there.

    A change of the other sign next to it (a part lost beside a part gained) is not what the
    click asked for, so it is not part of the edit.
    """
    new, prev = np.asarray(new, bool), np.asarray(prev, bool)
    if new.shape != prev.shape:
        raise ValueError(f"masks differ in shape: {new.shape} vs {prev.shape}")
    r, c = int(round(click.row)), int(round(click.col))
    if not (0 <= r < new.shape[0] and 0 <= c < new.shape[1]):
        return None
    changed = new ^ prev
    if not changed[r, c]:
        return None
    same = changed & (new if new[r, c] else prev)
    labels, _ = ndimage.label(same, structure=_EIGHT)
    return labels == labels[r, c]
