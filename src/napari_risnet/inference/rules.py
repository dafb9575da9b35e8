"""The answer rules: what the predictor does to the network's answer, one step object each.

A click runs as: window -> network pass -> the pass rules (on the logits and probabilities of
every pass) -> graph cut -> the click rules (on the click's answer, which may look again) ->
back to image coordinates. ``build_rules`` turns a :class:`PredictorSettings` into the two lists;
a rule that its settings switch off (or that ``rules_off`` names) is simply not in them, which
is all an ablation needs. The rule names are ``napari_risnet.inference.settings.RULES``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar, Sequence

import numpy as np
import torch

from napari_risnet.clicks import Click
from napari_risnet.inference.click_effects import click_prior, local_threshold
from napari_risnet.inference.focus import boundary_band, cut, focus_window, paste
from napari_risnet.inference.merge import progressive_merge
from napari_risnet.inference.preprocess import CropTransform
from napari_risnet.inference.settings import PredictorSettings
from napari_risnet.inference.spill import limit_spill

#: progressive merge only where the window is shown at most this magnified
MERGE_MAX_SCALE = 1.0


@dataclass(frozen=True)
class View:
    """One network pass's window as the pass rules see it."""

    t: CropTransform
    #: clicks inside the window, in network pixels
    net_clicks: Sequence[Click]
    #: (2, H, W) distances to the nearest positive / negative click, network pixels
    dist: np.ndarray
    #: the window shows a small object (magnified at least ``small_object_from``, above 1x)
    small: bool

    @property
    def magnified(self) -> bool:
        """An object seen enlarged."""
        return self.t.magnification > 1


@dataclass(frozen=True)
class Answer:
    """A click's answer on a window: its transform, probabilities and mask (crop frame)."""

    t: CropTransform
    probs: np.ndarray
    mask: np.ndarray


#: one more look: (window, previous mask cut to it or None) -> the answer there
Look = Callable[[CropTransform, "np.ndarray | None"], Answer]


@dataclass(frozen=True)
class ClickState:
    """What the click rules know about the click being answered."""

    clicks: Sequence[Click]
    #: the previous mask's box in image pixels (None: the object's first prediction)
    prev_box: tuple[int, int, int, int] | None
    #: the previous mask cut to the first window (None without one)
    prev_crop: np.ndarray | None
    look: Look
    #: the network's window on a box grown by a factor (``Windows.around``)
    around: Callable[[tuple[float, float, float, float], float], CropTransform]

    @property
    def n(self) -> int:
        return len(self.clicks)

    @property
    def latest(self) -> Click:
        return self.clicks[-1]


# -- pass rules: every network pass ------------------------------------------------------------
@dataclass(frozen=True)
class FlipAveraging:
    """Average the logits with the mirror image's ("all" windows, or "magnified" ones)."""

    name: ClassVar[str] = "flip_averaging"
    stage: ClassVar[str] = "network"
    mode: str

    def flips(self, view: View) -> bool:
        return self.mode == "all" or (self.mode == "magnified" and view.magnified)


@dataclass(frozen=True)
class MagnifiedBias:
    """A logit added on magnified windows, whose objects the network answers too small."""

    name: ClassVar[str] = "magnified_bias"
    stage: ClassVar[str] = "logits"
    bias: float
    from_magnification: float

    def logits(self, logits: torch.Tensor, view: View) -> torch.Tensor:
        if view.magnified and view.t.magnification >= self.from_magnification:
            return logits + self.bias
        return logits


@dataclass(frozen=True)
class ClickThreshold:
    """The decision threshold shifted around each click the network answered wrongly
    (:func:`~napari_risnet.inference.click_effects.local_threshold`), narrower on windows that
    show a small object."""

    name: ClassVar[str] = "click_threshold"
    stage: ClassVar[str] = "logits"
    width: float
    width_small: float

    def logits(self, logits: torch.Tensor, view: View) -> torch.Tensor:
        width = self.width_small if view.small else self.width
        if width > 0:
            return local_threshold(logits, view.net_clicks, width * max(view.t.out_shape))
        return logits


