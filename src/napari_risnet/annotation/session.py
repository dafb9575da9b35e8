"""AnnotationSession: the state of an interactive annotation, free of napari and Qt.

The session holds the image, the label array, the clicks of the current object (per slice) and
the committed objects (per slice: their clicks and, for propagated slices, the slice they were
carried from). A committed object can be corrected on any slice (``correct``, ``erase_slice``)
and propagated again from there (``propagate(..., from_slice=...)``, in ``propagation.py``).
Every change is one undo step that restores the label array exactly.
This file holds the click -> commit path and undo / redo; the segmenter calls and the queue of
clicks waiting for a prediction live in ``prediction.py``, corrections of committed objects in
``corrections.py`` and the click table / replay in ``replay.py`` (mixins).

Masks follow *sequential* semantics: the mask after click ``k`` of a slice is
``predict(clicks[:k], prev_mask=mask after click k-1)``. They are cached by (slice, clicks)
(``cache.py``), so undo / redo never predict again, and replaying the recorded clicks
(``recompute``) gives the same labels with a deterministic segmenter.

Threading: a UI may record clicks on its main thread (``add_click(..., predict=False)``) and
call ``predict_pending`` in a worker thread. Two re-entrant locks guard the state and the
segmenter; when both are needed the segmenter lock is always taken first.
"""
from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from napari_risnet.annotation.cache import MASK_CACHE_BYTES, MaskCache
from napari_risnet.annotation.corrections import CorrectionsMixin
from napari_risnet.annotation.history import History, Patch, SessionState, Step, write_patch
from napari_risnet.annotation.label_store import label_bound
from napari_risnet.annotation.prediction import PredictionMixin
from napari_risnet.annotation.propagation import (PropagationMixin, PropagationResult, StopRule,
                                                  derive_clicks)
from napari_risnet.annotation.records import ClickRecord, ObjectRecord, SliceKey, SliceRecord
from napari_risnet.annotation.replay import ReplayMixin
from napari_risnet.clicks import Click, validate_clicks
from napari_risnet.metrics import iou

if TYPE_CHECKING:  # the protocol's module imports torch; the session needs numpy only
    from napari_risnet.inference.predictor import InteractiveSegmenter


