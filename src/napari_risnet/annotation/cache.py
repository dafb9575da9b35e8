"""The session's mask cache: masks by (slice, clicks), so undo / redo and replay never predict
again. Its own file because the byte-bounded LRU knows nothing of sessions or objects."""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

#: Masks kept for undo / redo / display, in bytes (least recently used ones go first).
MASK_CACHE_BYTES = 512 * 2 ** 20


class MaskCache:
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


__all__ = ["MASK_CACHE_BYTES", "MaskCache"]
