"""How many CPU threads torch gets for interactive work (the widgets, ``segment``, ``demo``).

Why not torch's default (one thread per core): an annotator's machine is rarely idle, and
napari's own GUI thread needs a core too. With every core taken by OpenMP, one other busy
process makes each thread wait for the slowest and a click takes seconds instead of a fraction
of one. So: one thread on a machine with at most four cores, half the cores (at most four) above
that.
"""
from __future__ import annotations

import os
import sys

#: Never more than this by default: beyond four threads a single 320 px click gains little.
MAX_DEFAULT_THREADS = 4


def available_cores() -> int:
    """Cores this process may run on (the affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def default_threads(cores: int | None = None) -> int:
    """The default torch thread count for interactive use (see the module doc)."""
    cores = available_cores() if cores is None else max(1, int(cores))
    if cores <= 4:
        return 1
    return min(cores // 2, MAX_DEFAULT_THREADS)


def check_threads(threads: int | None) -> int | None:
    """Validate a user's thread count (None / 0 = leave torch's setting alone)."""
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, int):
        raise TypeError(f"threads must be an integer, got {threads!r}")
    if threads < 0:
        raise ValueError(f"threads must be 0 (torch's default) or a positive count, got "
                         f"{threads}")
    return threads or None


def apply_threads(threads: int | None) -> None:
    """``torch.set_num_threads(threads)`` when torch is in use and the count differs (cheap to
    call before every prediction; it never imports torch for a method that does not use it)."""
    threads = check_threads(threads)
    torch = sys.modules.get("torch")
    if threads and torch is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


__all__ = ["apply_threads", "available_cores", "check_threads", "default_threads"]
