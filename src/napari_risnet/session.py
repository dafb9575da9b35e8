"""AnnotationSession: the state of an interactive annotation, free of napari and Qt.

The session holds the image, the label array, the clicks of the current object (per slice) and
the committed objects (per slice: their clicks and, for propagated slices, the slice they were
carried from). Every change is one undo step that restores the label array exactly.

Masks follow *sequential* semantics: the mask after click ``k`` of a slice is
``predict(clicks[:k], prev_mask=mask after click k-1)``. They are cached by (slice, clicks), so
undo / redo never predict again, and replaying the recorded clicks (``recompute``) gives the
same labels with a deterministic segmenter.

Threading: a UI may record clicks on its main thread (``add_click(..., predict=False)``) and
call ``predict_pending`` in a worker thread. Two re-entrant locks guard the state and the
segmenter; when both are needed the segmenter lock is always taken first.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import numpy as np
from scipy import ndimage

from napari_risnet.clicks import Click, validate_clicks
from napari_risnet.robot import iou  # the evaluation's IoU, also the propagation stop rule

if TYPE_CHECKING:  # the protocol's module imports torch; the session needs numpy only
    from napari_risnet.inference.predictor import InteractiveSegmenter

SliceKey = tuple[int, ...]
ProgressFn = Callable[[int, int, str], None]
StopFn = Callable[[], bool]

#: Masks kept for undo / redo / display, in bytes (least recently used ones go first).
MASK_CACHE_BYTES = 512 * 2 ** 20


@dataclass(frozen=True)
class SliceRecord:
    """The clicks that made one slice of an object; ``source`` is the neighbouring slice a
    propagated slice was carried from (its mask was the ``prev_mask``), None when clicked."""

    clicks: tuple[Click, ...]
    source: SliceKey | None = None
    seq: int = 0


@dataclass(frozen=True)
class ObjectRecord:
    """A committed object: its label id and how each of its slices was made."""

    object_id: int
    slices: dict[SliceKey, SliceRecord]


@dataclass(frozen=True)
class ClickRecord:
    """One row of the reproducible click table (``object_id`` 0 = the current object)."""

    object_id: int
    slice: SliceKey
    click: Click
    source: SliceKey | None = None


@dataclass
class PropagationResult:
    """What ``propagate`` did: slices added, and why it stopped in each direction."""

    object_id: int
    slices: list[SliceKey] = field(default_factory=list)
    stopped: dict[int, str] = field(default_factory=dict)
    cancelled: bool = False


@dataclass
class _State:
    """The small Python state of a session (arrays are shared, never mutated in place)."""

    objects: dict[int, ObjectRecord] = field(default_factory=dict)
    current: dict[SliceKey, tuple[Click, ...]] = field(default_factory=dict)
    current_seq: dict[SliceKey, int] = field(default_factory=dict)

    def copy(self) -> "_State":
        return _State(dict(self.objects), dict(self.current), dict(self.current_seq))


@dataclass
class _Patch:
    """A change of ``labels[index]`` from ``old`` to ``new`` (a bounding box per slice)."""

    index: tuple
    old: np.ndarray
    new: np.ndarray


@dataclass
class _Step:
    kind: str
    before: _State
    after: _State
    patches: list[_Patch] = field(default_factory=list)
    slice: SliceKey | None = None


class _MaskCache:
    """LRU cache (slice, clicks) -> mask, bounded in bytes."""

    def __init__(self, max_bytes: int = MASK_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._data: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._bytes = 0

    def get(self, key: tuple) -> np.ndarray | None:
        mask = self._data.get(key)
        if mask is not None:
            self._data.move_to_end(key)
        return mask

    def __contains__(self, key: tuple) -> bool:
        return key in self._data

    def put(self, key: tuple, mask: np.ndarray) -> None:
        if key in self._data:
            self._bytes -= self._data.pop(key).nbytes
        self._data[key] = mask
        self._bytes += mask.nbytes
        while self._bytes > self.max_bytes and len(self._data) > 1:
            _, old = self._data.popitem(last=False)
            self._bytes -= old.nbytes

    def clear(self) -> None:
        self._data.clear()
        self._bytes = 0


class AnnotationSession:
    """Clicks -> objects -> a label array, with undo / redo and stack propagation.

    Args:
        image: (H, W) grey, (H, W, C) RGB(A) / multichannel, or a stack with leading axes,
            e.g. (Z, H, W), (T, Z, H, W), (Z, H, W, 3). numpy, dask or zarr arrays.
        segmenter: anything with ``set_image(image2d, channels)`` and
            ``predict(clicks, prev_mask) -> Prediction`` (RIS-Net Predictor or a baseline).
        labels: integer array of shape leading + (H, W) to write into (used in place, so a UI
            can display it); a new int32 array of zeros when None.
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
            if not isinstance(labels, np.ndarray):
                raise TypeError(f"labels must be a numpy array, got {type(labels).__name__}")
            if labels.shape != self.labels_shape:
                raise ValueError(f"labels of shape {labels.shape} do not match the image: "
                                 f"expected {self.labels_shape}")
            if not np.issubdtype(labels.dtype, np.integer):
                raise TypeError(f"labels must have an integer dtype, got {labels.dtype}")
        self.labels: np.ndarray = labels
        self._segmenter = segmenter
        self._image_slice: SliceKey | None = None
        self._cache = _MaskCache()
        self._state = _State()
        self._undo: list[_Step] = []
        self._redo: list[_Step] = []
        self._seq = 0
        self._lock = threading.RLock()
        self._seg_lock = threading.RLock()

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
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    @property
    def has_pending(self) -> bool:
        """Whether some click of the current object still waits for its prediction."""
        with self._lock:
            return self._next_pending() is not None

    def next_label_id(self) -> int:
        """The id the next commit gets: above every id in the labels and every object."""
        with self._lock:
            top = int(self.labels.max()) if self.labels.size else 0
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

    # -- prediction ------------------------------------------------------------------------------
    def _predict(self, key: SliceKey, clicks: Sequence[Click],
                 prev: np.ndarray | None) -> np.ndarray:
        """Run the segmenter on one slice (takes the segmenter lock; never hold only the state
        lock when calling this)."""
        with self._seg_lock:
            if self._image_slice != key:
                self._image_slice = None
                self._segmenter.set_image(self.image[key], self.channels)
                self._image_slice = key
            pred = self._segmenter.predict(list(clicks), prev_mask=prev)
        mask = np.asarray(pred.mask, dtype=bool)
        if mask.shape != self.spatial_shape:
            window = getattr(pred, "window", None)
            if window is None:
                raise ValueError(f"the segmenter returned a mask of shape {mask.shape} for an "
                                 f"image of shape {self.spatial_shape}")
            full = np.zeros(self.spatial_shape, bool)
            full[window[0]:window[2], window[1]:window[3]] = mask
            mask = full
        mask.setflags(write=False)
        return mask

    def _next_pending(self) -> tuple[SliceKey, tuple[Click, ...], np.ndarray | None] | None:
        for key, clicks in self._state.current.items():
            for n in range(1, len(clicks) + 1):
                if (key, clicks[:n]) not in self._cache:
                    prev = self._cache.get((key, clicks[:n - 1])) if n > 1 else None
                    return key, clicks[:n], prev
        return None

    def predict_pending(self, keep_failed: bool = False) -> list[SliceKey]:
        """Predict every click still waiting (safe to call from a worker thread).

        On an error the failed click and the later clicks of its slice are dropped (no undo
        step), so the session stays consistent, and the error is raised again. With
        ``keep_failed`` (a UI: the user's clicks must survive a model that failed to load)
        they stay pending instead, and the next call predicts them again.

        Returns:
            the slices whose mask changed.
        """
        updated: list[SliceKey] = []
        while True:
            with self._lock:
                job = self._next_pending()
            if job is None:
                return updated
            key, clicks, prev = job
            try:
                mask = self._predict(key, clicks, prev)
            except Exception:
                if not keep_failed:
                    self._drop_failed(key, clicks)
                raise
            with self._lock:
                self._cache.put((key, clicks), mask)
            if key not in updated:
                updated.append(key)

    def _drop_failed(self, key: SliceKey, clicks: tuple[Click, ...]) -> None:
        with self._lock:
            current = self._state.current.get(key, ())
            if current[:len(clicks)] != clicks:
                return  # the user changed this slice meanwhile: nothing of it is left to drop
            keep = clicks[:-1]
            while self._undo and self._undo[-1].kind == "click" \
                    and self._undo[-1].slice == key \
                    and len(self._undo[-1].after.current.get(key, ())) > len(keep):
                self._undo.pop()
            self._redo.clear()
            if keep:
                self._state.current[key] = keep
            else:
                self._state.current.pop(key, None)
                self._state.current_seq.pop(key, None)

    # -- steps -----------------------------------------------------------------------------------
    def _push(self, kind: str, before: _State, patches: list[_Patch] | None = None,
              key: SliceKey | None = None) -> None:
        self._undo.append(_Step(kind, before, self._state.copy(), patches or [], key))
        self._redo.clear()

    def _write(self, index: tuple, new: np.ndarray) -> _Patch:
        old = self.labels[index].copy()
        self.labels[index] = new
        return _Patch(index, old, np.array(new, copy=True))

    def undo(self) -> str | None:
        """Undo the last step (click, commit, clear, propagate, recompute); returns its kind."""
        with self._lock:
            if not self._undo:
                return None
            step = self._undo.pop()
            for p in reversed(step.patches):
                self.labels[p.index] = p.old
            self._state = step.before.copy()
            self._redo.append(step)
            return step.kind

    def redo(self) -> str | None:
        """Redo the last undone step; returns its kind."""
        with self._lock:
            if not self._redo:
                return None
            step = self._redo.pop()
            for p in step.patches:
                self.labels[p.index] = p.new
            self._state = step.after.copy()
            self._undo.append(step)
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
        patches: list[_Patch] = []
        written = 0
        for key, mask in masks.items():
            patch, n = self._paint(key, mask, object_id, overwrite)
            if patch is not None:
                patches.append(patch)
                written += n
        if written == 0:
            for p in reversed(patches):
                self.labels[p.index] = p.old
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
               ) -> tuple[_Patch | None, int]:
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

    # -- propagation -----------------------------------------------------------------------------
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
            patches: list[_Patch] = []
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
                       slices: dict[SliceKey, SliceRecord], patches: list[_Patch],
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

    # -- reproducibility -------------------------------------------------------------------------
    def click_records(self) -> list[ClickRecord]:
        """Every click, committed objects first in the order their slices were made, then the
        current object (id 0): the table that ``recompute`` turns back into the same labels."""
        with self._lock:
            rows: list[tuple[int, ClickRecord]] = []
            for obj in self._state.objects.values():
                for key, rec in obj.slices.items():
                    rows += [(rec.seq, ClickRecord(obj.object_id, key, c, rec.source))
                             for c in rec.clicks]
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
        replayed click by click, propagated ones (``source`` set) from their source's mask.
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
            patches: list[_Patch] = []
            if clear and self.labels.any():
                patches.append(self._write((Ellipsis,), np.zeros_like(self.labels)))
            state = _State() if clear else self._state.copy()
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
                    if source is not None:
                        source = self._check_slice(source)
                        prev = self.labels[source] == object_id
                        mask = self._predict(key, clicks, prev)
                    else:
                        mask = self._replay(key, clicks)
                    patch, _ = self._paint(key, mask, object_id, overwrite=source is None
                                           and object_id in overwrite_ids)
                    if patch is not None:
                        patches.append(patch)
                    old = state.objects.get(object_id)
                    slices = dict(old.slices) if old else {}
                    slices[key] = SliceRecord(clicks, source, self._seq)
                    state.objects[object_id] = ObjectRecord(object_id, slices)
            except Exception:
                for p in reversed(patches):
                    self.labels[p.index] = p.old
                raise
            self._state = state
            self._push("recompute", before, patches)
            if progress is not None:
                progress(total, total, "done")
            return sorted(state.objects)

    def restore(self, labels: np.ndarray, records: Iterable[ClickRecord]) -> list[int]:
        """Load saved work (an annotation project) without predicting: ``labels`` become the
        label array's content and ``records`` (committed objects only) the objects' clicks, in
        their order. The history starts fresh and the current object is empty.

        Returns the object ids.
        """
        labels = np.asarray(labels)
        if labels.shape != self.labels_shape:
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
            state = _State()
            for (object_id, key), rows in groups.items():
                self._seq += 1
                source = None if rows[0].source is None else self._check_slice(rows[0].source)
                old = state.objects.get(object_id)
                slices = dict(old.slices) if old else {}
                slices[key] = SliceRecord(tuple(r.click for r in rows), source, self._seq)
                state.objects[object_id] = ObjectRecord(object_id, slices)
            self.labels[...] = labels
            self._state = state
            self._undo.clear()
            self._redo.clear()
            return sorted(state.objects)

    def _replay(self, key: SliceKey, clicks: tuple[Click, ...]) -> np.ndarray:
        """The sequential mask of a click list (cached prefixes reused)."""
        mask = None
        for n in range(1, len(clicks) + 1):
            cached = self._cache.get((key, clicks[:n]))
            if cached is None:
                cached = self._predict(key, clicks[:n], mask)
                self._cache.put((key, clicks[:n]), cached)
            mask = cached
        return mask


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


def _bbox(mask: np.ndarray | None) -> tuple[slice, slice] | None:
    if mask is None:
        return None
    rows = np.flatnonzero(mask.any(axis=1))
    if len(rows) == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


__all__ = ["AnnotationSession", "ClickRecord", "ObjectRecord", "PropagationResult",
           "SliceRecord", "derive_clicks", "iou"]
