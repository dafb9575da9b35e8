"""What the RIS-Net widget shows: clicks, the object's preview, the corrected object's overlay,
the status line, and the view fitted to the canvas after docking. A mixin of ``RISNetWidget``
(it uses ``annotation``, ``session``, ``viewer``, ``object_spin``, ``status_label``,
``negative_mode``, ``last_latency`` and ``_note``)."""
from __future__ import annotations

import time
from typing import Any

import numpy as np
from qtpy.QtCore import QTimer

from napari_risnet._napari.image_annotation import ImageAnnotation
from napari_risnet._napari.layers import (mask_to_preview, point_style, points_from_records,
                                          world_to_click)
from napari_risnet._napari.memory import trim_freed_memory
from napari_risnet.wording import plural

#: The committed object being corrected, drawn over it on the shown slice (preview value 2).
CORRECTION_COLOR = (0.0, 0.85, 1.0, 1.0)
CORRECTION_VALUE = 2


class WidgetDisplay:
    """Layers and status from the session's state; the view fitted once after docking."""

    #: After docking, the canvas keeps changing size for a moment: refit meanwhile.
    FIT_SETTLE_S = 3.0

    def showEvent(self, event: Any) -> None:  # noqa: N802 (Qt's name)
        """Once docked and shown: fit the image to the canvas the dock left (napari fitted it
        to the wider canvas before the dock took its share, cutting the image off). While the
        canvas settles (``FIT_SETTLE_S``), every resize refits unless the user moved the
        view."""
        super().showEvent(event)
        if not self._fitted:
            self._fitted = True
            self._fit_until = time.monotonic() + self.FIT_SETTLE_S
            self._fit_state: tuple | None = None
            try:
                self.viewer.canvas.events.size.connect(self._on_canvas_resized)
            except AttributeError:  # a viewer without a canvas model
                pass
            QTimer.singleShot(0, self._fit_view)

    def _camera_state(self) -> tuple:
        camera = self.viewer.camera
        return (float(camera.zoom), tuple(np.round(camera.center, 6)))

    def _on_canvas_resized(self, event: Any = None) -> None:
        if time.monotonic() > self._fit_until:
            self.viewer.canvas.events.size.disconnect(self._on_canvas_resized)
            return
        if self._fit_state is None or self._camera_state() == self._fit_state:
            QTimer.singleShot(0, self._fit_view)

    def _fit_view(self) -> None:
        try:
            if len(self.viewer.layers):
                self.viewer.reset_view()
                self._fit_state = self._camera_state()
        except RuntimeError:  # the viewer closed meanwhile
            pass
    # -- display ---------------------------------------------------------------------------------
    def _refresh(self, labels_changed: bool = True) -> None:
        """Redraw clicks, preview and status (and the labels layer unless only the current
        object's prediction changed: redrawing a large labels layer costs the most)."""
        ann = self.annotation
        if ann is None:
            self._update_status()
            return
        self._refresh_points()
        session = ann.session
        current = session.current_clicks
        for key in ann.preview_slices - set(current):
            mask_to_preview(ann.preview.data, key, None)
        for key in current:
            mask_to_preview(ann.preview.data, key, session.current_mask(key))
        ann.preview_slices = set(current)
        self._draw_overlay(ann)
        ann.preview.refresh()
        if labels_changed:
            ann.labels.refresh()
        self._update_status()
        self._schedule_trim()

    #: Freed memory goes back to the OS at most this often (``memory.py``).
    TRIM_INTERVAL_MS = 1000

    def _schedule_trim(self) -> None:
        """Trim freed memory a moment after this refresh (once per interval while the user
        keeps clicking: a trim costs the GUI thread ~5 ms)."""
        timer = getattr(self, "_trim_timer", None)
        if timer is None:
            timer = self._trim_timer = QTimer(self)
            timer.setSingleShot(True)
            timer.timeout.connect(lambda: trim_freed_memory())
        if not timer.isActive():
            timer.start(self.TRIM_INTERVAL_MS)

    def _correcting(self) -> int:
        """The committed object being corrected (0 = none)."""
        session = self.session
        editing = self.object_spin.value()
        return editing if session is not None and editing in session.objects else 0

    def _shown_slice(self) -> tuple:
        ann = self.annotation
        n = len(ann.session.leading_shape)
        if not n:
            return ()
        try:
            key, _, _ = world_to_click(ann.image, self.viewer.dims.point, n)
        except ValueError:
            return ()
        return key if all(0 <= k < s for k, s in zip(key, ann.session.leading_shape)) else ()

    def _draw_overlay(self, ann: ImageAnnotation) -> None:
        """Draw the corrected object on the shown slice in the correction colour (under the
        current object's preview), and only there."""
        data = ann.preview.data
        for key in ann.overlay_slices:
            target = data[key] if key else data
            target[target == CORRECTION_VALUE] = 0
        ann.overlay_slices = set()
        editing = self._correcting()
        if not editing:
            return
        key = self._shown_slice()
        if len(key) != len(ann.session.leading_shape):
            return
        target = data[key] if key else data
        target[(np.asarray(ann.session.labels[key]) == editing) & (target == 0)] = \
            CORRECTION_VALUE
        ann.overlay_slices = {key}

    def _refresh_overlay(self) -> None:
        ann = self.annotation
        if ann is not None:
            self._draw_overlay(ann)
            ann.preview.refresh()
        self._update_status()

    def _on_slice_changed(self, event: Any = None) -> None:
        if self.annotation is not None and (self._correcting()
                                            or self.annotation.overlay_slices):
            self._refresh_overlay()

    def _refresh_points(self) -> None:
        """Show the session's clicks on the clicks layer; nothing when the layer shows them
        already (a prediction's result changes no click, and setting a Points layer's data,
        features, colours and sizes costs the GUI thread ~13 ms on a software-GL canvas)."""
        ann = self.annotation
        if ann is None:
            return
        records = ann.session.click_records()
        data, features, colors = points_from_records(records, len(ann.session.leading_shape))
        if records == ann.shown_records and np.array_equal(ann.points.data, data):
            self._update_status()
            return
        ann.shown_records = records
        ann.points.data = data
        ann.points.features = features
        if len(data):
            borders, sizes = point_style(features, ann.point_size)
            ann.points.face_color = colors
            ann.points.border_color = borders
            ann.points.size = sizes
        self._update_status()

    def _update_status(self) -> None:
        session = self.session
        if session is None:
            self.status_label.setText("pick an image layer")
            return
        latency = "-" if self.last_latency is None else f"{self.last_latency * 1000:.0f} ms"
        sign = "negative" if self.negative_mode else "positive"
        note = f"{self._note} · " if self._note else ""
        editing = self._correcting()
        if editing:
            target = (f"CORRECTING OBJECT {editing} (drawn in cyan): clicks on or near it "
                      f"correct it; c or Esc: done")
        else:
            target = f"{plural(session.n_current_clicks, 'click')} on the current object"
        self.status_label.setText(
            f"{note}{target} · {plural(len(session.objects), 'object')} · last prediction "
            f"{latency} · left click = {sign}")


__all__ = ["CORRECTION_COLOR", "CORRECTION_VALUE", "WidgetDisplay"]
