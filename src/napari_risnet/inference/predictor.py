"""The Predictor: ``set_image`` once, ``predict(clicks, prev_mask)`` at every click.

Each click runs the network on a zoom-in window (around the clicks and the previous mask),
resized so its long side is ``input_size``: the cost of a click does not grow with the image.
On the first click of an object the window is the image (or a ``first_window`` around the click
on a huge image); when the object found is small in that window, a second pass zooms in on it.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np
import torch

from napari_risnet.clicks import Click, distance_maps, propose_rois, validate_clicks
from napari_risnet.inference.click_effects import click_prior, local_threshold, seed_params
from napari_risnet.inference.focus import boundary_band, cut, focus_window, paste
from napari_risnet.inference.graphcut import GraphCutParams, graph_cut
from napari_risnet.inference.merge import progressive_merge
from napari_risnet.inference.network_pass import add_timing, window_logits
from napari_risnet.inference.prediction import Prediction
from napari_risnet.inference.preprocess import (CropTransform, ImageNormalizer, fit_shape,
                                                network_input)
from napari_risnet.inference.previous_mask import mask_box, prev_in_window
from napari_risnet.inference.settings import recorded_settings
from napari_risnet.inference.spill import limit_spill
from napari_risnet.model.checkpoint import load_checkpoint
from napari_risnet.model.risnet import RISNet

#: where the predictor averages over the window and its mirror image
FLIP_AVERAGE = ("none", "magnified", "all")
#: the zoom-in window: the box of the clicks and the previous mask, grown this much
EXPAND = 1.6
#: progressive merge only where the window is shown at most this magnified
MERGE_MAX_SCALE = 1.0
DEFAULT_WEIGHTS = Path(__file__).resolve().parent.parent / "weights" / "risnet_default.pt"


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
    if not DEFAULT_WEIGHTS.is_file():
        raise FileNotFoundError(f"no bundled default model at {DEFAULT_WEIGHTS}: pass a "
                                f"checkpoint (--checkpoint FILE) or train one with "
                                f"`napari-risnet train`")
    return DEFAULT_WEIGHTS


class Predictor:
    """RIS-Net predictor (network + fusion + optional graph cut).

    Args:
        model: a RISNet; or None with ``checkpoint``.
        checkpoint: path to a checkpoint, "default" for the bundled model.
        device: "auto", "cpu", "cuda", ...
        use_graphcut: refine the fused probabilities with a graph cut.
        input_size: long side of the network input in pixels.
        n_roi: number of local ROIs (paper: 5).
        first_window: on images larger than this, the first click looks at a window of this size
            around it instead of the whole image.
        refine_ratio: after a first click whose object spans less than this fraction of the
            window, predict again zoomed in on it.
        expand: a window is the box of the clicks and the previous mask grown this much.
        refine_expand: the first click's zoom-in window is the box of the object its first look
            found grown this much (None: ``expand``). 2.5 rather than 1.6: the first look sees
            the whole image reduced (up to 4x), so the box it finds is rough, and with more
            context around it the second look finds all of the object (held-out training
            nuclei shown 4x larger: NoC@85 / 90 -1.00 / -0.92, about 6 / 4 standard errors;
            held-out COCO and nuclei at their own size within noise; COCO IoU after the first
            click 0.50 -> 0.54).
        refine_max_growth: when ``refine_expand`` is wider than ``expand``, the tighter window
            is looked at too and wins where the wide answer is more than this many times larger
            (a whole cell around the clicked nucleus, found only with the wider context; held-out
            brightfield nuclei went from 1-7 clicks to 20 without this check).
        click_sigma: width (fraction of the network input) of a Gaussian that pulls the
            probabilities towards each click's sign; 0 disables it. A click must change the
            result where it lands: an under-trained network may answer it too softly, and the
            robot (or user) would then click the same spot again and again.
        click_sigma_magnified: the same width on a magnified window (a small object seen
            enlarged, where errors are a pixel or two thin): the wide prior flipped pixels
            across the boundary there (held-out training objects, 60 per folder: hippocampus
            NoC@85 / 90 11.60 / 17.33 -> 9.47 / 13.03, nuclei 4.90 / 8.67 -> 4.92 / 7.37 with
            0.01 instead of 0.02).
        min_window: smallest zoom-in window side in image pixels (default ``input_size // 4``,
            at most 4x magnification); what the network sees as context around a tiny object.
        merge_from: from this many clicks on (with a previous mask), a click changes only the
            connected region of change under it (FocalClick's progressive merge,
            :mod:`napari_risnet.inference.merge`); 0 disables it. Not on magnified windows
            (small objects): there the network sees the whole object sharply, and its fresh
            answer was better on the held-out training objects.
        merge_min_elsewhere: merge only when the click's answer changes more than this fraction
            of the previous mask's area away from the click's own edit (0: always); a smaller
            change elsewhere is a refinement and is kept, a larger one is a click undoing what
            earlier clicks had settled (:func:`~napari_risnet.inference.merge.progressive_merge`).
        merge_always_from: from this many clicks on, the merge applies without that guard: a
            late click changes only its own edit. By then the object is mostly settled and a
            change elsewhere is more often drift than refinement (held-out COCO: mean IoU after
            20 clicks +0.008 +- 0.002 with 7, early clicks unchanged; model card, session 11);
            0 keeps the guard at every click.
        focus_from: from this many clicks on (with a previous mask), a second pass looks at a
            square around the latest click, ``focus_ratio`` of the window's long side, at up to
            the image's own resolution, and its answer replaces the coarse one there within
            ``focus_band`` coarse network pixels of the coarse boundary (FocalClick's focus
            crop, :mod:`napari_risnet.inference.focus`); 0 disables it.
        magnified_bias: a logit added to the network's answer on a magnified window (an object
            seen enlarged) before the click prior and the graph cut: there the answer is
            systematically about half a pixel too small (held-out training nuclei: after the
            first click 80 % of the objects have more missed than spilled pixels); 0 = none.
            0.5 chosen on held-out objects of the three training folders (model card).
        magnified_bias_from: the bias acts on windows magnified more than 1x and at least this
            much. 1 (every magnified window): held-out nuclei shown 4x larger, whose windows are
            magnified 1-2x, need it as much as small ones (NoC@85 / 90 -0.57 / -0.80, about 5.7 /
            3.8 standard errors, against a floor of 2), and with the local click threshold it no
            longer runs away on mid-sized natural objects (held-out COCO unchanged; the floor of 2
            had been chosen against such a runaway before the threshold existed).
        small_object_from: a window magnified at least this much (and more than 1x) shows a
            small object, whose errors are a pixel or two thin: it gets the narrower
            ``click_threshold_small``.
        click_threshold: width (fraction of the network input) of the local threshold shift
            around each click the network answered wrongly
            (:func:`~napari_risnet.inference.click_effects.local_threshold`), on windows that
            do not show a small object; 0 disables it. 0.05 chosen on held-out training objects
            (COCO NoC@85 / 90 -1.2 / -1.1 clicks, about 2.7 standard errors; model card).
        click_threshold_small: the same width on small-object windows, narrower since their
            errors are a pixel or two thin (held-out nuclei NoC@85 / 90 -0.57 / -0.37 with 0.02,
            about 2 standard errors; 0.03 lost NoC@90 again, 0.05 cost hippocampus a click).
        spill_ratio: from the second click on, a click's own edit (the connected change under
            it) covering more than this many d^2 pixels, d the click's distance to the previous
            mask's boundary, is cut back to a disc of ``spill_radius`` x d around the click
            (:mod:`napari_risnet.inference.spill`): a positive click a few pixels into a missed
            part must not flood the object next to it; 0 disables it. Not on windows that show
            a small object (``small_object_from``): there d is a pixel or two and a rightful
            edit along the boundary covers many d^2. 20 with radius 8 chosen on held-out
            training objects: COCO NoC@90 -0.36 +- 0.17; nuclei shown 4x larger within noise
            (+0.08 +- 0.08), where radius 4 cost them 0.18 +- 0.10 (model card, session 10).
        spill_radius: the disc's radius in units of d.
        flip_average: average the network's logits over the window and its mirror image (one
            batch of two: about twice the network time per pass) on "all" windows, on
            "magnified" ones only (the default: small objects, where it helped the held-out
            nuclei and hippocampus slices; on large natural objects it cost NoC@90), or "none".
    """

    def __init__(self, model: RISNet | None = None, checkpoint: str | Path | None = None,
                 device: str | torch.device = "auto", use_graphcut: bool = True,
                 input_size: int = 256, n_roi: int = 5, first_window: int = 1024,
                 refine_ratio: float = 0.35, expand: float = EXPAND,
                 refine_expand: float | None = 2.5, refine_max_growth: float = 3.0,
                 click_sigma: float = 0.02,
                 click_sigma_magnified: float = 0.01,
                 min_window: int | None = None, graphcut_params: GraphCutParams | None = None,
                 threads: int | None = None, merge_from: int = 2, focus_from: int = 2,
                 focus_ratio: float = 0.4, focus_band: float = 3.0,
                 magnified_bias: float = 0.5, magnified_bias_from: float = 1.0,
                 small_object_from: float = 2.0,
                 flip_average: str = "magnified",
                 merge_min_elsewhere: float = 0.1, click_threshold: float = 0.05,
                 click_threshold_small: float = 0.02, spill_ratio: float = 20.0,
                 spill_radius: float = 8.0, merge_always_from: int = 7) -> None:
        self.device = resolve_device(device)
        if model is None:
            path = default_checkpoint() if checkpoint in (None, "default") else Path(checkpoint)
            model, self.meta = load_checkpoint(path, map_location=self.device)
            self.checkpoint = path
        else:
            self.meta, self.checkpoint = {}, None
        if threads:
            torch.set_num_threads(threads)
        # channels_last: ~1.6x faster depthwise convolutions on CPU
        self.model = model.to(self.device, memory_format=torch.channels_last).eval()
        self.use_graphcut = use_graphcut
        self.input_size = int(input_size)
        self.n_roi = n_roi
        self.first_window = first_window
        self.refine_ratio = refine_ratio
        self.click_sigma = click_sigma
        self.click_sigma_magnified = click_sigma_magnified
        if not expand >= 1 or not (refine_expand is None or refine_expand >= 1):
            raise ValueError(f"expand and refine_expand must be >= 1 (how much a window grows "
                             f"around its box), got {expand}, {refine_expand}")
        self.expand = float(expand)
        self.refine_expand = self.expand if refine_expand is None else float(refine_expand)
        if not refine_max_growth >= 1:
            raise ValueError(f"refine_max_growth must be >= 1, got {refine_max_growth}")
        self.refine_max_growth = float(refine_max_growth)
        self.min_window = max(16, input_size // 4) if min_window is None else int(min_window)
        self.graphcut_params = graphcut_params or GraphCutParams()
        if merge_from < 0:
            raise ValueError(f"merge_from must be >= 0 (0 = off), got {merge_from}")
        self.merge_from = int(merge_from)
        if not merge_min_elsewhere >= 0:
            raise ValueError(f"merge_min_elsewhere must be >= 0 (0 = always merge), got "
                             f"{merge_min_elsewhere}")
        self.merge_min_elsewhere = float(merge_min_elsewhere)
        if merge_always_from < 0:
            raise ValueError(f"merge_always_from must be >= 0 (0 = the guard at every click), "
                             f"got {merge_always_from}")
        self.merge_always_from = int(merge_always_from)
        if focus_from < 0 or not 0 < focus_ratio <= 1 or focus_band <= 0:
            raise ValueError(f"focus_from must be >= 0 (0 = off), focus_ratio in (0, 1] and "
                             f"focus_band > 0, got {focus_from}, {focus_ratio}, {focus_band}")
        self.focus_from, self.focus_ratio = int(focus_from), float(focus_ratio)
        self.focus_band = float(focus_band)
        if not np.isfinite(magnified_bias):
            raise ValueError(f"magnified_bias must be a finite logit, got {magnified_bias}")
        self.magnified_bias = float(magnified_bias)
        if not magnified_bias_from >= 1 or not small_object_from >= 1:
            raise ValueError(f"magnified_bias_from and small_object_from must be magnifications "
                             f">= 1, got {magnified_bias_from}, {small_object_from}")
        self.magnified_bias_from = float(magnified_bias_from)
        self.small_object_from = float(small_object_from)
        if flip_average not in FLIP_AVERAGE:
            raise ValueError(f"flip_average must be one of {FLIP_AVERAGE}, got {flip_average!r}")
        self.flip_average = flip_average
        if not click_threshold >= 0 or not click_threshold_small >= 0:
            raise ValueError(f"click_threshold and click_threshold_small must be >= 0 (0 = off), "
                             f"got {click_threshold}, {click_threshold_small}")
        self.click_threshold = float(click_threshold)
        self.click_threshold_small = float(click_threshold_small)
        if not spill_ratio >= 0 or not spill_radius > 0:
            raise ValueError(f"spill_ratio must be >= 0 (0 = off) and spill_radius > 0, got "
                             f"{spill_ratio}, {spill_radius}")
        self.spill_ratio, self.spill_radius = float(spill_ratio), float(spill_radius)
        self._norm: ImageNormalizer | None = None
        self._cache: np.ndarray | None = None

    def recorded_settings(self) -> dict[str, Any]:
        """What a project records so that ``replay`` rebuilds this predictor
        (:mod:`napari_risnet.inference.settings`)."""
        return recorded_settings(self)

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

    def _window(self, t: CropTransform) -> np.ndarray:
        if self._cache is not None:
            return self._cache[t.r0:t.r1, t.c0:t.c1]
        return self._norm.window(t.r0, t.c0, t.r1, t.c1)

    # -- prediction ----------------------------------------------------------------------------
    def predict(self, clicks: Sequence[Click],
                prev_mask: "np.ndarray | Prediction | None" = None) -> Prediction:
        """Segment the object the clicks describe.

        Args:
            clicks: all clicks on this object so far, in image (row, col).
            prev_mask: the previous (H, W) mask of this object (or the previous Prediction,
                which is all a huge lazy image can afford), used to place the zoom-in window and,
                for an architecture-v2 model, as its previous-mask input (cut to the window).
        Returns:
            Prediction over the whole image (over its ``window`` only for huge images).
        """
        shape = self.image_shape
        clicks = validate_clicks(clicks, shape)
        prev_box = mask_box(prev_mask, shape)
        timings: dict[str, float] = {}
        t = self._choose_window(clicks, prev_box)
        prev_crop = prev_in_window(prev_mask, t)
        probs_crop, mask_crop = self._predict_window(t, clicks, timings, prev_crop)
        if self.focus_from and prev_box is not None and len(clicks) >= self.focus_from:
            probs_crop, mask_crop = self._focus(t, clicks, timings, probs_crop, mask_crop)
        if (self.merge_from and prev_box is not None and len(clicks) >= self.merge_from
                and t.magnification <= MERGE_MAX_SCALE):
            late = self.merge_always_from and len(clicks) >= self.merge_always_from
            mask_crop = progressive_merge(mask_crop, prev_crop, t.in_crop(clicks[-1]),
                                          0.0 if late else self.merge_min_elsewhere)
        if (self.spill_ratio and prev_box is not None and len(clicks) >= 2
                and not self._shows_small_object(t)):
            mask_crop = limit_spill(mask_crop, prev_crop, t.in_crop(clicks[-1]),
                                    self.spill_ratio, self.spill_radius)
        if prev_box is None and len(clicks) == 1:
            box = self._refine_box(mask_crop, t, clicks[0])
            if box is not None:
                t, probs_crop, mask_crop = self._zoom_in(box, clicks, timings,
                                                         (t, probs_crop, mask_crop))
        return self._assemble(t, probs_crop, mask_crop, timings)

    def _zoom_in(self, box: tuple[float, float, float, float], clicks: Sequence[Click],
                 timings: dict[str, float], first: tuple[CropTransform, np.ndarray, np.ndarray]
                 ) -> tuple[CropTransform, np.ndarray, np.ndarray]:
        """The first click's second look, at the object the first look found (``box``).

        A window ``refine_expand`` times the box shows the object with context; when that is
        wider than ``expand``, the tighter window is looked at too and wins where the wide
        answer is more than ``refine_max_growth`` times larger: the two then disagree on which
        of two nested objects the click meant (a nucleus or the cell around it), and one click
        in the smaller one reads literally as the smaller one (positive clicks grow it easily;
        negative clicks did not shrink a whole cell back to its nucleus).
        """
        def look(t: CropTransform) -> tuple[CropTransform, np.ndarray, np.ndarray]:
            if t == first[0]:  # a small image may already be fully zoomed in
                return first
            return (t, *self._predict_window(t, clicks, timings))

        wide_t = self._window_around(box, self.refine_expand)
        tight_t = self._window_around(box, self.expand)
        wide = look(wide_t)
        if self.refine_expand <= self.expand or tight_t == wide_t:
            return wide
        tight = look(tight_t)
        if np.count_nonzero(wide[2]) > self.refine_max_growth * max(np.count_nonzero(tight[2]), 1):
            return tight
        return wide

    def _focus(self, t: CropTransform, clicks: Sequence[Click], timings: dict[str, float],
               probs_crop: np.ndarray, mask_crop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The coarse answer with a sharper look around the latest click pasted in."""
        focus = focus_window(clicks[-1], t, self.input_size, self.focus_ratio)
        if focus is None:
            return probs_crop, mask_crop
        coarse = cut(mask_crop, t, focus)
        probs_f, mask_f = self._predict_window(focus, clicks, timings, coarse)
        band = boundary_band(coarse, self.focus_band / t.magnification)
        return (paste(probs_crop, probs_f, t, focus, band),
                paste(mask_crop, mask_f, t, focus, band))

    def _refine_box(self, mask_crop: np.ndarray, t: CropTransform, click: Click
                    ) -> tuple[float, float, float, float] | None:
        """Where to zoom in after a first look: the object found when it is small in the
        window, the click's neighbourhood when nothing was found (an object too small to be
        seen at this scale); None when the object is large enough already."""
        if not mask_crop.any():
            return (click.row, click.col, click.row + 1, click.col + 1)
        rows = np.flatnonzero(mask_crop.any(axis=1))
        cols = np.flatnonzero(mask_crop.any(axis=0))
        extent = max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1) / max(t.crop_shape)
        if extent >= self.refine_ratio:
            return None
        return (rows[0] + t.r0, cols[0] + t.c0, rows[-1] + t.r0 + 1, cols[-1] + t.c0 + 1)

    def _choose_window(self, clicks: Sequence[Click],
                       prev_box: tuple[int, int, int, int] | None) -> CropTransform:
        h, w = self.image_shape
        if prev_box is None and len(clicks) == 1:
            c = clicks[0]
            side = max(h, w) if max(h, w) <= self.first_window else self.first_window
            box = (c.row - side / 2, c.col - side / 2, c.row + side / 2, c.col + side / 2)
            return CropTransform.around(box, (h, w), self.input_size, expand=1.0)
        rows = [c.row for c in clicks]
        cols = [c.col for c in clicks]
        if prev_box is not None:
            rows += [prev_box[0], prev_box[2]]
            cols += [prev_box[1], prev_box[3]]
        return self._window_around((min(rows), min(cols), max(rows) + 1, max(cols) + 1),
                                   self.expand)

    def _window_around(self, box: tuple[float, float, float, float], expand: float
                       ) -> CropTransform:
        """The network's window on ``box`` grown by ``expand`` (at least ``min_window``): the
        one rule for every window after the first look."""
        return CropTransform.around(box, self.image_shape, self.input_size, expand,
                                    min_side=self.min_window)

    def _shows_small_object(self, t: CropTransform) -> bool:
        """A window magnified at least ``small_object_from`` (and more than 1x) shows a small
        object, whose errors are a pixel or two thin."""
        return t.magnification > 1 and t.magnification >= self.small_object_from

    def _predict_window(self, t: CropTransform, clicks: Sequence[Click],
                        timings: dict[str, float], prev_crop: np.ndarray | None = None
                        ) -> tuple[np.ndarray, np.ndarray]:
        """Network (+ graph cut) on window ``t``; ``prev_crop``: the previous mask cut to it."""
        tic = time.perf_counter()
        rgb_crop = self._window(t)
        rgb = t.image(rgb_crop)
        net_clicks = [c for c in t.clicks(clicks)
                      if -0.5 <= c.row < t.out_shape[0] - 0.5 and -0.5 <= c.col < t.out_shape[1] - 0.5]
        dist = distance_maps(t.out_shape, net_clicks)
        x = network_input(rgb, dist, self.model.image_mean, self.model.image_std)
        if self.model.config.prev_mask:
            x = torch.cat([x, t.mask(prev_crop)[None, None]], dim=1)
        x = x.to(self.device, memory_format=torch.channels_last)
        boxes = propose_rois(net_clicks, t.out_shape, self.n_roi) if net_clicks else None
        add_timing(timings, "preprocess", time.perf_counter() - tic)
        magnified = t.magnification > 1  # an object seen enlarged
        flip = self.flip_average == "all" or (self.flip_average == "magnified" and magnified)
        logits = window_logits(self.model, x, boxes, flip, timings)
        tic = time.perf_counter()
        with torch.inference_mode():
            small = self._shows_small_object(t)
            biased = magnified and t.magnification >= self.magnified_bias_from
            if biased and self.magnified_bias:
                logits = logits + self.magnified_bias
            width = self.click_threshold_small if small else self.click_threshold
            if width > 0:
                logits = local_threshold(logits, net_clicks, width * max(t.out_shape))
            probs = torch.sigmoid(logits)
            sigma = self.click_sigma_magnified if magnified else self.click_sigma
            if sigma > 0:
                probs = click_prior(probs, torch.from_numpy(dist).to(probs.device),
                                    sigma * max(t.out_shape))
            probs_crop = t.probabilities_back(probs)
        add_timing(timings, "fusion", time.perf_counter() - tic)
        tic = time.perf_counter()
        if self.use_graphcut:
            crop_clicks = [t.in_crop(c) for c in clicks if t.contains(c)]
            mask_crop = graph_cut(probs_crop, rgb_crop, crop_clicks,
                                  seed_params(self.graphcut_params, t.magnification))
        else:
            mask_crop = probs_crop >= 0.5
        add_timing(timings, "graphcut", time.perf_counter() - tic)
        return probs_crop, mask_crop

    def _assemble(self, t: CropTransform, probs_crop: np.ndarray, mask_crop: np.ndarray,
                  timings: dict[str, float]) -> Prediction:
        tic = time.perf_counter()
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
           "default_checkpoint", "fit_shape", "resolve_device"]
