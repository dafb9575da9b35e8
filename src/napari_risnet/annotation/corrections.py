"""Corrections of committed objects: a click on one slice, erasing a slice, picking an object.

A mixin of ``AnnotationSession``, kept apart so the session file holds the click -> commit path
and this one what happens to an object after it is committed.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage

from napari_risnet.annotation.history import Patch
from napari_risnet.annotation.records import ObjectRecord, SliceKey, SliceRecord
from napari_risnet.clicks import Click

#: A click corrects the edited object only within this margin around its bounding box: at
#: least ``NEAR_MIN_PX`` pixels, or ``NEAR_FRACTION`` of the box's longer side when larger.
NEAR_MIN_PX = 12
NEAR_FRACTION = 0.5


class CorrectionsMixin:
    """``correct``, ``erase_slice`` and ``object_at`` for ``AnnotationSession`` (needs its
    ``_check_slice``, ``_check_click``, ``_predict``, ``_replay``, ``_replace``,
    ``_drop_chain``, ``_state``, ``_seq``, ``_push``, locks, ``labels``, ``leading_shape`` and
    ``spatial_shape``).
    """

    def correct(self, object_id: int, click: Click, slice_key: Sequence[int] = ()
                ) -> np.ndarray:
        """Add a click to a committed object on one slice and redraw it there (one undo step).

        On a slice the object was propagated to, the click joins the clicks propagation derived
        there (predicted with the neighbour's mask as ``prev_mask``); on a clicked slice it is
        the next click of that slice; on a slice without the object it starts it (positive
        first). The slice becomes *fixed*: propagation keeps it. Call ``propagate(object_id,
        from_slice=slice_key)`` afterwards to carry the correction to the neighbours.

        Returns:
            the object's new (H, W) mask on that slice.
        """
        key = self._check_slice(slice_key)
        click = self._check_click(click)
        with self._seg_lock:  # the state lock is not held while predicting: a UI reading the
            with self._lock:  # state on its main thread never waits for the model
                obj = self._object(object_id)
                rec = obj.slices.get(key)
            if rec is None or rec.erased:
                if not click.positive:
                    raise ValueError(f"object {obj.object_id} is not on slice {key}: the first "
                                     f"click there must be positive")
                rec = SliceRecord((), None, 0)
            clicks = rec.clicks + (click,)
            if rec.source is not None:
                # no prev_mask: the result then depends on this slice's clicks alone, so
                # ``recompute`` gives it back even after its neighbour was propagated again
                mask = self._predict(key, clicks, None)
            else:
                mask = self._replay_outside_lock(key, clicks)
            with self._lock:
                if self._state.objects.get(obj.object_id) is not obj:
                    raise ValueError(f"object {obj.object_id} changed while its correction was "
                                     f"predicted (an undo?): click again")
                before = self._state.copy()
                patch, _ = self._replace(key, mask, obj.object_id)
                self._seq += 1
                slices = dict(obj.slices)
                slices[key] = SliceRecord(clicks, rec.source, self._seq, rec.n_derived)
                self._state.objects[obj.object_id] = ObjectRecord(obj.object_id, slices)
                self._push("correct", before, [] if patch is None else [patch], key=key)
                return self.labels[key] == obj.object_id

    def _replay_outside_lock(self, key: SliceKey, clicks: tuple[Click, ...]) -> np.ndarray:
        """``_replay`` taking the state lock only around the cache (the caller holds the
        segmenter lock)."""
        mask = None
        for n in range(1, len(clicks) + 1):
            if not any(c.positive for c in clicks[:n]):
                mask = np.zeros(self.spatial_shape, bool)
                continue
            with self._lock:
                cached = self._cache.get((key, clicks[:n]))
            if cached is None:
                cached = self._predict(key, clicks[:n], mask)
                with self._lock:
                    self._cache.put((key, clicks[:n]), cached)
            mask = cached
        return mask

    def erase_slice(self, object_id: int, slice_key: Sequence[int] = (), axis: int = 0) -> int:
        """Say the object is not on this slice (one undo step): its pixels there go, the slice
        becomes fixed (propagation stops at it), and slices propagated *through* it are removed.

        Returns:
            the number of slices the object lost.
        """
        key = self._check_slice(slice_key)
        with self._seg_lock, self._lock:
            obj = self._object(object_id)
            before = self._state.copy()
            mask = self.labels[key] == obj.object_id
            slices = dict(obj.slices)
            if mask.any():
                d = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
                r, c = np.unravel_index(int(np.argmax(d)), d.shape)
            else:
                r, c = self.spatial_shape[0] // 2, self.spatial_shape[1] // 2
            patches: list[Patch] = []
            removed: list[SliceKey] = []
            patch, _ = self._replace(key, None, obj.object_id)
            if patch is not None:
                patches.append(patch)
            if self.leading_shape:
                for direction in (+1, -1):
                    nxt = key[:axis] + (key[axis] + direction,) + key[axis + 1:]
                    if 0 <= nxt[axis] < self.leading_shape[axis]:
                        self._drop_chain(obj.object_id, nxt, axis, direction, slices, patches,
                                         removed)
            self._seq += 1
            slices[key] = SliceRecord((Click(float(r), float(c), False),), None, self._seq)
            self._state.objects[obj.object_id] = ObjectRecord(obj.object_id, slices)
            self._push("erase", before, patches, key=key)
            return len(removed) + int(mask.any())

    def _object(self, object_id: int) -> ObjectRecord:
        obj = self._state.objects.get(int(object_id))
        if obj is None:
            raise ValueError(f"object {object_id} is not committed; committed objects: "
                             f"{sorted(self._state.objects)}")
        return obj

    def object_box(self, object_id: int, slice_key: Sequence[int] = ()
                   ) -> tuple[int, int, int, int] | None:
        """The object's (row0, col0, row1, col1) box on a slice, or on the nearest slice it
        has pixels on (one 2D slice is read); None when it has no pixels anywhere recorded."""
        key = self._check_slice(slice_key)
        with self._lock:
            obj = self._object(object_id)
            keys = sorted(obj.slices, key=lambda k: sum(abs(a - b) for a, b in zip(k, key)))
        for k in keys:  # the clicked slice first, then the nearest others
            mask = np.asarray(self.labels[k]) == obj.object_id
            rows = np.flatnonzero(mask.any(axis=1))
            if len(rows):
                cols = np.flatnonzero(mask.any(axis=0))
                return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1
        return None

    def is_near_object(self, object_id: int, slice_key: Sequence[int], row: float, col: float
                       ) -> bool:
        """Whether a click at (row, col) can be meant for the object: inside a margin around
        its box (see ``NEAR_MIN_PX``). A click farther away is not a correction of it (a UI
        starts a new object instead: editing a committed object must be chosen visibly)."""
        box = self.object_box(object_id, slice_key)
        if box is None:
            return True  # nothing to be far from (e.g. erased everywhere): the user chose it
        r0, c0, r1, c1 = box
        margin = max(NEAR_MIN_PX, NEAR_FRACTION * max(r1 - r0, c1 - c0))
        return r0 - margin <= row <= r1 + margin and c0 - margin <= col <= c1 + margin

    def object_at(self, slice_key: Sequence[int], row: float, col: float) -> int:
        """The committed object under a pixel (0 for background or an uncommitted label)."""
        key = self._check_slice(slice_key)
        r = min(max(int(round(row)), 0), self.spatial_shape[0] - 1)
        c = min(max(int(round(col)), 0), self.spatial_shape[1] - 1)
        value = int(self.labels[key + (r, c)])
        with self._lock:
            return value if value in self._state.objects else 0


__all__ = ["CorrectionsMixin"]
