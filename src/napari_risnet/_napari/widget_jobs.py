"""What the dock widget runs off the GUI thread: the lazily built segmenter, the prediction
job, and the signal relay that brings worker progress back to the GUI thread."""
from __future__ import annotations

import gc
import time
from typing import TYPE_CHECKING, Any, Callable

from qtpy.QtCore import QObject, Signal

from napari_risnet.annotation.project import predictor_record
from napari_risnet.annotation import AnnotationSession
from napari_risnet.threads import apply_threads

if TYPE_CHECKING:  # torch is imported only when the first prediction needs the model
    from napari_risnet.inference.predictor import InteractiveSegmenter

#: factory(checkpoint="default" | path, device="auto" | "cpu" | "cuda", use_graphcut=bool,
#: threads=int)
SegmenterFactory = Callable[..., "InteractiveSegmenter"]


def default_segmenter_factory(checkpoint: str = "default", device: str = "auto",
                              use_graphcut: bool = True, threads: int | None = None
                              ) -> "InteractiveSegmenter":
    """The RIS-Net Predictor (imported here: torch loads only when a prediction is needed)."""
    from napari_risnet.inference.predictor import Predictor, PredictorSettings
    return Predictor(checkpoint, PredictorSettings(use_graphcut=use_graphcut), device=device,
                     threads=threads)


class _LazySegmenter:
    """Builds the real segmenter on first use, inside the worker thread (loading weights is
    slow and may fail: the error then surfaces as a notification, not at widget creation).
    ``settings["threads"]`` is applied to torch before the first and every later prediction
    (torch's thread count is per process: another widget may have changed it)."""

    def __init__(self, factory: SegmenterFactory, **settings: Any) -> None:
        self.factory = factory
        self.settings = settings
        self._segmenter: "InteractiveSegmenter | None" = None

    @property
    def loaded(self) -> bool:
        """Whether the model is built (the first prediction builds it: seconds)."""
        return self._segmenter is not None

    def recorded_settings(self) -> dict[str, Any] | None:
        """The built predictor's settings for the project record (None before it is built or
        for a segmenter without any)."""
        return predictor_record(self._segmenter)

    def _get(self) -> "InteractiveSegmenter":
        if self._segmenter is None:
            apply_threads(self.settings.get("threads"))
            self._segmenter = self.factory(**self.settings)
            # one full garbage collection now, while the user waits for the model anyway:
            # importing torch and loading the model leave ~600,000 objects that the next
            # automatic full collection (0.25-0.3 s, everything stops) would otherwise scan in
            # the middle of a later click
            gc.collect()
        apply_threads(self.settings.get("threads"))
        return self._segmenter

    @property
    def calibrated(self) -> bool:
        """Whether the probabilities are a model's confidence (propagation's stop rule)."""
        return getattr(self._get(), "calibrated", True)

    def set_image(self, image: Any, channels: Any = None) -> None:
        self._get().set_image(image, channels)

    def predict(self, clicks: Any, prev_mask: Any = None) -> Any:
        return self._get().predict(clicks, prev_mask=prev_mask)


def _predict_job(session: AnnotationSession, gen: int) -> tuple[int, AnnotationSession, float]:
    """Worker body: predict the pending clicks, report how long it took."""
    tic = time.perf_counter()
    session.predict_pending(keep_failed=True)  # a failure must not cost the user's clicks
    return gen, session, time.perf_counter() - tic


class _Relay(QObject):
    """Carries progress from a worker thread to the main thread (queued signal)."""

    progressed = Signal(int, int, str)


__all__ = ["SegmenterFactory", "default_segmenter_factory"]
