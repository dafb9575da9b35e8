"""The records of an annotation: how each slice of each object was made (plain, frozen data).

Shared by the session, the history and the propagation, and the form in which a UI or a
project file reads the clicks back.
"""
from __future__ import annotations

from dataclasses import dataclass

from napari_risnet.clicks import Click

SliceKey = tuple[int, ...]


@dataclass(frozen=True)
class SliceRecord:
    """The clicks that made one slice of an object; ``source`` is the neighbouring slice a
    propagated slice was carried from (its mask was the ``prev_mask``), None when clicked."""

    clicks: tuple[Click, ...]
    source: SliceKey | None = None
    seq: int = 0


@dataclass(frozen=True)
class ObjectRecord:
    """A committed object: its label id and how each of its slices was made."""

    object_id: int
    slices: dict[SliceKey, SliceRecord]


@dataclass(frozen=True)
class ClickRecord:
    """One row of the reproducible click table (``object_id`` 0 = the current object)."""

    object_id: int
    slice: SliceKey
    click: Click
    source: SliceKey | None = None


__all__ = ["ClickRecord", "ObjectRecord", "SliceKey", "SliceRecord"]
