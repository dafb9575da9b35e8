"""The one converter between napari layers and the session's clicks / arrays.

Points are stored in the image's *data* coordinates (leading indices..., row, col), so a Points
layer made with the image's scale and translate lies on it, and napari's CSV writer saves
coordinates that ``records_from_points`` turns back into the same clicks. Features per point:
``object_id`` (0 = the object being annotated), ``slice`` and ``source`` (slice keys written as
"z" or "t,z"; ``source`` is empty for clicked slices), ``sign`` (+1 positive, -1 negative) and
``derived`` (1 = placed by propagation, 0 = by the user: a correction on a propagated slice).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import pandas as pd

from napari_risnet.clicks import Click
from napari_risnet.annotation import ClickRecord, SliceKey

POSITIVE_COLOR = (0.1, 0.9, 0.1, 1.0)
NEGATIVE_COLOR = (0.95, 0.1, 0.1, 1.0)
#: Clicks of committed objects are drawn fainter than those of the current object.
COMMITTED_ALPHA = 0.45
#: Clicks placed by propagation (the user never made them): small hollow grey rings.
DERIVED_FACE = (0.0, 0.0, 0.0, 0.0)
DERIVED_BORDER = (0.75, 0.75, 0.75, 0.8)
USER_BORDER = (1.0, 1.0, 1.0, 1.0)
DERIVED_SIZE = 0.6
FEATURE_COLUMNS = ("object_id", "slice", "sign", "source", "derived")
#: ``layer.metadata[ROLE_KEY]`` marks the layers the widget made: "labels", "preview", "clicks".
ROLE_KEY = "risnet_role"
#: Role of the labels layer the project reader adds (the widget replaces it by its own).
SAVED_ROLE = "saved labels"
#: ``image_layer.metadata[PROJECT_KEY]``: the project folder an image was opened from.
PROJECT_KEY = "risnet_project"


def unwrap_proxy(obj: Any) -> Any:
    """The object behind napari's ``PublicOnlyProxy`` (a widget docked through the manifest gets
    a proxied viewer, whose layers come back proxied too: a fresh proxy on every access, so
    neither ``is`` nor ``id`` recognise a layer that napari itself hands to a mouse callback)."""
    while hasattr(obj, "__wrapped__"):
        obj = obj.__wrapped__
    return obj


def image_ndim(layer: Any) -> int:
    """Number of non-channel axes of an Image layer (napari's ``layer.ndim``)."""
    return int(layer.ndim)


def world_to_click(layer: Any, position: Sequence[float], n_leading: int
                   ) -> tuple[SliceKey, float, float]:
    """A world position (``event.position``) -> (slice index, row, col) in the layer's data.

    ``layer`` is the image layer; its scale / translate / affine are applied by napari.
    Leading coordinates are rounded to the nearest slice.
    """
    data = np.asarray(layer.world_to_data(position), dtype=float)
    if data.size < n_leading + 2:
        raise ValueError(f"position {tuple(position)} has fewer than {n_leading + 2} axes")
    data = data[-(n_leading + 2):]
    key = tuple(int(round(v)) for v in data[:n_leading])
    return key, float(data[-2]), float(data[-1])


def slice_to_str(key: SliceKey | None) -> str:
    return "" if key is None else ",".join(str(int(i)) for i in key)


def str_to_slice(value: Any) -> SliceKey | None:
    """Parse a slice key written by ``slice_to_str`` (or mangled by a CSV round trip into an
    int or float); None for empty / missing values."""
    if value is None:
        return None
    if isinstance(value, (int, np.integer)):
        return (int(value),)
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else (int(round(value)),)
    text = str(value).strip().strip("()[]")
    if text in ("", "nan", "None", "-"):
        return None
    try:
        return tuple(int(round(float(v))) for v in text.split(",") if v.strip())
    except ValueError as exc:
        raise ValueError(f"cannot read a slice index from {value!r}") from exc


def points_from_records(records: Sequence[ClickRecord], n_leading: int
                        ) -> tuple[np.ndarray, pd.DataFrame, np.ndarray]:
    """Click records -> Points (data (N, n_leading + 2), features, face colours (N, 4))."""
    data = np.zeros((len(records), n_leading + 2), dtype=float)
    colors = np.zeros((len(records), 4), dtype=float)
    for i, r in enumerate(records):
        data[i, :n_leading] = r.slice
        data[i, -2:] = r.click.row, r.click.col
        colors[i] = POSITIVE_COLOR if r.click.positive else NEGATIVE_COLOR
        if r.object_id != 0:
            colors[i, 3] = COMMITTED_ALPHA
        if r.is_derived:
            colors[i] = DERIVED_FACE
    features = pd.DataFrame({
        "object_id": np.array([r.object_id for r in records], dtype=int),
        "slice": [slice_to_str(r.slice) for r in records],
        "sign": np.array([1 if r.click.positive else -1 for r in records], dtype=int),
        "source": [slice_to_str(r.source) for r in records],
        "derived": np.array([int(r.is_derived) for r in records], dtype=int),
    })
    return data, features, colors


def point_style(features: pd.DataFrame, size: float) -> tuple[np.ndarray, np.ndarray]:
    """Border colours (N, 4) and sizes (N,) of the points: the user's clicks white-bordered at
    ``size``, derived ones (propagation's) grey rings at ``DERIVED_SIZE * size``."""
    derived = np.asarray(features["derived"], dtype=bool) if len(features) else np.zeros(0, bool)
    borders = np.where(derived[:, None], DERIVED_BORDER, USER_BORDER).astype(float)
    sizes = np.where(derived, DERIVED_SIZE * size, size).astype(float)
    return borders.reshape(-1, 4), sizes


def records_from_points(data: np.ndarray, features: Any, n_leading: int) -> list[ClickRecord]:
    """Points data + features (DataFrame or dict of columns, e.g. from a CSV) -> records.

    The slice comes from the coordinates; missing ``object_id`` means 0 (current object),
    missing ``sign`` means positive (a ``positive`` bool column is accepted too).
    """
    data = np.asarray(data, dtype=float)
    if data.ndim != 2 or data.shape[1] < n_leading + 2:
        raise ValueError(f"points must have {n_leading + 2} coordinates (slice..., row, col) "
                         f"for this image, got data of shape {data.shape}")
    data = data[:, -(n_leading + 2):]
    cols = {} if features is None else {k: np.asarray(features[k]) for k in features.keys()}
    n = len(data)
    object_ids = cols.get("object_id", np.zeros(n))
    if "sign" in cols:
        positive = np.asarray(cols["sign"]).astype(float) > 0
    elif "positive" in cols:
        positive = np.array([_truthy(v) for v in cols["positive"]])
    else:
        positive = np.ones(n, bool)
    sources = cols.get("source", [None] * n)
    derived = cols.get("derived", [None] * n)  # missing (older files): derived iff source set
    records = []
    for i in range(n):
        if not np.all(np.isfinite(data[i])):
            raise ValueError(f"point {i} has a non-finite coordinate {tuple(data[i])}")
        key = tuple(int(round(v)) for v in data[i, :n_leading])
        records.append(ClickRecord(int(round(float(object_ids[i]))), key,
                                   Click(float(data[i, -2]), float(data[i, -1]),
                                         bool(positive[i])),
                                   str_to_slice(sources[i]), _flag(derived[i])))
    return records


def _flag(value: Any) -> bool | None:
    """A ``derived`` cell: None when missing (NaN / empty), else its truth value."""
    if value is None or (isinstance(value, (float, np.floating)) and math.isnan(value)):
        return None
    if isinstance(value, str) and value.strip() in ("", "nan", "None"):
        return None
    return _truthy(value)


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "+", "+1")
    return bool(value)


def mask_to_preview(preview: np.ndarray, key: SliceKey, mask: np.ndarray | None,
                    value: int = 1) -> None:
    """Write the current object's mask of one slice into the preview label array (numpy or
    Zarr: the slice is assigned whole)."""
    plane = np.zeros(preview.shape[len(key):], preview.dtype)
    if mask is not None:
        plane[mask] = value
    preview[key if key else ...] = plane


__all__ = ["FEATURE_COLUMNS", "PROJECT_KEY", "ROLE_KEY", "SAVED_ROLE", "mask_to_preview", "point_style", "points_from_records", "records_from_points",
           "slice_to_str", "str_to_slice", "unwrap_proxy", "world_to_click"]
