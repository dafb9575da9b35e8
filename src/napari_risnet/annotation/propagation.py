"""Stack propagation: carry a committed object from slice to slice along a leading axis.

Each new slice is predicted from its neighbour: clicks derived from the neighbour's mask (a
positive click at its most interior point, one more on an elongated part, negative clicks in a
ring around it) with that mask as ``prev_mask``. A ``StopRule`` ends a direction where the
object ends: it vanishes, its area jumps, it no longer overlaps the neighbour, the model is
unsure of it, or it is no longer brighter (darker) than its surroundings the way it was on the
slice the user clicked -- the dim end of a nucleus must stop, not grow into a blob.

Slices the user clicked on are *fixed*: propagation runs from each of them until it meets the
next one, and a correction re-runs the neighbours of the corrected slice only.

A mixin of ``AnnotationSession`` (it uses the session's prediction, painting and history).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np
from scipy import ndimage

from napari_risnet.annotation.history import Patch
from napari_risnet.annotation.records import ObjectRecord, SliceKey, SliceRecord
from napari_risnet.clicks import Click
from napari_risnet.robot import iou  # the evaluation's IoU, also the propagation stop rule

ProgressFn = Callable[[int, int, str], None]
StopFn = Callable[[], bool]


@dataclass(frozen=True)
class StopRule:
    """When a propagated slice is no longer the object (thresholds chosen on the training
    volumes of msd_hippocampus with benchmarks/stack_tuning.py).

    Args:
        min_area: fewer pixels: the object vanished.
        min_iou: IoU with the neighbouring slice's mask below this: it jumped elsewhere.
        max_area_ratio: area changed by more than this factor from the neighbour.
        min_confidence: mean model probability inside the mask below this: the model is unsure
            (skipped for segmenters whose ``calibrated`` attribute is False, e.g. the graph
            cut baseline, whose probabilities are colour posteriors).
        min_contrast: the object's contrast against a ring around it, as a fraction of that
            contrast on its brightest clicked slice, below this: the object fades into its
            surroundings (or the mask spread into background). 0 disables it.
        min_brightness: the object's mean intensity above the slice's dark level, as a fraction
            of that on its brightest clicked slice, below this: the object fades out. 0
            disables it.
        hold_contrast: not a stop but a brake: where the relative contrast falls below this,
            the mask may not grow beyond the neighbour's -- a fading end keeps or shrinks its
            outline instead of spreading into the background. Off by default (it cost 3D
            Dice on the hippocampus training volumes); 0.7 suits fluorescence nuclei whose
            dim ends the model turns into blobs.
    """

    min_area: int = 4
    min_iou: float = 0.25
    max_area_ratio: float = 2.5
    min_confidence: float = 0.0
    min_contrast: float = 0.0
    min_brightness: float = 0.0
    hold_contrast: float = 0.0

    def __post_init__(self) -> None:
        if self.min_area < 0 or not 0 <= self.min_iou <= 1 or self.max_area_ratio < 1 \
                or not 0 <= self.min_confidence <= 1 or self.min_contrast < 0 \
                or self.min_brightness < 0:
            raise ValueError(f"invalid stop rule {self}: need min_area >= 0, min_iou and "
                             f"min_confidence in [0, 1], max_area_ratio >= 1, min_contrast "
                             f"and min_brightness >= 0")

    @property
    def uses_image(self) -> bool:
        return self.min_contrast > 0 or self.min_brightness > 0 or self.hold_contrast > 0

    def measure(self, mask: np.ndarray, prev: np.ndarray, probabilities: np.ndarray | None,
                contrast: float | None = None, brightness: float | None = None
                ) -> dict[str, Any]:
        """What the rule looks at: area, area ratio and IoU to the neighbour, confidence (mean
        probability inside the mask), and ``contrast`` / ``brightness`` relative to the start
        slice (computed by the caller from the image; None = unknown)."""
        area, prev_area = int(mask.sum()), int(prev.sum())
        return {
            "area": area,
            "area_ratio": max(area, prev_area) / max(1, min(area, prev_area)),
            "iou": iou(mask, prev) if area else 0.0,
            "confidence": (float(probabilities[mask].mean())
                           if probabilities is not None and area else None),
            "contrast": contrast,
            "brightness": brightness,
        }

    def reason(self, m: dict[str, Any]) -> str | None:
        """Why the measured slice ends the object; None = go on."""
        if m["area"] < max(1, self.min_area):
            return "the object vanished"
        if m["area_ratio"] > self.max_area_ratio:
            return f"the area changed by a factor {m['area_ratio']:.1f}"
        if m["iou"] < self.min_iou:
            return f"the overlap with the neighbouring slice fell to IoU {m['iou']:.2f}"
        if m["confidence"] is not None and m["confidence"] < self.min_confidence:
            return f"the model's confidence fell to {m['confidence']:.2f}"
        if m.get("contrast") is not None and m["contrast"] < self.min_contrast:
            return f"the object faded: {m['contrast']:.0%} of its contrast where it started"
        if m.get("brightness") is not None and m["brightness"] < self.min_brightness:
            return f"the object faded: {m['brightness']:.0%} of its brightness where it started"
        return None

    def check(self, mask: np.ndarray, prev: np.ndarray, probabilities: np.ndarray | None = None,
              contrast: float | None = None, brightness: float | None = None) -> str | None:
        """Why ``mask`` (predicted from the neighbour ``prev``) ends the object; None = go on."""
        return self.reason(self.measure(mask, prev, probabilities, contrast, brightness))


#: The rule ``propagate`` uses unless told otherwise.
DEFAULT_STOP_RULE = StopRule(min_iou=0.4, max_area_ratio=2.5, min_confidence=0.75,
                             min_brightness=0.5)


def object_brightness(grey: np.ndarray, mask: np.ndarray) -> float | None:
    """Mean intensity inside ``mask`` above the slice's dark level (its 2nd percentile)."""
    if not mask.any():
        return None
    return float(grey[mask].mean() - np.percentile(grey, 2))


