"""State shared by the plugin's widgets in one napari process (free of napari and Qt).

Why: napari hands each plugin widget its *own* proxy of the viewer, so two widgets can never
find each other by comparing ``viewer`` objects. Here every widget registers under the viewer
the proxy wraps (``__wrapped__``, a public dunder of napari's proxy); the fine-tune widget offers
its checkpoint to that viewer, and each open RIS-Net widget of it takes the checkpoint at once.
When none is open, the offer waits for the next RIS-Net widget of that viewer.
"""
from __future__ import annotations

import threading
import weakref
from pathlib import Path
from typing import Any, Protocol


class CheckpointReceiver(Protocol):
    def set_checkpoint(self, path: str | Path) -> None: ...


_lock = threading.Lock()
_receivers: "weakref.WeakKeyDictionary[Any, weakref.WeakSet[CheckpointReceiver]]" = \
    weakref.WeakKeyDictionary()
_pending: "weakref.WeakKeyDictionary[Any, Path]" = weakref.WeakKeyDictionary()


def viewer_key(viewer: Any) -> Any:
    """The real viewer behind napari's per-widget proxy (the viewer itself when unwrapped)."""
    while hasattr(viewer, "__wrapped__"):
        viewer = viewer.__wrapped__
    return viewer


def register_receiver(viewer: Any, receiver: CheckpointReceiver) -> Path | None:
    """Register a widget of ``viewer`` for future offers; returns (and consumes) a checkpoint
    offered while no widget of that viewer was open, which the new widget should use."""
    key = viewer_key(viewer)
    with _lock:
        _receivers.setdefault(key, weakref.WeakSet()).add(receiver)
        return _pending.pop(key, None)


def unregister_receiver(viewer: Any, receiver: CheckpointReceiver) -> None:
    with _lock:
        receivers = _receivers.get(viewer_key(viewer))
        if receivers is not None:
            receivers.discard(receiver)


def offer_checkpoint(viewer: Any, path: str | Path) -> int:
    """Switch every registered widget of ``viewer`` to ``path`` (call on the GUI thread).
    Returns how many took it; with none, the checkpoint waits for the next one to register."""
    key = viewer_key(viewer)
    with _lock:
        receivers = list(_receivers.get(key, ()))
    taken = 0
    for receiver in receivers:
        try:
            receiver.set_checkpoint(path)
            taken += 1
        except RuntimeError:  # a closed Qt widget whose C++ side is gone
            unregister_receiver(viewer, receiver)
    if not taken:
        with _lock:
            _pending[key] = Path(path)
    return taken


def pending_checkpoint(viewer: Any) -> Path | None:
    """The checkpoint waiting for the next widget of ``viewer`` (None when none waits)."""
    with _lock:
        return _pending.get(viewer_key(viewer))


__all__ = ["offer_checkpoint", "pending_checkpoint", "register_receiver",
           "unregister_receiver", "viewer_key"]