@dataclass(frozen=True)
class ClickPrior:
    """Probabilities pulled towards each click's sign by a Gaussian (narrower on magnified
    windows): a click changes the result where it lands."""

    name: ClassVar[str] = "click_prior"
    stage: ClassVar[str] = "probabilities"
    sigma: float
    sigma_magnified: float

    def probabilities(self, probs: torch.Tensor, view: View) -> torch.Tensor:
        sigma = self.sigma_magnified if view.magnified else self.sigma
        if sigma > 0:
            return click_prior(probs, torch.from_numpy(view.dist).to(probs.device),
                               sigma * max(view.t.out_shape))
        return probs


# -- click rules: the click's answer -----------------------------------------------------------
@dataclass(frozen=True)
class FocusPass:
    """A sharper second look around the latest click, pasted in near the coarse boundary
    (:mod:`napari_risnet.inference.focus`)."""

    name: ClassVar[str] = "focus_pass"
    from_click: int
    ratio: float
    band: float
    input_size: int

    def __call__(self, answer: Answer, click: ClickState) -> Answer:
        if click.prev_box is None or click.n < self.from_click:
            return answer
        t = answer.t
        focus = focus_window(click.latest, t, self.input_size, self.ratio)
        if focus is None:
            return answer
        coarse = cut(answer.mask, t, focus)
        sharp = click.look(focus, coarse)
        band = boundary_band(coarse, self.band / t.magnification)
        return Answer(t, paste(answer.probs, sharp.probs, t, focus, band),
                      paste(answer.mask, sharp.mask, t, focus, band))


@dataclass(frozen=True)
class GuardedMerge:
    """From ``from_click`` on, a click changes only the connected region of change under it,
    unless its answer changes little elsewhere (a refinement, kept)
    (:mod:`napari_risnet.inference.merge`). Unmagnified windows only; from ``until`` on the
    late merge takes over."""

    name: ClassVar[str] = "guarded_merge"
    from_click: int
    min_elsewhere: float
    until: int = 0

    def __call__(self, answer: Answer, click: ClickState) -> Answer:
        if (click.prev_box is None or click.n < self.from_click
                or answer.t.magnification > MERGE_MAX_SCALE
                or (self.until and click.n >= self.until)):
            return answer
        return _merged(answer, click, self.min_elsewhere)


@dataclass(frozen=True)
class LateMerge:
    """From ``from_click`` on, the merge applies without its guard: a late click changes only
    its own edit."""

    name: ClassVar[str] = "late_merge"
    from_click: int

    def __call__(self, answer: Answer, click: ClickState) -> Answer:
        if (click.prev_box is None or click.n < self.from_click
                or answer.t.magnification > MERGE_MAX_SCALE):
            return answer
        return _merged(answer, click, 0.0)


def _merged(answer: Answer, click: ClickState, min_elsewhere: float) -> Answer:
    """The answer kept only in the connected change under the latest click (both merges)."""
    return Answer(answer.t, answer.probs,
                  progressive_merge(answer.mask, click.prev_crop,
                                    answer.t.in_crop(click.latest), min_elsewhere))


@dataclass(frozen=True)
class SpillLimit:
    """From the second click on, a click's own edit far larger than the error it points at is
    cut back to a disc around the click (:mod:`napari_risnet.inference.spill`); not on windows
    that show a small object."""

    name: ClassVar[str] = "spill_limit"
    ratio: float
    radius: float
    small_object_from: float

    def __call__(self, answer: Answer, click: ClickState) -> Answer:
        t = answer.t
        if (click.prev_box is None or click.n < 2
                or shows_small_object(t, self.small_object_from)):
            return answer
        return Answer(t, answer.probs, limit_spill(answer.mask, click.prev_crop,
                                                   t.in_crop(click.latest), self.ratio,
                                                   self.radius))


