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
    propagated slice was carried from (its mask was the ``prev_mask``), None when clicked.

    The first ``n_derived`` clicks were placed by propagation, the rest by the user (a
    correction). A slice is *fixed* (propagation never overwrites it) when the user clicked on
    it; a slice whose clicks are all negative and not derived means "the object is not here".
    """

    clicks: tuple[Click, ...]
    source: SliceKey | None = None
    seq: int = 0
    n_derived: int = -1  # -1: all clicks derived when propagated, none when clicked

    def __post_init__(self) -> None:
        if self.n_derived < 0:
            object.__setattr__(self, "n_derived",
                               len(self.clicks) if self.source is not None else 0)

    @property
    def fixed(self) -> bool:
        """Whether the user clicked on this slice (propagation keeps it as it is)."""
        return self.source is None or len(self.clicks) > self.n_derived

    @property
    def user_clicks(self) -> tuple[Click, ...]:
        return self.clicks[self.n_derived:]

    @property
    def erased(self) -> bool:
        """The user said the object is not on this slice (only negative clicks of their own)."""
        return self.n_derived == 0 and not any(c.positive for c in self.clicks)


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
    derived: bool | None = None  # placed by propagation; None: whenever ``source`` is set

    @property
    def is_derived(self) -> bool:
        return self.source is not None if self.derived is None else bool(self.derived)


__all__ = ["ClickRecord", "ObjectRecord", "SliceKey", "SliceRecord"]
