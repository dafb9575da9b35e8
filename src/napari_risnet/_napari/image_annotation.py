"""What the widget keeps per annotated image layer: its session, its layers and its project."""
from __future__ import annotations

from dataclasses import dataclass, field

from napari.layers import Image, Labels, Points

from napari_risnet.annotation.project import ImageInfo, Project
from napari_risnet.annotation.session import AnnotationSession


@dataclass
class ImageAnnotation:
    """One image layer being annotated: its session and our three layers."""

    image: Image
    session: AnnotationSession
    points: Points
    labels: Labels
    preview: Labels
    preview_slices: set = field(default_factory=set)
    overlay_slices: set = field(default_factory=set)  # where the corrected object is drawn
    point_size: float = 3.0  # size of a user's click on screen (derived ones are smaller)
    shown_records: list | None = None  # the click records the clicks layer shows
    project: Project | None = None  # where every commit is saved
    image_info: ImageInfo | None = None
    overwrite_ids: set = field(default_factory=set)  # objects committed over others


__all__ = ["ImageAnnotation"]