def object_contrast(grey: np.ndarray, mask: np.ndarray) -> float | None:
    """Mean intensity inside ``mask`` minus the mean in a ring around it (width about a third
    of the object's radius, at least 2 px); None when the ring or the mask is empty."""
    area = int(mask.sum())
    if area == 0:
        return None
    width = max(2, int(round(0.33 * np.sqrt(area / np.pi))))
    box = _box(mask, width + 1)
    m = mask[box]
    ring = ndimage.binary_dilation(m, iterations=width) & ~m
    if not ring.any():
        return None
    g = grey[box]
    return float(g[m].mean() - g[ring].mean())


def derive_clicks(prev: np.ndarray, negatives: bool = True, elongated: bool = True,
                  margin: float = 1.0) -> list[Click]:
    """Clicks for the next slice from a neighbouring mask.

    A positive click at the mask's most interior point; on an elongated mask (``elongated``),
    a second one at the most interior point of the part farther than three radii from the
    first (one click in the middle of a long object says little about its ends). With
    ``negatives``, negative clicks left / right / above / below the mask's centre, ``margin``
    object half-extents beyond its edge (so a moderately larger object still lies inside
    them). Those off the image or on the mask (concave shapes) are dropped. (``margin`` 1.0
    and ``elongated`` were chosen on msd_hippocampus/train: benchmarks/stack_tuning_*.md.)
    """
    dist = ndimage.distance_transform_edt(np.pad(prev, 1))[1:-1, 1:-1]
    r, c = np.unravel_index(int(np.argmax(dist)), dist.shape)
    clicks = [Click(float(r), float(c), True)]
    radius = float(dist[r, c])
    if elongated and radius > 0:
        rr, cc = np.indices(prev.shape, sparse=True)
        far = (rr - r) ** 2 + (cc - c) ** 2 > (3 * radius) ** 2
        d2 = np.where(far, dist, 0)
        if d2.max() >= 0.5 * radius:
            r2, c2 = np.unravel_index(int(np.argmax(d2)), d2.shape)
            clicks.append(Click(float(r2), float(c2), True))
    if not negatives:
        return clicks
    rows, cols = np.nonzero(prev)
    h, w = prev.shape
    half_r = (rows.max() - rows.min() + 1) / 2
    half_c = (cols.max() - cols.min() + 1) / 2
    cr, cc_ = (rows.max() + rows.min()) / 2, (cols.max() + cols.min()) / 2
    for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        nr = cr + dr * ((1 + margin) * half_r + 3)
        nc = cc_ + dc * ((1 + margin) * half_c + 3)
        ir, ic = int(round(nr)), int(round(nc))
        if 0 <= ir < h and 0 <= ic < w and not prev[ir, ic]:
            clicks.append(Click(float(ir), float(ic), False))
    return clicks


