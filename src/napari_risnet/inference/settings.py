"""The predictor's behaviour as one typed, frozen object, with a named preset per release.

``PredictorSettings`` holds every setting that shapes the predictor's answer: the windows, the
answer rules (:mod:`napari_risnet.inference.rules`) and the graph cut. Its defaults are this
release's behaviour. A project records ``to_record()`` (the settings and the release that wrote
them), and ``from_record`` rebuilds the same settings, also from a record an earlier release
wrote: that record names no release and lacks the settings added since, so the release is
inferred from the keys it has and its preset (``PRESETS``) fills in the rest.
"""
from __future__ import annotations

import dataclasses
import typing
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np

from napari_risnet.inference.graphcut import GraphCutParams
from napari_risnet.releases import release_key

#: where the predictor averages over the window and its mirror image
FLIP_AVERAGE = ("none", "magnified", "all")

#: the answer rules in pipeline order (names for ``rules_off``; see inference/rules.py)
RULES = ("flip_averaging", "magnified_bias", "click_threshold", "click_prior", "focus_pass",
         "guarded_merge", "late_merge", "spill_limit", "wider_zoom_in")


@dataclass(frozen=True)
class PredictorSettings:
    """Everything that shapes the predictor's answer (defaults: this release).

    A rule whose setting is 0 (or "none") is not part of the pipeline; ``rules_off`` removes
    rules by name whatever their settings (ablations). Build variants with
    ``dataclasses.replace(settings, name=value)`` or ``settings.with_values(["name=value"])``.
    """

    # -- windows -----------------------------------------------------------------------------
    #: long side of the network input in pixels
    input_size: int = 256
    #: number of local ROIs of the network's local branch (paper: 5)
    n_roi: int = 5
    #: on larger images the first click looks at a window of this side around it
    first_window: int = 1024
    #: a first click whose object spans less than this fraction of the window gets a second,
    #: zoomed-in look
    refine_ratio: float = 0.35
    #: a window is the box of the clicks and the previous mask grown this much
    expand: float = 1.6
    #: the first click's zoom-in grows the object's box this much (None: ``expand``)
    refine_expand: float | None = 2.5
    #: with a wider first zoom-in, the tighter window wins where the wide answer is more than
    #: this many times larger (a whole cell around the clicked nucleus)
    refine_max_growth: float = 3.0
    #: smallest window side in image pixels (None: input_size // 4, at least 16)
    min_window: int | None = None
    # -- what a click does to the probabilities ----------------------------------------------
    #: width (fraction of the network input) of the Gaussian pull towards each click's sign;
    #: 0 = off
    click_sigma: float = 0.02
    #: the same width on a magnified window (a small object seen enlarged)
    click_sigma_magnified: float = 0.01
    #: width (fraction of the network input) of the local threshold shift around each click
    #: the network answered wrongly; 0 = off
    click_threshold: float = 0.05
    #: the same width on windows that show a small object (``small_object_from``)
    click_threshold_small: float = 0.02
    #: a window magnified at least this much (and more than 1x) shows a small object
    small_object_from: float = 2.0
    #: logit added to the answer on magnified windows (their objects come out too small);
    #: 0 = off
    magnified_bias: float = 0.5
    #: the bias acts on windows magnified more than 1x and at least this much
    magnified_bias_from: float = 1.0
    #: average the logits with the mirror image's on "all" windows, "magnified" ones or "none"
    flip_average: str = "magnified"
    # -- later clicks ------------------------------------------------------------------------
    #: from this many clicks on, a second, sharper pass around the latest click (focus pass);
    #: 0 = off
    focus_from: int = 2
    #: the focus window's side as a fraction of the window's long side
    focus_ratio: float = 0.4
    #: the focus answer replaces the coarse one within this many coarse network pixels of the
    #: coarse boundary
    focus_band: float = 3.0
    #: from this many clicks on, a click changes only the connected region of change under it
    #: (progressive merge, unmagnified windows only); 0 = off. Since 0.25.0 it starts where the
    #: late merge does: the guarded merge (from 2 until 0.23.0) stays retired, the late merge
    #: holds the last click's IoU (docs/experiments.md, 0.24.0 and 0.25.0)
    merge_from: int = 7
    #: the guard: merge only when the click's answer changes more than this fraction of the
    #: previous mask's area away from its own edit (0: always)
    merge_min_elsewhere: float = 0.1
    #: from this many clicks on the merge applies without the guard (late merge); 0 = never
    merge_always_from: int = 7
    #: a click's own edit larger than this many d^2 pixels (d: the click's distance to the
    #: previous boundary) is cut back to a disc around the click (spill limit); 0 = off
    #: (retired in 0.24.0)
    spill_ratio: float = 0.0
    #: that disc's radius in units of d
    spill_radius: float = 8.0
    # -- the mask ----------------------------------------------------------------------------
    #: refine the probabilities with a graph cut (False: threshold at 0.5)
    use_graphcut: bool = True
    #: the graph cut's parameters
    graphcut_params: GraphCutParams = field(default_factory=GraphCutParams)
    #: answer rules removed from the pipeline by name (``RULES``), for ablations
    rules_off: tuple[str, ...] = ()
    # -- the network's arithmetic ------------------------------------------------------------
    #: run the network with each BatchNorm folded into its convolution (model/batchnorm_folding
    #: .py): ~19 % less backbone time on a CPU, the same answers up to the floats' last bits
    #: (since 0.27.0; the releases before ran it unfolded, and replay them so)
    fold_batchnorm: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.graphcut_params, Mapping):
            object.__setattr__(self, "graphcut_params", GraphCutParams(**self.graphcut_params))
        object.__setattr__(self, "rules_off", tuple(self.rules_off))
        _validate(self)

    # -- derived values ----------------------------------------------------------------------
    @property
    def window_min(self) -> int:
        """``min_window`` resolved (its default follows ``input_size``)."""
        if self.min_window is None:
            return max(16, int(self.input_size) // 4)
        return int(self.min_window)

    @property
    def zoom_expand(self) -> float:
        """``refine_expand`` resolved (None: ``expand``)."""
        return float(self.expand if self.refine_expand is None else self.refine_expand)

    def resolved(self) -> "PredictorSettings":
        """The same behaviour with ``min_window`` and ``refine_expand`` spelled out (what a
        record holds), so two settings compare equal when they act the same."""
        return dataclasses.replace(self, min_window=self.window_min,
                                   refine_expand=self.zoom_expand)

    def uses(self, rule: str) -> bool:
        """Whether the rule ``rule`` (a name in ``RULES``) is part of the pipeline."""
        if rule not in RULES:
            raise ValueError(f"unknown rule {rule!r}; the rules are {', '.join(RULES)}")
        if rule in self.rules_off:
            return False
        return {
            "flip_averaging": self.flip_average != "none",
            "magnified_bias": self.magnified_bias != 0,
            "click_threshold": self.click_threshold > 0 or self.click_threshold_small > 0,
            "click_prior": self.click_sigma > 0 or self.click_sigma_magnified > 0,
            "focus_pass": self.focus_from > 0,
            # the guard has clicks of its own only before the late merge takes over
            "guarded_merge": self.merge_from > 0 and (self.merge_always_from == 0
                                                      or self.merge_from < self.merge_always_from),
            "late_merge": self.merge_from > 0 and self.merge_always_from > 0,
            "spill_limit": self.spill_ratio > 0,
            "wider_zoom_in": self.zoom_expand > self.expand,
        }[rule]

    @property
    def rules(self) -> tuple[str, ...]:
        """The rules in the pipeline, in order."""
        return tuple(r for r in RULES if self.uses(r))

    # -- variants ----------------------------------------------------------------------------
    def with_values(self, assignments: Iterable[str]) -> "PredictorSettings":
        """A copy with ``name=value`` strings applied (``gc.name=value``: a graph-cut
        parameter; ``rules_off=a,b``); values are converted to the field's type."""
        changes: dict[str, Any] = {}
        gc: dict[str, Any] = {}
        for text in assignments:
            name, sep, value = str(text).partition("=")
            name = name.strip()
            if not sep:
                raise ValueError(f"expected NAME=VALUE, got {text!r}")
            if name.startswith("gc."):
                gc[name[3:]] = _convert(GraphCutParams, name[3:], value)
            else:
                changes[name] = _convert(PredictorSettings, name, value)
        if gc:
            changes["graphcut_params"] = dataclasses.replace(
                changes.get("graphcut_params", self.graphcut_params), **gc)
        return dataclasses.replace(self, **changes)

    # -- releases and records ----------------------------------------------------------------
    @classmethod
    def for_release(cls, version: str) -> "PredictorSettings":
        """The settings release ``version`` (e.g. "0.9.0") used by default."""
        version = str(version).lstrip("v")
        if version not in PRESETS:
            raise ValueError(f"no predictor preset for release {version!r}; presets exist for "
                             f"{', '.join(PRESETS)} (earlier releases recorded no settings)")
        return PRESETS[version]

    def to_record(self) -> dict[str, Any]:
        """The JSON-able record a project or result file keeps: the answer-shaping settings
        (resolved, graph-cut parameters as a dict) and the release that wrote them."""
        from napari_risnet import __version__

        record: dict[str, Any] = {name: getattr(self, name) for name in RECORDED}
        record["refine_expand"] = self.zoom_expand
        record["min_window"] = self.window_min
        record["graphcut_params"] = dataclasses.asdict(self.graphcut_params)
        if self.rules_off:
            record["rules_off"] = list(self.rules_off)
        record["release"] = __version__
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> "PredictorSettings":
        """The settings a record was made with.

        The record's release (named, or inferred from the settings it has) gives the preset,
        and the recorded values overlay it. Settings this release does not know (a record from
        a newer one) are left out with a warning: the replay may then differ.
        """
        record = dict(record)
        release = release_of(record)
        known = {f.name for f in dataclasses.fields(cls)}
        known_gc = {f.name for f in dataclasses.fields(GraphCutParams)}
        gc = dict(record.get("graphcut_params") or {})
        unknown = sorted(set(record) - known - {"release"}) + \
            sorted(f"graphcut_params.{k}" for k in set(gc) - known_gc)
        if unknown:
            warnings.warn(f"the project records predictor settings this release does not know "
                          f"({', '.join(unknown)}): replayed without them, so the labels may "
                          f"differ", stacklevel=2)
        base = PRESETS[release]
        values = {k: v for k, v in record.items()
                  if k in known and k not in ("graphcut_params", "rules_off")}
        # a setting split off another one did not exist in the releases before it: there it
        # had the other one's value
        for split, source in _TIED.get(release, {}).items():
            if split not in values and source in values:
                values[split] = values[source]
        if gc:
            values["graphcut_params"] = GraphCutParams(**{k: v for k, v in gc.items()
                                                          if k in known_gc})
        if record.get("rules_off"):
            values["rules_off"] = tuple(record["rules_off"])
        return dataclasses.replace(base, **values)


#: the record's keys besides graphcut_params: every field except the mask's (recorded with the
#: model) and the ablation switch
RECORDED = tuple(f.name for f in dataclasses.fields(PredictorSettings)
                 if f.name not in ("use_graphcut", "graphcut_params", "rules_off"))


def _version_key(version: str) -> tuple[int, ...]:
    """A record's release as a sort key; text that is no release sorts first."""
    try:
        return release_key(version)
    except ValueError:
        return (0,)


def release_of(record: Mapping[str, Any]) -> str:
    """The preset a record starts from: its ``release`` when that has a preset, the newest
    preset for a newer release, else the release inferred from the settings it has."""
    named = str(record.get("release", "")).lstrip("v")
    if named in PRESETS:
        return named
    newest = max(PRESETS, key=_version_key)
    if named and _version_key(named) > _version_key(newest):
        return newest
    for release, setting in _ADDED:
        if setting in record:
            if release == "0.9.0" and "small_object_from" not in record:
                break  # the bias floor under its first name, before the click threshold
            return release
    return "0.7.0"


def _convert(cls: type, name: str, text: str) -> Any:
    """``text`` as the type of field ``name`` of dataclass ``cls``."""
    hints = typing.get_type_hints(cls)
    if name not in hints:
        fields = ", ".join(f.name for f in dataclasses.fields(cls))
        raise ValueError(f"unknown setting {name!r}; the settings are {fields}")
    hint, text = hints[name], text.strip()
    args = typing.get_args(hint)
    if type(None) in args and text.lower() in ("none", ""):
        return None
    kind = next((a for a in args if a is not type(None)), hint) if args else hint
    if name == "rules_off":
        return tuple(r.strip() for r in text.split(",") if r.strip())
    if kind is bool:
        if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(f"{name} is true or false, got {text!r}")
        return text.lower() in ("true", "1", "yes")
    if kind in (int, float, str):
        try:
            return kind(text)
        except ValueError:
            raise ValueError(f"{name} takes a {kind.__name__}, got {text!r}") from None
    raise ValueError(f"{name} cannot be set from text")


def _validate(s: PredictorSettings) -> None:
    if not s.expand >= 1 or not (s.refine_expand is None or s.refine_expand >= 1):
        raise ValueError(f"expand and refine_expand must be >= 1 (how much a window grows "
                         f"around its box), got {s.expand}, {s.refine_expand}")
    if not s.refine_max_growth >= 1:
        raise ValueError(f"refine_max_growth must be >= 1, got {s.refine_max_growth}")
    if s.merge_from < 0:
        raise ValueError(f"merge_from must be >= 0 (0 = off), got {s.merge_from}")
    if not s.merge_min_elsewhere >= 0:
        raise ValueError(f"merge_min_elsewhere must be >= 0 (0 = always merge), got "
                         f"{s.merge_min_elsewhere}")
    if s.merge_always_from < 0:
        raise ValueError(f"merge_always_from must be >= 0 (0 = the guard at every click), "
                         f"got {s.merge_always_from}")
    if s.focus_from < 0 or not 0 < s.focus_ratio <= 1 or s.focus_band <= 0:
        raise ValueError(f"focus_from must be >= 0 (0 = off), focus_ratio in (0, 1] and "
                         f"focus_band > 0, got {s.focus_from}, {s.focus_ratio}, {s.focus_band}")
    if not np.isfinite(s.magnified_bias):
        raise ValueError(f"magnified_bias must be a finite logit, got {s.magnified_bias}")
    if not s.magnified_bias_from >= 1 or not s.small_object_from >= 1:
        raise ValueError(f"magnified_bias_from and small_object_from must be magnifications "
                         f">= 1, got {s.magnified_bias_from}, {s.small_object_from}")
    if s.flip_average not in FLIP_AVERAGE:
        raise ValueError(f"flip_average must be one of {FLIP_AVERAGE}, got {s.flip_average!r}")
    if not s.click_threshold >= 0 or not s.click_threshold_small >= 0:
        raise ValueError(f"click_threshold and click_threshold_small must be >= 0 (0 = off), "
                         f"got {s.click_threshold}, {s.click_threshold_small}")
    if not s.spill_ratio >= 0 or not s.spill_radius > 0:
        raise ValueError(f"spill_ratio must be >= 0 (0 = off) and spill_radius > 0, got "
                         f"{s.spill_ratio}, {s.spill_radius}")
    if not s.click_sigma >= 0 or not s.click_sigma_magnified >= 0:
        raise ValueError(f"click_sigma and click_sigma_magnified must be >= 0 (0 = off), got "
                         f"{s.click_sigma}, {s.click_sigma_magnified}")
    if int(s.input_size) < 16 or int(s.n_roi) < 0:
        raise ValueError(f"input_size must be >= 16 and n_roi >= 0, got {s.input_size}, "
                         f"{s.n_roi}")
    if not isinstance(s.graphcut_params, GraphCutParams):
        raise TypeError(f"graphcut_params must be a GraphCutParams or a dict, got "
                        f"{type(s.graphcut_params).__name__}")
    unknown = [r for r in s.rules_off if r not in RULES]
    if unknown:
        raise ValueError(f"rules_off names unknown rules {unknown}; the rules are "
                         f"{', '.join(RULES)}")


_TODAY = PredictorSettings()
_V0_28 = dataclasses.replace(_TODAY)  # 0.29.0 shipped no new model and changed no rule
_V0_27 = dataclasses.replace(_V0_28)  # 0.28.0 shipped no new model and changed no rule
#: 0.27.0 folds the BatchNorms into the convolutions; every rule re-earned its place, none changed
_V0_26 = dataclasses.replace(_V0_27, fold_batchnorm=False)
_V0_25 = dataclasses.replace(_V0_26)  # 0.26.0 made the graph cut faster and changed no rule
#: 0.25.0 brought the late merge back (it holds the IoU after the last click)
_V0_24 = dataclasses.replace(_V0_25, merge_from=0)
#: 0.24.0 shipped a new model and retired the guarded and the late merge and the spill limit
_V0_23 = dataclasses.replace(_V0_24, merge_from=2, spill_ratio=20.0)
_V0_22 = dataclasses.replace(_V0_23)  # 0.23.0 shipped no new model and changed no rule
_V0_21 = dataclasses.replace(_V0_22)  # 0.22.0 shipped no new model and changed no rule
_V0_20 = dataclasses.replace(_V0_21)  # 0.21.0 shipped no new model and changed no rule
_V0_19 = dataclasses.replace(_V0_20)  # 0.20.0 shipped no new model and changed no rule
_V0_18 = dataclasses.replace(_V0_19)  # 0.19.0 shipped no new model and changed no rule
_V0_17 = dataclasses.replace(_V0_18)  # 0.18.0 shipped no new model and changed no rule
_V0_16 = dataclasses.replace(_V0_17)  # 0.17.0 shipped no new model and changed no rule
_V0_15 = dataclasses.replace(_V0_16)  # 0.16.0 measured every rule anew and changed none
_V0_14 = dataclasses.replace(_V0_15)
_V0_13 = dataclasses.replace(_V0_14)
_V0_12 = dataclasses.replace(_V0_13)
_V0_11 = dataclasses.replace(_V0_12, merge_always_from=0)  # the merge's guard at every click
_V0_10 = dataclasses.replace(_V0_11, spill_ratio=0.0)  # no spill limit
_V0_9 = dataclasses.replace(_V0_10, refine_expand=1.6)  # the first zoom-in grew by expand
_V0_8 = dataclasses.replace(_V0_9, magnified_bias_from=2.0)  # the bias's floor: 2x
_V0_7 = dataclasses.replace(_V0_8, magnified_bias_from=1.0, small_object_from=1.0,
                            click_threshold=0.0, click_threshold_small=0.0)  # no threshold

#: the settings each release used, from the first that recorded its settings
PRESETS: dict[str, PredictorSettings] = {
    "0.7.0": _V0_7, "0.8.0": _V0_8, "0.9.0": _V0_9, "0.10.0": _V0_10, "0.11.0": _V0_11,
    "0.12.0": _V0_12, "0.13.0": _V0_13, "0.14.0": _V0_14,
    "0.15.0": _V0_15, "0.16.0": _V0_16, "0.17.0": _V0_17, "0.18.0": _V0_18,
    "0.19.0": _V0_19, "0.20.0": _V0_20, "0.21.0": _V0_21,
    "0.22.0": _V0_22, "0.23.0": _V0_23, "0.24.0": _V0_24, "0.25.0": _V0_25,
    "0.26.0": _V0_26, "0.27.0": _V0_27, "0.28.0": _V0_28, "0.29.0": _TODAY}

#: settings that a release did not have yet because they were one with another setting
_TIED = {"0.7.0": {"refine_expand": "expand"},
         "0.8.0": {"magnified_bias_from": "small_object_from", "refine_expand": "expand"},
         "0.9.0": {"refine_expand": "expand"}}

#: the setting each release added to the record: a record without a ``release`` is from the
#: newest release whose setting it has
_ADDED = (("0.27.0", "fold_batchnorm"), ("0.12.0", "merge_always_from"),
          ("0.11.0", "spill_ratio"), ("0.10.0", "refine_expand"), ("0.9.0", "magnified_bias_from"),
          ("0.8.0", "small_object_from"))


__all__ = ["FLIP_AVERAGE", "PRESETS", "PredictorSettings", "RECORDED", "RULES", "release_of"]
