"""The Predictor: ``set_image`` once, ``predict(clicks, prev_mask)`` at every click.

Each click runs the network on a zoom-in window (around the clicks and the previous mask),
resized so its long side is ``input_size``: the cost of a click does not grow with the image.
On the first click of an object the window is the image (or a ``first_window`` around the click
on a huge image); when the object found is small in that window, a second look zooms in on it.
What the predictor does besides the network is a list of rules
(:mod:`napari_risnet.inference.rules`), chosen by one :class:`PredictorSettings`.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np
import torch

from napari_risnet.clicks import Click, distance_maps, propose_rois, validate_clicks
from napari_risnet.inference.bundled import BUNDLED, CURRENT, WEIGHTS_DIR, bundled_weights
from napari_risnet.inference.click_effects import seed_params
from napari_risnet.inference.graphcut import graph_cut
from napari_risnet.inference.network_pass import add_timing, window_logits
from napari_risnet.inference.prediction import Prediction
from napari_risnet.inference.preprocess import (CropTransform, ImageNormalizer, fit_shape,
                                                network_input)
from napari_risnet.inference.previous_mask import mask_box, prev_in_window
from napari_risnet.inference.rules import Answer, ClickState, View, build_rules, shows_small_object
from napari_risnet.inference.settings import PredictorSettings
from napari_risnet.model.batchnorm_folding import fold_batchnorm
from napari_risnet.model.checkpoint import load_checkpoint
from napari_risnet.model.risnet import RISNet

DEFAULT_WEIGHTS = WEIGHTS_DIR / dict(BUNDLED)[CURRENT]


class InteractiveSegmenter(Protocol):
    """What evaluation, the session and the widget need from a method (RIS-Net or baseline)."""

    def set_image(self, image: Any, channels: Sequence[int] | None = None) -> None: ...

    def predict(self, clicks: Sequence[Click], prev_mask: np.ndarray | None = None
                ) -> Prediction: ...


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` = cuda -> mps -> cpu; anything else is passed to torch.device (validated)."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but no CUDA GPU is available")
    return dev


def default_checkpoint() -> Path:
    """Path of the bundled model; a clear error while none is bundled."""
    return bundled_weights()


class Predictor:
    """RIS-Net predictor: network, answer rules and graph cut on a zoom-in window per click.

    Args:
        model: a RISNet, or a checkpoint path, or "default" / None for the bundled model.
        settings: what shapes the answer (:class:`PredictorSettings`; default: this release).
        device: "auto", "cpu", "cuda", ...
        threads: torch CPU threads (None: torch's default).
        checkpoint: the checkpoint path, as a keyword (same as passing it as ``model``).
    """

    def __init__(self, model: RISNet | str | Path | None = None,
                 settings: PredictorSettings | None = None, device: str | torch.device = "auto",
                 threads: int | None = None, *, checkpoint: str | Path | None = None) -> None:
        if settings is None:
            settings = PredictorSettings()
        if not isinstance(settings, PredictorSettings):
            raise TypeError(f"settings must be a PredictorSettings, got "
                            f"{type(settings).__name__}")
        if model is not None and checkpoint is not None:
            raise ValueError("give a model or a checkpoint, not both")
        self.device = resolve_device(device)
        if not isinstance(model, torch.nn.Module):
            source = checkpoint if model is None else model
            path = default_checkpoint() if source in (None, "default") \
                else Path(source).expanduser()
            model, self.meta = load_checkpoint(path, map_location=self.device)
            self.checkpoint: Path | None = path
        else:
            self.meta, self.checkpoint = {}, None
        if threads:
            torch.set_num_threads(threads)
        if settings.fold_batchnorm:  # a folded copy: a model passed in stays as it was
            model, _ = fold_batchnorm(model)
        # channels_last: ~1.6x faster depthwise convolutions on CPU
        self.model = model.to(self.device, memory_format=torch.channels_last).eval()
        self.settings = settings
        self.pass_rules, self.click_rules = build_rules(settings)
        self._norm: ImageNormalizer | None = None
        self._cache: np.ndarray | None = None

    @property
    def rules(self) -> tuple[str, ...]:
        """The names of the answer rules in this predictor's pipeline, in order."""
        return self.settings.rules

    def recorded_settings(self) -> dict[str, Any]:
        """What a project records so that ``replay`` rebuilds this predictor
        (:meth:`PredictorSettings.to_record`)."""
        return self.settings.to_record()

    # -- image ---------------------------------------------------------------------------------
    def set_image(self, image: Any, channels: Sequence[int] | None = None) -> None:
        """Validate and remember the image (normalised once unless it is huge / lazy)."""
        self._norm = ImageNormalizer(image, channels)
        self._cache = None if self._norm.is_large else self._norm.window()

    @property
    def image_shape(self) -> tuple[int, int]:
        if self._norm is None:
            raise RuntimeError("call set_image(image) before predict()")
        return self._norm.shape

    def _pixels(self, t: CropTransform) -> np.ndarray:
        if self._cache is not None:
            return self._cache[t.r0:t.r1, t.c0:t.c1]
        return self._norm.window(t.r0, t.c0, t.r1, t.c1)

    # -- prediction ----------------------------------------------------------------------------
    def predict(self, clicks: Sequence[Click],
                prev_mask: "np.ndarray | Prediction | None" = None) -> Prediction:
        """Segment the object the clicks describe.

        Window -> network pass (with the pass rules) -> graph cut -> the click rules, in
        order -> back to image coordinates.

        Args:
            clicks: all clicks on this object so far, in image (row, col).
            prev_mask: the previous (H, W) mask of this object (or the previous Prediction,
                which is all a huge lazy image can afford), used to place the zoom-in window and,
                for an architecture-v2 model, as its previous-mask input (cut to the window).
        Returns:
            Prediction over the whole image (over its ``window`` only for huge images).
        """
        clicks = validate_clicks(clicks, self.image_shape)
        prev_box = mask_box(prev_mask, self.image_shape)
        timings: dict[str, float] = {}
        t = self._first_window(clicks, prev_box)
        prev_crop = prev_in_window(prev_mask, t)

        def look(window: CropTransform, prev: np.ndarray | None) -> Answer:
            return self._look(window, clicks, timings, prev)

        state = ClickState(clicks, prev_box, prev_crop, look, self._window_around)
        answer = look(t, prev_crop)
        for rule in self.click_rules:
            answer = rule(answer, state)
        return self._assemble(answer, timings)

    def _first_window(self, clicks: Sequence[Click],
                      prev_box: tuple[int, int, int, int] | None) -> CropTransform:
        """The image (or ``first_window`` around the click) on an object's first click; else
        the box of the clicks and the previous mask grown by ``expand``."""
        h, w = self.image_shape
        if prev_box is None and len(clicks) == 1:
            c = clicks[0]
            first = self.settings.first_window
            side = max(h, w) if max(h, w) <= first else first
            box = (c.row - side / 2, c.col - side / 2, c.row + side / 2, c.col + side / 2)
            return CropTransform.around(box, (h, w), self.settings.input_size, expand=1.0)
        rows = [c.row for c in clicks]
        cols = [c.col for c in clicks]
        if prev_box is not None:
            rows += [prev_box[0], prev_box[2]]
            cols += [prev_box[1], prev_box[3]]
        return self._window_around((min(rows), min(cols), max(rows) + 1, max(cols) + 1),
                                   self.settings.expand)

    def _window_around(self, box: tuple[float, float, float, float], expand: float
                       ) -> CropTransform:
        """The network's window on ``box`` grown by ``expand`` (at least ``min_window``): the
        one rule for every window after the first look."""
        return CropTransform.around(box, self.image_shape, self.settings.input_size, expand,
                                    min_side=self.settings.window_min)

    def _look(self, t: CropTransform, clicks: Sequence[Click], timings: dict[str, float],
              prev_crop: np.ndarray | None = None) -> Answer:
        """One network pass on window ``t`` with the pass rules, then the graph cut;
        ``prev_crop``: the previous mask cut to the window."""
        s = self.settings
        tic = time.perf_counter()
        rgb_crop = self._pixels(t)
        rgb = t.image(rgb_crop)
        h, w = t.out_shape
        net_clicks = [c for c in t.clicks(clicks)
                      if -0.5 <= c.row < h - 0.5 and -0.5 <= c.col < w - 0.5]
        dist = distance_maps(t.out_shape, net_clicks)
        x = network_input(rgb, dist, self.model.image_mean, self.model.image_std)
        if self.model.config.prev_mask:
            x = torch.cat([x, t.mask(prev_crop)[None, None]], dim=1)
        x = x.to(self.device, memory_format=torch.channels_last)
        boxes = propose_rois(net_clicks, t.out_shape, s.n_roi) if net_clicks else None
        add_timing(timings, "preprocess", time.perf_counter() - tic)
        view = View(t, net_clicks, dist, shows_small_object(t, s.small_object_from))
        flip = any(r.flips(view) for r in self.pass_rules if r.stage == "network")
        logits = window_logits(self.model, x, boxes, flip, timings)
        tic = time.perf_counter()
        with torch.inference_mode():
            for rule in self.pass_rules:
                if rule.stage == "logits":
                    logits = rule.logits(logits, view)
            probs = torch.sigmoid(logits)
            for rule in self.pass_rules:
                if rule.stage == "probabilities":
                    probs = rule.probabilities(probs, view)
            probs_crop = t.probabilities_back(probs)
        add_timing(timings, "fusion", time.perf_counter() - tic)
        tic = time.perf_counter()
        if s.use_graphcut:
            crop_clicks = [t.in_crop(c) for c in clicks if t.contains(c)]
            mask_crop = graph_cut(probs_crop, rgb_crop, crop_clicks,
                                  seed_params(s.graphcut_params, t.magnification))
        else:
            mask_crop = probs_crop >= 0.5
        add_timing(timings, "graphcut", time.perf_counter() - tic)
        return Answer(t, probs_crop, mask_crop)

    def _assemble(self, answer: Answer, timings: dict[str, float]) -> Prediction:
        """The answer back in image coordinates (its window only for a huge image)."""
        tic = time.perf_counter()
        t, probs_crop, mask_crop = answer.t, answer.probs, answer.mask
        h, w = self.image_shape
        if self._norm is not None and self._norm.is_large:
            pred = Prediction(probs_crop.astype(np.float32), mask_crop, timings,
                              window=(t.r0, t.c0, t.r1, t.c1))
        else:
            probs = np.zeros((h, w), np.float32)
            mask = np.zeros((h, w), bool)
            probs[t.r0:t.r1, t.c0:t.c1] = probs_crop
            mask[t.r0:t.r1, t.c0:t.c1] = mask_crop
            pred = Prediction(probs, mask, timings, window=(t.r0, t.c0, t.r1, t.c1))
        add_timing(timings, "assemble", time.perf_counter() - tic)
        timings["total"] = sum(v for k, v in timings.items() if k != "total")
        return pred


__all__ = ["DEFAULT_WEIGHTS", "InteractiveSegmenter", "Prediction", "Predictor",
           "PredictorSettings", "default_checkpoint", "fit_shape", "resolve_device"]
