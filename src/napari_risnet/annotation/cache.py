"""The session's mask cache: masks by (slice, clicks), so undo / redo and replay never predict
again. Its own file because the byte-bounded LRU knows nothing of sessions or objects.

Masks are kept cropped to their bounding box: an object of 80 x 80 pixels on a 2048 x 2048
slice costs 6 kB, not 4 MB, so memory follows the objects, not the slice size."""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

#: Masks kept for undo / redo / display, in bytes (least recently used ones go first).
MASK_CACHE_BYTES = 512 * 2 ** 20


class _Cropped:
    """A bool mask as its shape, bounding box and the crop inside it."""

    __slots__ = ("shape", "box", "crop")

    def __init__(self, mask: np.ndarray) -> None:
        mask = np.asarray(mask, dtype=bool)
        self.shape = mask.shape
        if mask.ndim == 0 or not mask.any():
            self.box, self.crop = None, np.zeros((0,) * mask.ndim, bool)
            return
        box = []
        for axis in range(mask.ndim):  # the box from each axis's projection: no index arrays
            others = tuple(a for a in range(mask.ndim) if a != axis)
            hits = np.flatnonzero(mask.any(axis=others))
            box.append(slice(int(hits[0]), int(hits[-1]) + 1))
        self.box = tuple(box)
        self.crop = mask[self.box].copy()

    @property
    def nbytes(self) -> int:
        return self.crop.nbytes + 64

    def full(self) -> np.ndarray:
        out = np.zeros(self.shape, bool)
        if self.box is not None:
            out[self.box] = self.crop
        out.setflags(write=False)
        return out


class MaskCache:
    """LRU cache (slice, clicks) -> mask, bounded in bytes (of the cropped masks)."""

    def __init__(self, max_bytes: int = MASK_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._data: OrderedDict[tuple, _Cropped] = OrderedDict()
        self._bytes = 0

    def get(self, key: tuple) -> np.ndarray | None:
        """The mask (a new read-only array) or None."""
        entry = self._data.get(key)
        if entry is None:
            return None
        self._data.move_to_end(key)
        return entry.full()

    def __contains__(self, key: tuple) -> bool:
        return key in self._data

    def put(self, key: tuple, mask: np.ndarray) -> None:
        if key in self._data:
            self._bytes -= self._data.pop(key).nbytes
        entry = _Cropped(mask)
        self._data[key] = entry
        self._bytes += entry.nbytes
        while self._bytes > self.max_bytes and len(self._data) > 1:
            _, old = self._data.popitem(last=False)
            self._bytes -= old.nbytes

    def clear(self) -> None:
        self._data.clear()
        self._bytes = 0


__all__ = ["MASK_CACHE_BYTES", "MaskCache"]
