"""Give the memory that predictions and layer updates freed back to the operating system.

glibc keeps what a thread frees in that thread's malloc arena for its next allocations: after
300 rapid clicks the widget's process held ~70 MB that was free but never returned (RSS
+143 MB, +69 MB of it in use). ``trim_freed_memory`` calls ``malloc_trim(0)`` (~5 ms for a
1 GB process); the widget calls it at most once a second, after a result is shown. Elsewhere
(macOS, Windows, musl) it does nothing.
"""
from __future__ import annotations

import ctypes
import sys
from typing import Any

_trim: Any = None  # None: not looked up yet; False: not available here


def trim_freed_memory() -> bool:
    """Return free heap memory to the OS (glibc only); whether it could be tried."""
    global _trim
    if _trim is None:
        _trim = False
        if sys.platform.startswith("linux"):
            try:
                _trim = ctypes.CDLL("libc.so.6").malloc_trim
                _trim.argtypes = [ctypes.c_size_t]
                _trim.restype = ctypes.c_int
            except (OSError, AttributeError):  # not glibc
                _trim = False
    if _trim is False:
        return False
    _trim(0)
    return True


__all__ = ["trim_freed_memory"]