@dataclass(frozen=True)
class FirstZoomIn:
    """The first click's second look, at the object its first look found when that is small
    in the window (or at the click when nothing was found).

    Always a step (it is how a small object gets seen at all); the rule "wider_zoom_in" is its
    wider window. The window is the object's box grown ``expand`` times. With the wider zoom-in
    (``tight_expand`` below ``expand``) the tighter window is looked at too and wins where the
    wide answer is more than ``max_growth`` times larger: the two then disagree on which of
    two nested objects the click meant (a nucleus or the cell around it), and one click in the
    smaller one reads literally as the smaller one.
    """

    name: ClassVar[str] = "first_zoom_in"
    ratio: float
    expand: float
    tight_expand: float
    max_growth: float

    def __call__(self, answer: Answer, click: ClickState) -> Answer:
        if click.prev_box is not None or click.n != 1:
            return answer
        box = self.box(answer, click.latest)
        if box is None:
            return answer

        def look(t: CropTransform) -> Answer:
            if t == answer.t:  # a small image may already be fully zoomed in
                return answer
            return click.look(t, None)

        wide_t = click.around(box, self.expand)
        tight_t = click.around(box, self.tight_expand)
        wide = look(wide_t)
        if self.expand <= self.tight_expand or tight_t == wide_t:
            return wide
        tight = look(tight_t)
        if np.count_nonzero(wide.mask) > self.max_growth * max(np.count_nonzero(tight.mask), 1):
            return tight
        return wide

    def box(self, answer: Answer, click: Click) -> tuple[float, float, float, float] | None:
        """Where to zoom in: the object found when it is small in the window, the click's
        neighbourhood when nothing was found; None when the object is large enough already."""
        mask, t = answer.mask, answer.t
        if not mask.any():
            return (click.row, click.col, click.row + 1, click.col + 1)
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        extent = max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1) / max(t.crop_shape)
        if extent >= self.ratio:
            return None
        return (rows[0] + t.r0, cols[0] + t.c0, rows[-1] + t.r0 + 1, cols[-1] + t.c0 + 1)


def shows_small_object(t: CropTransform, small_object_from: float) -> bool:
    """A window magnified at least ``small_object_from`` (and more than 1x) shows a small
    object, whose errors are a pixel or two thin."""
    return t.magnification > 1 and t.magnification >= small_object_from


def build_rules(s: PredictorSettings) -> tuple[list, list]:
    """The pass rules and the click rules ``s`` asks for, in pipeline order (the first
    click's zoom-in last, always; the wider zoom-in rule chooses its window)."""
    uses = s.uses
    pass_rules: list = []
    if uses("flip_averaging"):
        pass_rules.append(FlipAveraging(s.flip_average))
    if uses("magnified_bias"):
        pass_rules.append(MagnifiedBias(float(s.magnified_bias), float(s.magnified_bias_from)))
    if uses("click_threshold"):
        pass_rules.append(ClickThreshold(float(s.click_threshold),
                                         float(s.click_threshold_small)))
    if uses("click_prior"):
        pass_rules.append(ClickPrior(float(s.click_sigma), float(s.click_sigma_magnified)))
    click_rules: list = []
    if uses("focus_pass"):
        click_rules.append(FocusPass(int(s.focus_from), float(s.focus_ratio),
                                     float(s.focus_band), int(s.input_size)))
    late = uses("late_merge")
    if uses("guarded_merge"):
        click_rules.append(GuardedMerge(int(s.merge_from), float(s.merge_min_elsewhere),
                                        int(s.merge_always_from) if late else 0))
    if late:
        click_rules.append(LateMerge(max(int(s.merge_from), int(s.merge_always_from))))
    if uses("spill_limit"):
        click_rules.append(SpillLimit(float(s.spill_ratio), float(s.spill_radius),
                                      float(s.small_object_from)))
    wider = "wider_zoom_in" not in s.rules_off
    click_rules.append(FirstZoomIn(float(s.refine_ratio),
                                   s.zoom_expand if wider else float(s.expand),
                                   float(s.expand), float(s.refine_max_growth)))
    return pass_rules, click_rules


__all__ = ["Answer", "ClickPrior", "ClickThreshold", "ClickState", "FirstZoomIn", "FlipAveraging",
           "FocusPass", "GuardedMerge", "LateMerge", "MERGE_MAX_SCALE", "MagnifiedBias",
           "SpillLimit", "View", "build_rules", "shows_small_object"]