class AnnotationSession(PredictionMixin, PropagationMixin, CorrectionsMixin, ReplayMixin):
    """Clicks -> objects -> a label array, with undo / redo and stack propagation.

    Args:
        image: (H, W) grey, (H, W, C) RGB(A) / multichannel, or a stack with leading axes,
            e.g. (Z, H, W), (T, Z, H, W), (Z, H, W, 3). numpy, dask or zarr arrays.
        segmenter: anything with ``set_image(image2d, channels)`` and
            ``predict(clicks, prev_mask) -> Prediction`` (RIS-Net Predictor or a baseline).
        labels: integer array of shape leading + (H, W) to write into (used in place, so a UI
            can display it): numpy, or a project's ``ChunkedLabels`` (written chunk by chunk);
            a new int32 array of zeros when None.
        rgb: whether the last axis holds channels; None guesses like napari (3 or 4 last).
        channels: channels handed to ``set_image`` for a multichannel image.
    """

    def __init__(self, image: Any, segmenter: "InteractiveSegmenter",
                 labels: np.ndarray | None = None, rgb: bool | None = None,
                 channels: Sequence[int] | None = None) -> None:
        shape = getattr(image, "shape", None)
        if shape is None:
            raise TypeError(f"expected an array-like image, got {type(image).__name__}")
        shape = tuple(int(s) for s in shape)
        if rgb is None:
            rgb = len(shape) >= 3 and shape[-1] in (3, 4)
        spatial_end = len(shape) - 1 if rgb else len(shape)
        if spatial_end < 2:
            raise ValueError(f"expected an image with at least 2 spatial axes "
                             f"(H, W{', C' if rgb else ''}), got shape {shape}")
        if any(s < 1 for s in shape):
            raise ValueError(f"image of shape {shape} is empty")
        dtype = np.dtype(getattr(image, "dtype", np.float64))
        if not (np.issubdtype(dtype, np.number) or dtype == bool):
            raise TypeError(f"image dtype {dtype} is not numeric")
        self.image = image
        self.rgb = bool(rgb)
        self.channels = None if channels is None else [int(c) for c in channels]
        self.leading_shape: SliceKey = shape[:spatial_end - 2]
        self.spatial_shape: tuple[int, int] = (shape[spatial_end - 2], shape[spatial_end - 1])
        self.labels_shape = self.leading_shape + self.spatial_shape
        if labels is None:
            labels = np.zeros(self.labels_shape, dtype=np.int32)
        else:
            self._check_labels(labels)
        self.labels: Any = labels
        self._segmenter = segmenter
        self._image_slice: SliceKey | None = None
        self._cache = MaskCache(MASK_CACHE_BYTES)
        self._state = SessionState()
        self._history = History()
        self._seq = 0
        self._lock = threading.RLock()
        self._seg_lock = threading.RLock()
        self._init_propagation()

    def _check_labels(self, labels: Any) -> None:
        if not isinstance(labels, np.ndarray) and not getattr(labels, "is_chunked", False):
            raise TypeError(f"labels must be a numpy array, got {type(labels).__name__}")
        if tuple(labels.shape) != self.labels_shape:
            raise ValueError(f"labels of shape {tuple(labels.shape)} do not match the image: "
                             f"expected {self.labels_shape}")
        if not np.issubdtype(labels.dtype, np.integer):
            raise TypeError(f"labels must have an integer dtype, got {labels.dtype}")

    def attach_labels(self, labels: Any) -> None:
        """Continue on ``labels`` (e.g. a project's ``ChunkedLabels`` once it is saved), which
        must hold the same pixels as the current label array; the history stays valid."""
        self._check_labels(labels)
        with self._lock:
            self.labels = labels

    # -- properties ------------------------------------------------------------------------------
    @property
    def segmenter(self) -> "InteractiveSegmenter":
        return self._segmenter

    @segmenter.setter
    def segmenter(self, segmenter: "InteractiveSegmenter") -> None:
        """Swap the method: cached masks are dropped and the current object predicted again."""
        with self._seg_lock, self._lock:
            self._segmenter = segmenter
            self._image_slice = None
            self._cache.clear()

    @property
    def objects(self) -> dict[int, ObjectRecord]:
        """Committed objects by id (a copy)."""
        with self._lock:
            return dict(self._state.objects)

    @property
    def current_clicks(self) -> dict[SliceKey, tuple[Click, ...]]:
        """Clicks of the current object per slice (a copy)."""
        with self._lock:
            return dict(self._state.current)

    @property
    def n_current_clicks(self) -> int:
        with self._lock:
            return sum(len(c) for c in self._state.current.values())

    @property
    def can_undo(self) -> bool:
        return self._history.can_undo

    @property
    def can_redo(self) -> bool:
        return self._history.can_redo

    @property
    def has_pending(self) -> bool:
        """Whether some click of the current object still waits for its prediction."""
        with self._lock:
            return self._next_pending() is not None

    def next_label_id(self) -> int:
        """The id the next commit gets: above every id in the labels and every object (a
        project's chunked labels know their maximum per chunk: no scan of the volume)."""
        with self._lock:
            top = label_bound(self.labels)
            return max([top, *self._state.objects]) + 1

    def current_mask(self, slice_key: Sequence[int] = ()) -> np.ndarray | None:
        """The current object's (H, W) bool mask on a slice; None before its prediction."""
        key = self._check_slice(slice_key)
        with self._lock:
            clicks = self._state.current.get(key)
            return None if not clicks else self._cache.get((key, clicks))

    # -- validation ------------------------------------------------------------------------------
    def _check_slice(self, slice_key: Sequence[int] | int) -> SliceKey:
        if isinstance(slice_key, (int, np.integer)):
            slice_key = (slice_key,)
        try:
            key = tuple(int(i) for i in slice_key)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"slice index must be a tuple of integers, got {slice_key!r}"
                             ) from exc
        if len(key) != len(self.leading_shape):
            raise ValueError(f"slice index {key} has {len(key)} entries but the image has "
                             f"{len(self.leading_shape)} leading axes {self.leading_shape}")
        for i, n in zip(key, self.leading_shape):
            if not 0 <= i < n:
                raise ValueError(f"slice index {key} lies outside the stack of shape "
                                 f"{self.leading_shape}")
        return key

    def _check_click(self, click: Click) -> Click:
        if not isinstance(click, Click):
            raise TypeError(f"expected a Click, got {type(click).__name__}")
        return validate_clicks([click], self.spatial_shape)[0]

    # -- steps -----------------------------------------------------------------------------------
    def _push(self, kind: str, before: SessionState, patches: list[Patch] | None = None,
              key: SliceKey | None = None) -> None:
        self._history.push(Step(kind, before, self._state.copy(), patches or [], key))

    def _write(self, index: tuple, new: np.ndarray) -> Patch:
        return write_patch(self.labels, index, new)

    def undo(self) -> str | None:
        """Undo the last step (click, commit, clear, propagate, recompute); returns its kind."""
        with self._lock:
            step = self._history.undo(self.labels)
            if step is None:
                return None
            self._state = step.before.copy()
            return step.kind

    def redo(self) -> str | None:
        """Redo the last undone step; returns its kind."""
        with self._lock:
            step = self._history.redo(self.labels)
            if step is None:
                return None
            self._state = step.after.copy()
            return step.kind

    # -- clicks ----------------------------------------------------------------------------------
    def add_click(self, click: Click, slice_key: Sequence[int] = (), predict: bool = True
                  ) -> np.ndarray | None:
        """Add a click to the current object on a slice.

        Args:
            click: (row, col) in the slice, positive or negative.
            slice_key: indices along the leading axes (``()`` for a 2D image).
            predict: predict now and return the new mask; False only records the click (a UI
                then calls ``predict_pending`` in a worker).
        Raises:
            ValueError / TypeError: the click or slice is invalid (nothing is recorded), or the
                prediction failed (the click is dropped again).
        """
        key = self._check_slice(slice_key)
        click = self._check_click(click)
        with self._lock:
            before = self._state.copy()
            clicks = self._state.current.get(key, ())
            if not clicks and not click.positive:
                raise ValueError("the first click on an object must be positive (left click)")
            self._state.current[key] = clicks + (click,)
            if not clicks:
                self._seq += 1
                self._state.current_seq[key] = self._seq
            self._push("click", before, key=key)
        if not predict:
            return None
        self.predict_pending()
        return self.current_mask(key)

    def clear(self) -> bool:
        """Forget the current object's clicks (one undo step); False when there were none."""
        with self._lock:
            if not self._state.current:
                return False
            before = self._state.copy()
            self._state.current.clear()
            self._state.current_seq.clear()
            self._push("clear", before)
            return True

    # -- commit ----------------------------------------------------------------------------------
    def commit(self, overwrite: bool = False) -> int:
        """Write the current object into the labels under the next free id (one undo step).

        Pixels of other objects are kept unless ``overwrite``. Returns the new id.

        Raises:
            ValueError: no clicks, an empty mask, or nothing left after sparing other objects.
        """
        while True:
            self.predict_pending(keep_failed=True)  # a failed commit keeps the clicks
            with self._seg_lock, self._lock:
                if self._next_pending() is not None:
                    continue  # a click arrived meanwhile
                return self._commit_locked(overwrite)

    def _commit_locked(self, overwrite: bool) -> int:
        current = self._state.current
        if not current:
            raise ValueError("nothing to commit: click on an object first")
        masks = {key: self._cache.get((key, clicks)) for key, clicks in current.items()}
        if not any(m is not None and m.any() for m in masks.values()):
            raise ValueError("the current object is empty: add a positive click on it")
        object_id = self.next_label_id()
        if np.issubdtype(self.labels.dtype, np.integer) \
                and object_id > np.iinfo(self.labels.dtype).max:
            raise ValueError(f"label id {object_id} does not fit the labels' dtype "
                             f"{self.labels.dtype}; use an int32 label array")
        before = self._state.copy()
        patches: list[Patch] = []
        written = 0
        for key, mask in masks.items():
            patch, n = self._paint(key, mask, object_id, overwrite)
            if patch is not None:
                patches.append(patch)
                written += n
        if written == 0:
            for p in reversed(patches):
                p.undo(self.labels)
            raise ValueError("the object lies entirely under other objects (overwrite "
                             "replaces them)")
        slices = {key: SliceRecord(clicks, None, self._state.current_seq.get(key, 0))
                  for key, clicks in current.items()}
        self._state.objects[object_id] = ObjectRecord(object_id, slices)
        self._state.current.clear()
        self._state.current_seq.clear()
        self._push("commit", before, patches)
        return object_id

    def _paint(self, key: SliceKey, mask: np.ndarray | None, object_id: int, overwrite: bool
               ) -> tuple[Patch | None, int]:
        """Write ``mask`` as ``object_id`` on a slice, inside the mask's bounding box."""
        box = _bbox(mask)
        if box is None:
            return None, 0
        index = key + box
        block = self.labels[index]
        paint = mask[box]
        if not overwrite:
            paint = paint & ((block == 0) | (block == object_id))
        n = int(np.count_nonzero(paint & (block != object_id)))
        if n == 0:
            return None, 0
        return self._write(index, np.where(paint, object_id, block).astype(block.dtype)), n

    def _replace(self, key: SliceKey, mask: np.ndarray | None, object_id: int
                 ) -> tuple[Patch | None, int]:
        """Make ``mask`` the object's pixels on a slice (its other pixels there become
        background; other objects are kept). Returns the patch and the pixels newly painted."""
        old = self.labels[key] == object_id
        new = old.copy() if mask is None else np.asarray(mask, bool)
        if mask is None:
            new[:] = False
        free = (self.labels[key] == 0) | old
        new = new & free
        box = _bbox(old | new)
        if box is None:
            return None, 0
        index = key + box
        block = self.labels[index]
        o, m = old[box], new[box]
        if np.array_equal(o, m):
            return None, 0
        out = np.where(o & ~m, 0, block)
        out = np.where(m, object_id, out).astype(block.dtype)
        return self._write(index, out), int(np.count_nonzero(m & ~o))


def _bbox(mask: np.ndarray | None) -> tuple[slice, slice] | None:
    if mask is None:
        return None
    rows = np.flatnonzero(mask.any(axis=1))
    if len(rows) == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


__all__ = ["AnnotationSession", "ClickRecord", "ObjectRecord", "PropagationResult",
           "SliceKey", "SliceRecord", "StopRule", "derive_clicks", "iou"]