@dataclass
class PropagationResult:
    """What ``propagate`` did: slices (re)made, slices dropped because the object ended before
    them, and why it stopped in each direction (+1 / -1 along the axis)."""

    object_id: int
    slices: list[SliceKey] = field(default_factory=list)
    stopped: dict[int, str] = field(default_factory=dict)
    removed: list[SliceKey] = field(default_factory=list)
    cancelled: bool = False
    #: per predicted slice: slice, direction, area, area_ratio, iou, confidence, contrast and
    #: brightness (relative to the brightest clicked slice), reason (None when kept) -- what
    #: the stop rule saw, to explain or tune it
    measures: list[dict[str, Any]] = field(default_factory=list)


class PropagationMixin:
    """``propagate`` for ``AnnotationSession`` (needs its ``_predict_full``, ``_replace``,
    ``_grey``, ``_state``, ``_push``, locks and ``labels``).

    Settings, per session (set by ``_init_propagation``):
        stop_rule: the ``StopRule`` (default ``DEFAULT_STOP_RULE``).
        click_options: extra keyword arguments of ``derive_clicks`` (e.g. ``margin``).
        converged_iou: a re-propagation (``from_slice``) stops where a slice comes out like
            before (this IoU with its previous mask): the slices beyond would not change.
        measure_always: measure contrast and brightness even when the rule ignores them
            (tuning).
    """

    def _init_propagation(self) -> None:
        self.stop_rule: StopRule = DEFAULT_STOP_RULE
        self.click_options: dict[str, Any] = {}
        self.converged_iou = 0.95
        self.measure_always = False

    def propagate(self, object_id: int, axis: int = 0, min_iou: float | None = None,
                  max_area_ratio: float | None = None, min_area: int | None = None,
                  negatives: bool = True, max_slices: int | None = None,
                  progress: ProgressFn | None = None, should_stop: StopFn | None = None,
                  from_slice: Any = None, rule: StopRule | None = None) -> PropagationResult:
        """Carry a committed object slice by slice along a leading axis (one undo step).

        Propagation starts from every slice the user clicked on (or only ``from_slice``, e.g.
        after a correction there) and runs both ways until the stop rule says the object ended,
        the next user-clicked slice (kept as it is), other objects covering it, or the stack's
        end. Slices it passes are predicted again; slices carried from the same start that lie
        beyond a new stop are removed (the object ended earlier than before). Each clicked
        slice rewrites the slices nearer to it than to the next clicked slice; beyond those it
        only fills slices the object does not reach yet. From ``from_slice``, a direction also
        stops at the first slice that comes out as before (IoU >= ``converged_iou``): the
        neighbours the correction affects are re-run, no more.

        Args:
            object_id: a committed object.
            axis: which leading axis to follow (0 = the first, e.g. Z of (Z, Y, X)).
            min_iou, max_area_ratio, min_area: override those of ``rule``.
            negatives: derive negative clicks around the neighbour's mask.
            max_slices: at most this many slices per direction and start.
            progress: called as ``progress(done, total, message)``.
            should_stop: polled before each slice; True cancels (what was done is kept).
            from_slice: a slice of the object to start from (default: every clicked slice).
            rule: the stop rule (default: the session's ``stop_rule``).
        """
        if not self.leading_shape:
            raise ValueError("propagation needs a stack: the image has no leading axis")
        if not 0 <= axis < len(self.leading_shape):
            raise ValueError(f"axis {axis} is not a leading axis of {self.leading_shape}")
        rule = rule or self.stop_rule
        overrides = {k: v for k, v in (("min_iou", min_iou), ("max_area_ratio", max_area_ratio),
                                       ("min_area", min_area)) if v is not None}
        if overrides:
            rule = replace(rule, **overrides)
        start_key = None if from_slice is None else self._check_slice(from_slice)
        with self._seg_lock, self._lock:
            obj = self._state.objects.get(int(object_id))
            if obj is None:
                raise ValueError(f"object {object_id} is not committed; committed objects: "
                                 f"{sorted(self._state.objects)}")
            slices = dict(obj.slices)
            if start_key is not None:
                if start_key not in slices:
                    raise ValueError(f"object {object_id} has no slice {start_key}; its slices: "
                                     f"{sorted(slices)}")
                starts = [start_key]
            else:
                starts = sorted((k for k, rec in slices.items() if rec.fixed),
                                key=lambda k: k[axis])
            before = self._state.copy()
            result = PropagationResult(obj.object_id)
            patches: list[Patch] = []
            n_axis = self.leading_shape[axis]
            plans = []
            for s in starts:
                for d in (+1, -1):
                    room = (n_axis - 1 - s[axis]) if d > 0 else s[axis]
                    if max_slices is not None:
                        room = min(room, int(max_slices))
                    plans.append((s, d, room))
            total, done = sum(p[2] for p in plans), 0
            made: set[SliceKey] = set()
            outer = {+1: max(starts, key=lambda k: k[axis], default=None),
                     -1: min(starts, key=lambda k: k[axis], default=None)}
            try:
                for start, direction, room in plans:
                    if result.cancelled:
                        break
                    source, reason = start, "end of the stack"
                    owned = self._owned_steps(start, direction, axis, slices)
                    ref = self._chain_reference(start, obj.object_id, rule, slices, axis)
                    for step in range(1, room + 1):
                        if should_stop is not None and should_stop():
                            result.cancelled = True
                            reason = "stopped"
                            break
                        target = _step(source, axis, direction)
                        done += 1
                        if progress is not None:
                            progress(done, total, f"slice {target}")
                        if target in slices and slices[target].fixed:
                            reason = "reached a slice you clicked on"
                            break
                        if target in made or (step > owned and target in slices):
                            reason = "met the propagation from another clicked slice"
                            break
                        old = (self.labels[target] == obj.object_id) \
                            if start_key is not None and target in slices else None
                        reason = self._propagate_one(obj.object_id, source, target, slices,
                                                     patches, rule, negatives, ref,
                                                     result.measures, direction)
                        if not reason and old is not None and old.any() \
                                and iou(self.labels[target] == obj.object_id, old) \
                                >= self.converged_iou:
                            made.add(target)
                            result.slices.append(target)
                            reason = "the slices beyond did not change"
                            break
                        if reason:
                            self._drop_chain(obj.object_id, target, axis, direction, slices,
                                             patches, result.removed)
                            break
                        made.add(target)
                        result.slices.append(target)
                        source = target
                    else:
                        reason = "max_slices reached" if room < (
                            (n_axis - 1 - start[axis]) if direction > 0 else start[axis]) \
                            else "end of the stack"
                    if start == outer[direction] or direction not in result.stopped:
                        result.stopped[direction] = reason
            except Exception:
                for p in reversed(patches):
                    self.labels[p.index] = p.old
                raise
            if result.slices or result.removed:
                self._state.objects[obj.object_id] = ObjectRecord(obj.object_id, slices)
                self._push("propagate", before, patches)
            if progress is not None:
                progress(total, total, "done")
            return result

    def _owned_steps(self, start: SliceKey, direction: int, axis: int,
                     slices: dict[SliceKey, SliceRecord]) -> int:
        """How many slices this way belong to ``start``: those nearer to it than to the next
        clicked slice (ties to ``start``). Beyond them propagation only fills slices the object
        does not reach yet, so a correction never rewrites what another clicked slice made."""
        others = [k[axis] for k, rec in slices.items() if rec.fixed and k != start
                  and k[:axis] + k[axis + 1:] == start[:axis] + start[axis + 1:]
                  and (k[axis] - start[axis]) * direction > 0]
        if not others:
            return 1 << 30
        return min(abs(z - start[axis]) for z in others) // 2

    def _chain_reference(self, start: SliceKey, object_id: int, rule: StopRule,
                         slices: dict[SliceKey, SliceRecord], axis: int
                         ) -> tuple[float | None, float | None] | None:
        """The image tests' yardsticks: the object's (contrast, brightness) on its brightest
        clicked slice of this line (None when the rule does not look at the image). The
        body of the object, not the chain's start: a correction on a dim end must not become
        the measure that lets the next slices fade further."""
        if not rule.uses_image and not self.measure_always:
            return None
        line = start[:axis] + start[axis + 1:]
        best: tuple[float | None, float | None] | None = None
        for key, rec in slices.items():
            if not rec.fixed or key[:axis] + key[axis + 1:] != line:
                continue
            mask = self.labels[key] == object_id
            if not mask.any():
                continue
            grey = self._grey(key)
            b = object_brightness(grey, mask)
            if best is None or (b is not None and (best[1] is None or abs(b) > abs(best[1]))):
                best = (object_contrast(grey, mask), b)
        return best

    def _propagate_one(self, object_id: int, source: SliceKey, target: SliceKey,
                       slices: dict[SliceKey, SliceRecord], patches: list[Patch],
                       rule: StopRule, negatives: bool,
                       reference: tuple[float | None, float | None] | None,
                       measures: list[dict[str, Any]], direction: int) -> str | None:
        """Predict one slice from its neighbour; write it and return None, or say why not."""
        prev = self.labels[source] == object_id
        if not prev.any():
            return "the object vanished"
        clicks = derive_clicks(prev, negatives, **self.click_options)
        mask, probs = self._predict_full(target, clicks, prev)
        if not getattr(self._segmenter, "calibrated", True):
            probs = None  # e.g. a graph cut's colour posteriors: no confidence to judge by
        contrast = brightness = None
        if reference is not None and mask.any():
            grey = self._grey(target)
            contrast = _relative(object_contrast(grey, mask), reference[0])
            if rule.hold_contrast > 0 and contrast is not None and contrast < rule.hold_contrast:
                mask = mask & prev  # fading: no growth
                if probs is not None:
                    probs = np.where(mask, probs, 0).astype(np.float32)
                contrast = _relative(object_contrast(grey, mask), reference[0])
            brightness = _relative(object_brightness(grey, mask), reference[1])
        m = rule.measure(mask, prev, probs, contrast, brightness)
        reason = rule.reason(m)
        measures.append({"slice": target, "direction": direction, **m, "reason": reason})
        if reason:
            return reason
        patch, n = self._replace(target, mask, object_id)
        if patch is not None:
            patches.append(patch)
        if n == 0 and not (self.labels[target] == object_id).any():
            return "other objects cover it"
        self._seq += 1
        slices[target] = SliceRecord(tuple(clicks), source, self._seq)
        return None

    def _drop_chain(self, object_id: int, first: SliceKey, axis: int, direction: int,
                    slices: dict[SliceKey, SliceRecord], patches: list[Patch],
                    removed: list[SliceKey]) -> None:
        """Remove the propagated slices from ``first`` on that were carried this way (from the
        side propagation came from): the object ended before them."""
        key = first
        while key in slices and not slices[key].fixed \
                and slices[key].source == _step(key, axis, -direction):
            patch, _ = self._replace(key, None, object_id)
            if patch is not None:
                patches.append(patch)
            del slices[key]
            removed.append(key)
            if not 0 <= key[axis] + direction < self.leading_shape[axis]:
                break
            key = _step(key, axis, direction)


def _relative(value: float | None, reference: float | None) -> float | None:
    """``value`` as a fraction of ``reference`` (signs follow the reference: a dark object's
    negative contrast counts like a bright one's); None when either is unknown or ~0."""
    if value is None or reference is None or abs(reference) < 1e-6:
        return None
    return value / reference


def _step(key: SliceKey, axis: int, direction: int) -> SliceKey:
    return key[:axis] + (key[axis] + direction,) + key[axis + 1:]


def _box(mask: np.ndarray, pad: int) -> tuple[slice, slice]:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return (slice(max(0, rows[0] - pad), rows[-1] + pad + 1),
            slice(max(0, cols[0] - pad), cols[-1] + pad + 1))


__all__ = ["DEFAULT_STOP_RULE", "PropagationMixin", "PropagationResult", "StopRule",
           "derive_clicks", "object_brightness", "object_contrast"]
