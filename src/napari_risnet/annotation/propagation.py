"""Stack propagation: carry a committed object from slice to slice along a leading axis.

A mixin of ``AnnotationSession`` (it uses the session's prediction, painting and history), kept
apart so the rules of propagation can be read, tuned and tested on their own.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from scipy import ndimage

from napari_risnet.annotation.history import Patch
from napari_risnet.annotation.records import ObjectRecord, SliceKey, SliceRecord
from napari_risnet.clicks import Click
from napari_risnet.robot import iou  # the evaluation's IoU, also the propagation stop rule

ProgressFn = Callable[[int, int, str], None]
StopFn = Callable[[], bool]


@dataclass
class PropagationResult:
    """What ``propagate`` did: slices added, and why it stopped in each direction."""

    object_id: int
    slices: list[SliceKey] = field(default_factory=list)
    stopped: dict[int, str] = field(default_factory=dict)
    cancelled: bool = False


class PropagationMixin:
    """``propagate`` for ``AnnotationSession`` (needs its ``_predict``, ``_paint``, ``_state``,
    ``_push``, locks and ``labels``)."""

    def propagate(self, object_id: int, axis: int = 0, min_iou: float = 0.25,
                  max_area_ratio: float = 2.5, min_area: int = 4, negatives: bool = True,
                  max_slices: int | None = None, progress: ProgressFn | None = None,
                  should_stop: StopFn | None = None) -> PropagationResult:
        """Carry a committed object slice by slice up and down a leading axis (one undo step).

        On each new slice the clicks come from the neighbouring slice's mask: a positive click at
        its most interior point and (``negatives``) negative clicks around it; that mask is the
        ``prev_mask``. A direction stops where the object vanishes (area < ``min_area``), where
        the prediction is inconsistent with the neighbour (IoU < ``min_iou`` or area changed by
        more than ``max_area_ratio``), where other objects cover it, or at the stack's end.

        Args:
            object_id: a committed object.
            axis: which leading axis to follow (0 = the first, e.g. Z of (Z, Y, X)).
            progress: called as ``progress(done, total, message)``.
            should_stop: polled before each slice; True cancels (what was done is kept).
        """
        if not self.leading_shape:
            raise ValueError("propagation needs a stack: the image has no leading axis")
        if not 0 <= axis < len(self.leading_shape):
            raise ValueError(f"axis {axis} is not a leading axis of {self.leading_shape}")
        with self._seg_lock, self._lock:
            obj = self._state.objects.get(int(object_id))
            if obj is None:
                raise ValueError(f"object {object_id} is not committed; committed objects: "
                                 f"{sorted(self._state.objects)}")
            before = self._state.copy()
            result = PropagationResult(int(object_id))
            patches: list[Patch] = []
            slices = dict(obj.slices)
            n_axis = self.leading_shape[axis]
            starts = {+1: max(slices, key=lambda k: k[axis]),
                      -1: min(slices, key=lambda k: k[axis])}
            room = {d: (n_axis - 1 - s[axis]) if d > 0 else s[axis] for d, s in starts.items()}
            if max_slices is not None:
                room = {d: min(r, int(max_slices)) for d, r in room.items()}
            total, done = sum(room.values()), 0
            try:
                for direction, source in starts.items():
                    for _ in range(room[direction]):
                        if should_stop is not None and should_stop():
                            result.cancelled = True
                            break
                        target = source[:axis] + (source[axis] + direction,) + source[axis + 1:]
                        done += 1
                        if progress is not None:
                            progress(done, total, f"slice {target}")
                        if target in slices:
                            source = target
                            continue
                        reason = self._propagate_one(obj.object_id, source, target, slices,
                                                     patches, min_iou, max_area_ratio, min_area,
                                                     negatives)
                        if reason:
                            result.stopped[direction] = reason
                            break
                        result.slices.append(target)
                        source = target
                    else:
                        result.stopped.setdefault(direction, "end of the stack")
                    if result.cancelled:
                        break
            except Exception:
                for p in reversed(patches):
                    self.labels[p.index] = p.old
                raise
            if result.slices:
                self._state.objects[obj.object_id] = ObjectRecord(obj.object_id, slices)
                self._push("propagate", before, patches)
            if progress is not None:
                progress(total, total, "done")
            return result

    def _propagate_one(self, object_id: int, source: SliceKey, target: SliceKey,
                       slices: dict[SliceKey, SliceRecord], patches: list[Patch],
                       min_iou: float, max_area_ratio: float, min_area: int, negatives: bool
                       ) -> str | None:
        """Predict one slice from its neighbour; write it and return None, or say why not."""
        prev = self.labels[source] == object_id
        if not prev.any():
            return "the object vanished"
        clicks = derive_clicks(prev, negatives)
        mask = self._predict(target, clicks, prev)
        area, prev_area = int(mask.sum()), int(prev.sum())
        if area < min_area:
            return "the object vanished"
        ratio = max(area, prev_area) / max(1, min(area, prev_area))
        if ratio > max_area_ratio:
            return f"the area changed by a factor {ratio:.1f}"
        overlap = iou(mask, prev)
        if overlap < min_iou:
            return f"the overlap with the neighbouring slice fell to IoU {overlap:.2f}"
        patch, n = self._paint(target, mask, object_id, overwrite=False)
        if patch is None:
            return "other objects cover it"
        patches.append(patch)
        self._seq += 1
        slices[target] = SliceRecord(tuple(clicks), source, self._seq)
        return None



def derive_clicks(prev: np.ndarray, negatives: bool = True) -> list[Click]:
    """Clicks for the next slice from a neighbouring mask: a positive click at its most interior
    point, and negative clicks left / right / above / below it, about one object radius out
    (so a moderately larger object still lies inside them). Those off the image or on the mask
    (concave shapes) are dropped."""
    dist = ndimage.distance_transform_edt(np.pad(prev, 1))[1:-1, 1:-1]
    r, c = np.unravel_index(int(np.argmax(dist)), dist.shape)
    clicks = [Click(float(r), float(c), True)]
    if not negatives:
        return clicks
    rows, cols = np.nonzero(prev)
    h, w = prev.shape
    half_r = (rows.max() - rows.min() + 1) / 2
    half_c = (cols.max() - cols.min() + 1) / 2
    cr, cc = (rows.max() + rows.min()) / 2, (cols.max() + cols.min()) / 2
    for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        nr = cr + dr * (2.0 * half_r + 3)
        nc = cc + dc * (2.0 * half_c + 3)
        ir, ic = int(round(nr)), int(round(nc))
        if 0 <= ir < h and 0 <= ic < w and not prev[ir, ic]:
            clicks.append(Click(float(ir), float(ic), False))
    return clicks



__all__ = ["PropagationMixin", "PropagationResult", "derive_clicks"]
