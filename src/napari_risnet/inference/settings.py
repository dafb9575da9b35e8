"""The predictor settings a project records, so that ``replay`` rebuilds the predictor that made
the labels even after a release has changed the defaults (the focus pass in session 5, the
magnified-window bias and flip averaging in session 6, the small-object floor of that bias and
the local threshold around clicks in session 7, the bias's own floor in session 8, the first
click's wider zoom-in in session 9, the spill limit on a click's edit in session 10, the
unguarded merge of late clicks in session 11). A project
saved before settings were recorded is replayed with the current defaults; a setting added later
is replayed, for a record without it, with the value that reproduces the release that wrote the
record.
"""
from __future__ import annotations

import dataclasses
import warnings
from typing import Any

from napari_risnet.inference.graphcut import GraphCutParams

#: Predictor attributes (same names as its keyword arguments) that shape its answers
RECORDED = ("input_size", "n_roi", "first_window", "refine_ratio", "expand", "refine_expand",
            "refine_max_growth", "click_sigma",
            "click_sigma_magnified", "min_window", "merge_from", "merge_min_elsewhere",
            "focus_from", "focus_ratio", "focus_band", "magnified_bias",
            "magnified_bias_from", "small_object_from", "flip_average", "click_threshold",
            "click_threshold_small", "spill_ratio", "spill_radius", "merge_always_from")

#: settings added after projects began recording them, with the value that reproduces what a
#: record without them was made with (before the setting existed)
BEFORE_RECORDED = {"small_object_from": 1.0, "click_threshold": 0.0,
                   "click_threshold_small": 0.0, "spill_ratio": 0.0,
                   "merge_always_from": 0}

#: settings split off another one: a record without them was made with the other's value
#: (the bias's floor was ``small_object_from`` until session 8, the first click's zoom-in grew
#: its box by ``expand`` until session 9)
SPLIT_FROM = {"magnified_bias_from": "small_object_from", "refine_expand": "expand"}


def recorded_settings(predictor: Any) -> dict[str, Any]:
    """The JSON-able settings of ``predictor`` (graph-cut parameters as a dict)."""
    record = {name: getattr(predictor, name) for name in RECORDED}
    record["graphcut_params"] = dataclasses.asdict(predictor.graphcut_params)
    return record


def predictor_kwargs(record: dict[str, Any]) -> dict[str, Any]:
    """Predictor keyword arguments from a record; settings this release does not know (a
    project from a newer one) are left out with a warning: the replay may then differ."""
    known_gc = {f.name for f in dataclasses.fields(GraphCutParams)}
    gc = dict(record.get("graphcut_params") or {})
    unknown = sorted(set(record) - set(RECORDED) - {"graphcut_params"}) + \
        sorted(f"graphcut_params.{k}" for k in set(gc) - known_gc)
    if unknown:
        warnings.warn(f"the project records predictor settings this release does not know "
                      f"({', '.join(unknown)}): replayed without them, so the labels may differ",
                      stacklevel=2)
    kwargs = {k: v for k, v in BEFORE_RECORDED.items() if k not in record}
    kwargs.update({k: v for k, v in record.items() if k in RECORDED})
    for split, source in SPLIT_FROM.items():
        if split not in record and source in kwargs:
            kwargs[split] = kwargs[source]
    if gc:
        kwargs["graphcut_params"] = GraphCutParams(**{k: v for k, v in gc.items()
                                                      if k in known_gc})
    return kwargs


__all__ = ["BEFORE_RECORDED", "RECORDED", "SPLIT_FROM", "predictor_kwargs", "recorded_settings"]
