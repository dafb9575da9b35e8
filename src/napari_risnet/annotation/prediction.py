"""The session's calls to its segmenter, and the queue of clicks still waiting for a prediction.

A mixin of ``AnnotationSession``: a UI records clicks on its main thread
(``add_click(..., predict=False)``) and calls ``predict_pending`` in a worker thread; masks go
to the session's cache keyed by (slice, clicks), so undo / redo never predict again.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from napari_risnet.annotation.records import SliceKey
from napari_risnet.clicks import Click


class PredictionMixin:
    """``predict_pending`` and the segmenter calls for ``AnnotationSession`` (needs its
    ``image``, ``channels``, ``spatial_shape``, ``_segmenter``, ``_image_slice``,
    ``_cache``, ``_state``, ``_history`` and both locks)."""

    def _predict(self, key: SliceKey, clicks: Sequence[Click],
                 prev: np.ndarray | None) -> np.ndarray:
        """Run the segmenter on one slice (takes the segmenter lock; never hold only the state
        lock when calling this)."""
        return self._predict_full(key, clicks, prev)[0]

    def _predict_full(self, key: SliceKey, clicks: Sequence[Click], prev: np.ndarray | None
                      ) -> tuple[np.ndarray, np.ndarray | None]:
        """The (H, W) mask and probabilities (None if the segmenter gives none) of one slice."""
        with self._seg_lock:
            if self._image_slice != key:
                self._image_slice = None
                self._segmenter.set_image(self.image[key], self.channels)
                self._image_slice = key
            pred = self._segmenter.predict(list(clicks), prev_mask=prev)
        mask = np.asarray(pred.mask, dtype=bool)
        probs = getattr(pred, "probabilities", None)
        probs = None if probs is None else np.asarray(probs, dtype=np.float32)
        if mask.shape != self.spatial_shape:
            window = getattr(pred, "window", None)
            if window is None:
                raise ValueError(f"the segmenter returned a mask of shape {mask.shape} for an "
                                 f"image of shape {self.spatial_shape}")
            full = np.zeros(self.spatial_shape, bool)
            full[window[0]:window[2], window[1]:window[3]] = mask
            mask = full
            if probs is not None and probs.shape != self.spatial_shape:
                fullp = np.zeros(self.spatial_shape, np.float32)
                fullp[window[0]:window[2], window[1]:window[3]] = probs
                probs = fullp
        mask.setflags(write=False)
        return mask, probs

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
            self._history.drop_last_while(
                lambda step: step.kind == "click" and step.slice == key
                and len(step.after.current.get(key, ())) > len(keep))
            if keep:
                self._state.current[key] = keep
            else:
                self._state.current.pop(key, None)
                self._state.current_seq.pop(key, None)


__all__ = ["PredictionMixin"]
