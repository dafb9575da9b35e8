"""The "RIS-Net interactive segmentation" dock widget's controller: napari events -> session
calls (the controls live in ``widget_layout.py``, mouse and key input in ``widget_input.py``,
what is drawn and the status line in ``widget_display.py``). Predictions and propagation run in
thread workers (``widget_jobs.py``); corrections, propagation and recompute live in
``widget_stack.py``, the project glue in ``widget_project.py``.

Mouse (on the clicks layer, in pan / zoom mode): left click = positive click; right click or
Control-click (Command on macOS) = negative click; dragging pans as usual.
Keys (bound on the clicks layer; on the viewer they answer only when the active layer does not
use the key itself): ``c`` or Enter commit, ``u`` undo, ``Shift-U`` redo, ``Escape`` clear the
current object (or stop correcting), ``n`` toggle the sign of left clicks, ``p`` propagate,
``e`` erase the corrected object on the shown slice. With a layer of another kind active, clicks
and keys say what to select instead of doing nothing.

Correction mode: a click on a committed object (with no object in progress), or picking it in
the "object" box, starts *correcting* it: the status says "correcting object N" and the object
is drawn in the correction colour. Clicks on or near it correct it (on a stack: on that slice;
``p`` then re-propagates from the corrected slice); a click far from it never joins it (a
positive one starts a new object, a negative one is refused); ``c`` or Escape end the mode.

Commit runs the pending prediction in a worker (the window never waits for it); clicks and keys
given meanwhile are applied after the commit, in order.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
from napari.layers import Image
from napari.qt.threading import create_worker
from napari.utils.colormaps import DirectLabelColormap
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtWidgets import QFileDialog
from superqt.utils import create_worker as superqt_create_worker

from napari_risnet._napari.image_annotation import ImageAnnotation
from napari_risnet._napari.lazy_labels import labels_layer_data, preview_array
from napari_risnet._napari.layers import ROLE_KEY, unwrap_proxy
from napari_risnet._napari.plugin_state import register_receiver
from napari_risnet._napari.triton_guard import keep_triton_out
from napari_risnet._napari.widget_display import (CORRECTION_COLOR, CORRECTION_VALUE,
                                                  WidgetDisplay)
from napari_risnet._napari.widget_input import KEYS, ClickInput
from napari_risnet._napari.widget_jobs import (SegmenterFactory, _LazySegmenter, _predict_job,
                                               _Relay, default_segmenter_factory)
from napari_risnet._napari.widget_layout import CHECKPOINT_MODEL, REPLACE_EXISTING, RISNetLayout
from napari_risnet._napari.widget_project import ProjectControls
from napari_risnet._napari.widget_stack import StackControls
from napari_risnet.annotation import AnnotationSession

keep_triton_out()  # before the first prediction imports torch (see _triton_guard: GL crash)

PREVIEW_COLOR = (1.0, 0.85, 0.0, 1.0)


class RISNetWidget(ClickInput, StackControls, ProjectControls, WidgetDisplay, RISNetLayout):
    """Dock widget for click-based segmentation with RIS-Net.

    Args:
        napari_viewer: the viewer (napari passes it).
        segmenter_factory: builds the method from (checkpoint, device, use_graphcut); tests
            inject a GraphCutBaseline factory here.
    """

    def __init__(self, napari_viewer: Any, segmenter_factory: SegmenterFactory | None = None
                 ) -> None:
        super().__init__()  # builds the controls
        self.viewer = napari_viewer
        self.segmenter_factory: SegmenterFactory = segmenter_factory or default_segmenter_factory
        self.negative_mode = False
        self.last_latency: float | None = None
        self.annotation: ImageAnnotation | None = None
        self._annotations: dict[int, ImageAnnotation] = {}
        self._generation = 0
        self._workers: set = set()
        self._propagating = False
        self._creating = False
        self._stop_requested = False
        self._corrected: tuple[int, tuple] | None = None  # (object, slice) last corrected
        self._job_running = False  # a propagation / recompute reports progress
        self._note = ""  # what the widget is doing now, shown in the status line
        self._predictions = 0  # prediction jobs in flight ("predicting…" while any runs)
        self._committing = False  # a commit waits for its prediction in a worker
        self._deferred: list[Callable[[], Any]] = []  # input given meanwhile, in order
        self._fitted = False  # the view is fitted once, after the dock is shown
        self._relay = _Relay()
        self._relay.progressed.connect(self._on_progress)
        self._connect_controls()
        self._connect_project_controls()
        pending = register_receiver(napari_viewer, self)  # fine-tuned checkpoints arrive here
        if pending is not None:
            self.set_checkpoint(pending)
        self.viewer.layers.events.inserted.connect(self._refresh_image_choices)
        self.viewer.layers.events.removed.connect(self._on_layer_removed)
        self.viewer.dims.events.current_step.connect(self._on_slice_changed)
        self._bind_viewer_hints()
        self._refresh_image_choices()

    # -- UI --------------------------------------------------------------------------------------
    def _connect_controls(self) -> None:
        self.image_combo.currentTextChanged.connect(self._on_image_choice)
        self.browse_button.clicked.connect(self._browse_checkpoint)
        for signal in (self.model_combo.currentTextChanged, self.checkpoint_edit.editingFinished,
                       self.device_combo.currentTextChanged, self.graphcut_check.toggled):
            signal.connect(self._on_settings_changed)
        self.threads_spin.valueChanged.connect(self._on_threads_changed)
        self.negative_check.toggled.connect(self._set_negative_mode)
        self.object_spin.valueChanged.connect(lambda _: self._refresh_overlay())
        self.commit_button.clicked.connect(lambda: self._when_ready(self.commit))
        self.undo_button.clicked.connect(lambda: self._when_ready(self.undo))
        self.redo_button.clicked.connect(lambda: self._when_ready(self.redo))
        self.clear_button.clicked.connect(lambda: self._when_ready(self.clear))
        self.propagate_button.clicked.connect(lambda: self._when_ready(self.propagate))
        self.stop_button.clicked.connect(self.request_stop)
        self.recompute_button.clicked.connect(lambda: self.recompute_from_points())

    @property
    def session(self) -> AnnotationSession | None:
        return None if self.annotation is None else self.annotation.session

    @property
    def busy(self) -> bool:
        """Whether a prediction, commit, propagation or recomputation is running."""
        return bool(self._workers) or self._committing

    def _when_ready(self, action: Callable[[], Any]) -> None:
        """Run an action now, or after the commit in progress (input is never dropped and
        never joins the object being committed)."""
        if self._committing:
            self._deferred.append(action)
        else:
            action()

    def _run_deferred(self) -> None:
        while self._deferred and not self._committing:
            self._deferred.pop(0)()

    def _image_layers(self) -> list[Image]:
        return [ly for ly in self.viewer.layers if isinstance(ly, Image)]

    def _refresh_image_choices(self, event: Any = None, auto_select: bool = True) -> None:
        """List the image layers; with none being annotated, start on the first one."""
        if self._creating:
            return  # our own layers are being added
        current = self.image_combo.currentText()
        names = [ly.name for ly in self._image_layers()]
        self.image_combo.blockSignals(True)
        self.image_combo.clear()
        self.image_combo.addItems(names)
        if current in names:
            self.image_combo.setCurrentText(current)
        self.image_combo.blockSignals(False)
        if auto_select and self.annotation is None and names:
            self.image_combo.setCurrentText(names[0])
            self._on_image_choice(names[0])

    def _on_image_choice(self, name: str) -> None:
        if not name or name not in self.viewer.layers:
            return
        layer = self.viewer.layers[name]
        if isinstance(layer, Image):
            self.set_image_layer(layer)

    def _on_layer_removed(self, event: Any) -> None:
        removed = unwrap_proxy(event.value)
        for key, ann in list(self._annotations.items()):
            if removed in (ann.image, ann.points, ann.labels, ann.preview):
                del self._annotations[key]
                if self.annotation is ann:
                    self.annotation = None
        self._refresh_image_choices(auto_select=False)  # never add layers while some go
        self._update_status()

    # -- settings --------------------------------------------------------------------------------
    def _settings(self) -> dict[str, Any]:
        checkpoint = "default"
        if self.model_combo.currentText() == CHECKPOINT_MODEL:
            checkpoint = self.checkpoint_edit.text().strip() or "default"
        return {"checkpoint": checkpoint, "device": self.device_combo.currentText(),
                "use_graphcut": self.graphcut_check.isChecked(),
                "threads": int(self.threads_spin.value())}

    def _make_segmenter(self) -> _LazySegmenter:
        return _LazySegmenter(self.segmenter_factory, **self._settings())

    def _browse_checkpoint(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "RIS-Net checkpoint", "",
                                              "PyTorch checkpoints (*.pt *.pth);;All files (*)")
        if path:
            self.set_checkpoint(path)

    def set_checkpoint(self, path: str | Path) -> None:
        """Use a checkpoint file from now on (the current object is predicted again)."""
        self.checkpoint_edit.setText(str(path))
        self.model_combo.blockSignals(True)
        self.model_combo.setCurrentText(CHECKPOINT_MODEL)
        self.model_combo.blockSignals(False)
        self._on_settings_changed()

    def _on_threads_changed(self, value: int) -> None:
        """Threads apply from the next prediction on; the model is not loaded again."""
        for ann in self._annotations.values():
            segmenter = ann.session.segmenter
            if isinstance(segmenter, _LazySegmenter):
                segmenter.settings["threads"] = int(value)

    def _on_settings_changed(self, *args: Any) -> None:
        for ann in self._annotations.values():
            ann.session.segmenter = self._make_segmenter()
        if self.session is not None and self.session.n_current_clicks:
            self._schedule_prediction()

    # -- layers ----------------------------------------------------------------------------------
    def set_image_layer(self, layer: Image) -> None:
        """Annotate this image layer (its clicks and labels layers are created once)."""
        if self.image_combo.currentText() != layer.name:
            self.image_combo.blockSignals(True)
            self.image_combo.setCurrentText(layer.name)
            self.image_combo.blockSignals(False)
        layer = unwrap_proxy(layer)  # one key per layer, whatever proxy napari handed us
        ann = self._annotations.get(id(layer))
        if ann is None:
            self._creating = True
            try:
                ann = self._create_annotation(layer)
            except (ValueError, TypeError) as exc:
                show_error(f"RIS-Net cannot annotate layer {layer.name!r}: {exc}")
                self.annotation = None
                self._update_status()
                return
            finally:
                self._creating = False
            self._annotations[id(layer)] = ann
        self.annotation = ann
        self.viewer.layers.selection.active = ann.points
        self._update_project_label()
        self._refresh()

    def _create_annotation(self, layer: Image) -> ImageAnnotation:
        data = layer.data[0] if layer.multiscale else layer.data
        session = AnnotationSession(data, self._make_segmenter(), rgb=bool(layer.rgb))
        project = self._attach_project(layer, session, data)  # restores saved work
        transform = {"scale": layer.scale, "translate": layer.translate,
                     "rotate": layer.rotate, "shear": layer.shear,
                     "affine": layer.affine.affine_matrix}
        labels = self.viewer.add_labels(labels_layer_data(session.labels),  # lazy for a project
                                        name=f"{layer.name} RIS-Net labels",
                                        metadata={ROLE_KEY: "labels"}, **transform)
        preview = self.viewer.add_labels(
            preview_array(session.labels_shape), name=f"{layer.name} RIS-Net object",
            opacity=0.6, colormap=DirectLabelColormap(color_dict={
                None: (0, 0, 0, 0), 1: PREVIEW_COLOR, CORRECTION_VALUE: CORRECTION_COLOR}),
            metadata={ROLE_KEY: "preview"}, **transform)
        size = max(3.0, min(session.spatial_shape) / 40)
        points = self.viewer.add_points(
            np.zeros((0, len(session.labels_shape))), name=f"{layer.name} RIS-Net clicks",
            size=size, border_width=0.1, border_color="white", metadata={ROLE_KEY: "clicks"},
            **transform)
        self._bind_input(layer, labels, preview, points)
        ann = ImageAnnotation(layer, session, *map(unwrap_proxy, (points, labels, preview)),
                              **project)
        ann.point_size = size
        return ann

    # -- prediction in a worker ------------------------------------------------------------------
    def _start_worker(self, func: Callable, *args: Any, returned: Callable,
                      errored: Callable, long_job: bool = False) -> Any:
        """Run ``func(*args)`` in a thread worker. A long job (propagation, recompute) goes
        through napari's ``create_worker``, which lists it among the window's tasks (closing
        napari then asks first); napari never forgets a task it listed (~4 kB and 27 Python
        objects each), so the per-click jobs use superqt's ``create_worker`` directly."""
        make = create_worker if long_job else superqt_create_worker
        worker = make(func, *args, _start_thread=False,
                      _connect={"returned": returned, "errored": errored})
        self._workers.add(worker)
        worker.finished.connect(lambda: self._workers.discard(worker))
        worker.start()
        return worker

    def _schedule_prediction(self) -> None:
        """Predict the pending clicks; only the newest request's result is displayed."""
        ann = self.annotation
        if ann is None:
            return
        self._generation += 1
        gen = self._generation
        segmenter = ann.session.segmenter
        loading = isinstance(segmenter, _LazySegmenter) and not segmenter.loaded
        self._note = "loading the model (first prediction only)…" if loading else "predicting…"
        self._update_status()
        self._predictions += 1
        worker = self._start_worker(_predict_job, ann.session, gen,
                                    returned=self._on_prediction,
                                    errored=lambda exc: self._on_prediction_error(gen, exc))
        worker.finished.connect(self._on_prediction_finished)

    def _on_prediction_finished(self) -> None:
        """The last prediction job in flight ended: "predicting…" must not stay (a commit or
        undo may have superseded its result, which is then never shown)."""
        self._predictions -= 1
        if self._predictions <= 0:
            self._predictions = 0
            if self._note in ("predicting…", "loading the model (first prediction only)…"):
                self._note = ""
            self._update_status()

    def _clear_note(self) -> None:
        self._note = ""

    def _on_prediction(self, result: tuple[int, AnnotationSession, float]) -> None:
        gen, session, elapsed = result
        if gen != self._generation or self.session is not session:
            return  # superseded by a newer click: its own result will be shown
        self.last_latency = elapsed
        self._note = ""
        self._refresh(labels_changed=False)

    def _on_prediction_error(self, gen: int, exc: Exception) -> None:
        self._note = "the last prediction failed"
        show_error(f"RIS-Net prediction failed: {exc}. Your clicks are kept: change the model "
                   f"or device (they are predicted again), or press u to undo a click")
        self._refresh()

    # -- actions ---------------------------------------------------------------------------------
    def _guard(self) -> AnnotationSession | None:
        if self.session is None:
            show_warning("RIS-Net: pick an image layer first")
            return None
        if self._propagating:
            show_warning("RIS-Net: wait for the propagation to finish (or stop it)")
            return None
        return self.session

    def commit(self, then: Callable[[int], Any] | None = None) -> int | None:
        """Commit the current object under the next free label id; while correcting a
        committed object (no new object in progress), end the correction instead.

        When a click still waits for its prediction, the prediction finishes in a worker and
        the commit follows (returns None then; ``then(object_id)`` runs after it)."""
        session = self._guard()
        if session is None:
            return None
        if self._committing:
            self._deferred.append(lambda: self.commit(then))
            return None
        editing = self.object_spin.value()
        if not session.n_current_clicks and editing and editing in session.objects:
            self._stop_correcting()
            self._note = f"object {editing} corrected"
            self._refresh()
            return editing
        if not session.n_current_clicks:
            self._note = ""
            show_info("RIS-Net: nothing to commit: click on an object first")
            self._update_status()
            return None
        if session.has_pending or self._workers:
            self._committing = True
            self._note = "committing (finishing the prediction)…"
            self._update_status()
            ann = self.annotation

            def job() -> None:
                session.predict_pending(keep_failed=True)
                with session._seg_lock:  # a correction still predicting: wait for it here,
                    pass  # not on the GUI thread

            def done(_: Any = None) -> None:
                self._committing = False
                if self.annotation is ann:
                    object_id = self._commit_now(session)
                    if object_id is not None and then is not None:
                        then(object_id)
                self._run_deferred()

            def failed(exc: Exception) -> None:
                self._committing = False
                self._note = "the commit failed"
                show_error(f"RIS-Net: the commit failed: {exc}. Your clicks are kept")
                self._refresh()
                self._run_deferred()

            self._generation += 1  # the commit shows the result, not the superseded job
            self._start_worker(job, returned=done, errored=failed)
            return None
        object_id = self._commit_now(session)
        if object_id is not None and then is not None:
            then(object_id)
        return object_id

    def _commit_now(self, session: AnnotationSession) -> int | None:
        """The commit itself, on the GUI thread (the masks are predicted already: fast)."""
        ann = self.annotation  # the session belongs to it
        replace = self.overlap_combo.currentText() == REPLACE_EXISTING
        try:
            object_id = session.commit(overwrite=replace)
        except (ValueError, TypeError, OSError, RuntimeError) as exc:
            message = str(exc)
            if "under other objects" in message:
                message = (f"the object lies entirely under committed objects; choose "
                           f"'{REPLACE_EXISTING}' under 'overlaps' to paint it over them")
            self._note = ""
            show_warning(f"RIS-Net: {message}")
            self._refresh()
            return None
        self._generation += 1  # results of older clicks belong to the committed object
        if replace:
            ann.overwrite_ids.add(object_id)
        else:
            ann.overwrite_ids.discard(object_id)
        self.object_spin.setValue(0)
        self._note = f"object {object_id} committed"
        self._refresh()
        self._autosave()
        return object_id

    def undo(self) -> None:
        session = self._guard()
        if session is not None:
            self._after_history_change(session, session.undo(), "undo")

    def redo(self) -> None:
        session = self._guard()
        if session is not None:
            self._after_history_change(session, session.redo(), "redo")

    def clear(self) -> None:
        session = self._guard()
        if session is not None and session.clear():
            self._generation += 1
            self._note = "current object cleared (u brings it back)"
            self._refresh()
        elif session is not None:  # nothing in progress: stop editing a committed object
            editing = self.object_spin.value()
            self._stop_correcting()
            if editing:
                self._note = f"stopped correcting object {editing}"
                self._update_status()

    def _after_history_change(self, session: AnnotationSession, kind: str | None,
                              what: str = "undo") -> None:
        if kind is None:
            self._note = f"nothing to {what}"
            show_info(f"RIS-Net: nothing to {what}")
            self._update_status()
            return
        self._generation += 1
        self._note = f"{what}: {kind}"
        if self.object_spin.value() not in session.objects:
            self.object_spin.setValue(0)  # the corrected object was undone
        self._refresh()
        if kind not in ("click", "clear"):  # committed objects changed: the project too
            self._autosave()
        if session.has_pending:
            self._schedule_prediction()


__all__ = ["KEYS", "RISNetWidget", "default_segmenter_factory"]
