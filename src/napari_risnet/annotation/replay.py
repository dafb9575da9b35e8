"""Reproducibility: the click table of a session and rebuilding labels from it.

A mixin of ``AnnotationSession``: ``click_records`` writes the table that ``recompute`` replays
(or ``restore`` loads without predicting) -- what projects save and reopen, kept apart from the
live click -> commit path.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from napari_risnet.annotation.history import History, Patch, SessionState
from napari_risnet.annotation.label_store import nonempty_slices
from napari_risnet.annotation.propagation import ProgressFn, StopFn
from napari_risnet.annotation.records import ClickRecord, ObjectRecord, SliceKey, SliceRecord
from napari_risnet.clicks import Click


class ReplayMixin:
    """``click_records``, ``recompute``, ``restore`` and the sequential ``_replay`` of a slice's
    clicks for ``AnnotationSession`` (needs its ``_check_slice``, ``_check_click``,
    ``_predict``, ``_paint``, ``_write``, ``_cache``, ``_state``, ``_history``, ``_seq``,
    ``_push``, locks, ``labels``, ``labels_shape`` and ``spatial_shape``).
    """

    def click_records(self) -> list[ClickRecord]:
        """Every click, committed objects first in the order their slices were made, then the
        current object (id 0): the table that ``recompute`` turns back into the same labels."""
        with self._lock:
            rows: list[tuple[int, ClickRecord]] = []
            for obj in self._state.objects.values():
                for key, rec in obj.slices.items():
                    rows += [(rec.seq, ClickRecord(obj.object_id, key, c, rec.source,
                                                   i < rec.n_derived))
                             for i, c in enumerate(rec.clicks)]
            order = sorted(rows, key=lambda r: r[0])
            current = sorted(self._state.current.items(),
                             key=lambda kv: self._state.current_seq.get(kv[0], 0))
            return [r for _, r in order] + [ClickRecord(0, key, c) for key, clicks in current
                                            for c in clicks]

    def recompute(self, records: Iterable[ClickRecord], clear: bool = True,
                  progress: ProgressFn | None = None, should_stop: StopFn | None = None,
                  overwrite_ids: Iterable[int] = ()) -> list[int]:
        """Rebuild objects from a click table (e.g. saved Points), as one undo step.

        Rows are grouped by (object_id, slice) in order of first appearance; clicked slices are
        replayed click by click, propagated ones (``source`` set) from their source's mask,
        corrected propagated ones (derived and user clicks) from their clicks alone.
        Rows of object 0 become the current object. Objects in ``overwrite_ids`` were committed
        with ``overwrite`` (their clicked slices paint over others). Returns the committed ids.
        """
        overwrite_ids = {int(i) for i in overwrite_ids}
        groups: dict[tuple[int, SliceKey], list[ClickRecord]] = {}
        for r in records:
            if not isinstance(r, ClickRecord):
                raise TypeError(f"expected ClickRecord rows, got {type(r).__name__}")
            if r.object_id < 0:
                raise ValueError(f"object ids must be >= 0, got {r.object_id}")
            key = self._check_slice(r.slice)
            self._check_click(r.click)
            groups.setdefault((int(r.object_id), key), []).append(r)
        with self._seg_lock, self._lock:
            before = self._state.copy()
            patches: list[Patch] = []
            if clear:  # slice by slice: only the slices that hold labels are read and written
                for key in nonempty_slices(self.labels, self.leading_shape):
                    patches.append(self._write(key + (slice(None), slice(None)),
                                               np.zeros(self.spatial_shape, self.labels.dtype)))
            state = SessionState() if clear else self._state.copy()
            total = len(groups)
            try:
                for i, ((object_id, key), rows) in enumerate(groups.items()):
                    if should_stop is not None and should_stop():
                        break
                    if progress is not None:
                        progress(i, total, f"object {object_id}, slice {key}")
                    clicks = tuple(r.click for r in rows)
                    self._seq += 1
                    if object_id == 0:
                        state.current[key] = clicks
                        state.current_seq[key] = self._seq
                        continue
                    source = rows[0].source
                    n_derived = sum(r.is_derived for r in rows) if source is not None else 0
                    if source is not None:
                        source = self._check_slice(source)
                        prev = self.labels[source] == object_id
                        mask = self._predict(key, clicks, prev if n_derived == len(clicks)
                                             else None)
                    else:
                        mask = self._replay(key, clicks)
                    patch, _ = self._paint(key, mask, object_id, overwrite=source is None
                                           and object_id in overwrite_ids)
                    if patch is not None:
                        patches.append(patch)
                    old = state.objects.get(object_id)
                    slices = dict(old.slices) if old else {}
                    slices[key] = SliceRecord(clicks, source, self._seq, n_derived)
                    state.objects[object_id] = ObjectRecord(object_id, slices)
            except Exception:
                for p in reversed(patches):
                    p.undo(self.labels)
                raise
            self._state = state
            self._push("recompute", before, patches)
            if progress is not None:
                progress(total, total, "done")
            return sorted(state.objects)

    def restore(self, labels: np.ndarray, records: Iterable[ClickRecord]) -> list[int]:
        """Load saved work (an annotation project) without predicting: ``labels`` become the
        label array's content (a project's ``ChunkedLabels`` become the label array itself) and ``records`` (committed objects only) the objects' clicks, in
        their order. The history starts fresh and the current object is empty.

        Returns the object ids.
        """
        chunked = getattr(labels, "is_chunked", False)
        if not chunked:
            labels = np.asarray(labels)
        if tuple(labels.shape) != self.labels_shape:
            raise ValueError(f"saved labels of shape {labels.shape} do not match the image: "
                             f"expected {self.labels_shape}")
        if not np.issubdtype(labels.dtype, np.integer):
            raise TypeError(f"saved labels must have an integer dtype, got {labels.dtype}")
        groups: dict[tuple[int, SliceKey], list[ClickRecord]] = {}
        for r in records:
            if not isinstance(r, ClickRecord):
                raise TypeError(f"expected ClickRecord rows, got {type(r).__name__}")
            if r.object_id <= 0:
                raise ValueError(f"saved objects need ids >= 1, got {r.object_id}")
            self._check_click(r.click)
            groups.setdefault((int(r.object_id), self._check_slice(r.slice)), []).append(r)
        with self._seg_lock, self._lock:
            state = SessionState()
            for (object_id, key), rows in groups.items():
                self._seq += 1
                source = None if rows[0].source is None else self._check_slice(rows[0].source)
                n_derived = sum(r.is_derived for r in rows) if source is not None else 0
                old = state.objects.get(object_id)
                slices = dict(old.slices) if old else {}
                slices[key] = SliceRecord(tuple(r.click for r in rows), source, self._seq,
                                          n_derived)
                state.objects[object_id] = ObjectRecord(object_id, slices)
            if chunked:  # a project's chunked labels: continue on them, no copy
                self.labels = labels
            else:
                self.labels[...] = labels
            self._state = state
            self._history = History()  # a reopened project starts a fresh history
            return sorted(state.objects)

    def _replay(self, key: SliceKey, clicks: tuple[Click, ...]) -> np.ndarray:
        """The sequential mask of a click list (cached prefixes reused); empty while no click
        is positive (an erased slice)."""
        mask = None
        for n in range(1, len(clicks) + 1):
            if not any(c.positive for c in clicks[:n]):
                mask = np.zeros(self.spatial_shape, bool)
                continue
            cached = self._cache.get((key, clicks[:n]))
            if cached is None:
                cached = self._predict(key, clicks[:n], mask)
                self._cache.put((key, clicks[:n]), cached)
            mask = cached
        return mask


__all__ = ["ReplayMixin"]
