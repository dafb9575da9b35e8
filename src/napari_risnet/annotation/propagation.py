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

from napari_risnet.annotation.derived_clicks import derive_clicks
from napari_risnet.annotation.history import Patch
from napari_risnet.annotation.records import ObjectRecord, SliceKey, SliceRecord
from napari_risnet.annotation.stop_rule import (DEFAULT_STOP_RULE, StopRule, object_brightness,
                                                object_contrast, relative_to)
from napari_risnet.metrics import iou

ProgressFn = Callable[[int, int, str], None]
StopFn = Callable[[], bool]


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
    ``_state``, ``_push``, locks, ``labels``, ``image``, ``rgb`` and ``channels``).

    Settings, per session (set by ``_init_propagation``):
        stop_rule: the ``StopRule`` (default ``DEFAULT_STOP_RULE``).
        click_options: extra keyword arguments of ``derive_clicks`` (e.g. ``margin``).
        converged_iou: a re-propagation (``from_slice``) stops where a slice comes out like
            before (this IoU with its previous mask): the slices beyond would not change.
        measure_always: measure contrast and brightness even when the rule ignores them
            (tuning).
    """

    def _grey(self, key: SliceKey) -> np.ndarray:
        """One slice as a float grey image (mean of the channels used), for the stop rule."""
        img = np.asarray(self.image[key], dtype=np.float32)
        if self.rgb or img.ndim == 3:
            if self.channels is not None:
                img = img[..., self.channels]
            img = img.mean(axis=-1)
        return img

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
                    p.undo(self.labels)
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
            contrast = relative_to(object_contrast(grey, mask), reference[0])
            if rule.hold_contrast > 0 and contrast is not None and contrast < rule.hold_contrast:
                mask = mask & prev  # fading: no growth
                if probs is not None:
                    probs = np.where(mask, probs, 0).astype(np.float32)
                contrast = relative_to(object_contrast(grey, mask), reference[0])
            brightness = relative_to(object_brightness(grey, mask), reference[1])
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


def _step(key: SliceKey, axis: int, direction: int) -> SliceKey:
    return key[:axis] + (key[axis] + direction,) + key[axis + 1:]


__all__ = ["DEFAULT_STOP_RULE", "PropagationMixin", "PropagationResult", "StopRule",
           "derive_clicks", "object_brightness", "object_contrast"]
