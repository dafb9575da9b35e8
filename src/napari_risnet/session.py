"""Kept for imports written before the split: the session lives in ``napari_risnet.annotation``."""
from napari_risnet.annotation.propagation import PropagationResult, StopRule, derive_clicks
from napari_risnet.annotation.records import ClickRecord, ObjectRecord, SliceKey, SliceRecord
from napari_risnet.annotation.session import AnnotationSession
from napari_risnet.robot import iou

__all__ = ["AnnotationSession", "ClickRecord", "ObjectRecord", "PropagationResult", "SliceKey",
           "SliceRecord", "StopRule", "derive_clicks", "iou"]
