"""Interactive annotation without napari: the session (objects, commit), its undo / redo
history, stack propagation, and projects that autosave, reopen and replay (``project``).
numpy only; a UI drives it."""
from napari_risnet.annotation.propagation import PropagationResult, StopRule, derive_clicks
from napari_risnet.annotation.records import ClickRecord, ObjectRecord, SliceKey, SliceRecord
from napari_risnet.annotation.session import AnnotationSession

__all__ = ["AnnotationSession", "ClickRecord", "ObjectRecord", "PropagationResult", "SliceKey",
           "SliceRecord", "StopRule", "derive_clicks"]
