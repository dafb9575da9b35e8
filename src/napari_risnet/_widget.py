"""The "RIS-Net interactive segmentation" dock widget: napari events -> session calls,
session state -> layers. Predictions and propagation run in thread workers.

Mouse (on the clicks layer, in pan / zoom mode): left click = positive click; right click or
Control-click (Command on macOS) = negative click; dragging pans as usual.
Keys (bound on the clicks layer only): ``c`` or Enter commit, ``u`` undo, ``Shift-U`` redo,
``Escape`` clear the current object (or stop editing a committed one), ``n`` toggle the sign of
left clicks, ``p`` propagate, ``e`` erase the edited object on the shown slice.

Stacks: a click on a committed object (with no object in progress), or any click while the
"object" box names one, *corrects* that object on that slice; ``p`` then re-propagates from the
corrected slice, keeping every slice you clicked on as it is.
"""
from __future__ import annotations

import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
from napari.layers import Image, Labels, Points
from napari.qt.threading import create_worker
from napari.utils import progress
from napari.utils.colormaps import DirectLabelColormap
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import (QCheckBox, QComboBox, QFileDialog, QFormLayout, QHBoxLayout,
                            QLabel, QLineEdit, QPushButton, QSpinBox, QVBoxLayout, QWidget)

from napari_risnet._layers import (mask_to_preview, points_from_records, records_from_points,
                                   world_to_click)
from napari_risnet.clicks import Click
from napari_risnet.session import AnnotationSession, PropagationResult

if TYPE_CHECKING:  # torch is imported only when the first prediction needs the model
    from napari_risnet.inference.predictor import InteractiveSegmenter

#: factory(checkpoint="default" | path, device="auto" | "cpu" | "cuda", use_graphcut=bool)
SegmenterFactory = Callable[..., "InteractiveSegmenter"]

DEFAULT_MODEL = "bundled default"
CHECKPOINT_MODEL = "checkpoint file"
PREVIEW_COLOR = (1.0, 0.85, 0.0, 1.0)
#: Canvas pixels the mouse may move between press and release and still count as a click.
CLICK_TOLERANCE_PX = 4.0
KEYS = {"commit": ("c", "Enter"), "undo": ("u",), "redo": ("Shift-U",),
        "clear": ("Escape",), "toggle_sign": ("n",), "propagate": ("p",),
        "erase_slice": ("e",)}

_WIDGETS: "weakref.WeakSet[RISNetWidget]" = weakref.WeakSet()
_PENDING_CHECKPOINTS: dict[int, Path] = {}


def default_segmenter_factory(checkpoint: str = "default", device: str = "auto",
                              use_graphcut: bool = True) -> "InteractiveSegmenter":
    """The RIS-Net Predictor (imported here: torch loads only when a prediction is needed)."""
    from napari_risnet.inference.predictor import Predictor
    return Predictor(checkpoint=checkpoint, device=device, use_graphcut=use_graphcut)


class _LazySegmenter:
    """Builds the real segmenter on first use, inside the worker thread (loading weights is
    slow and may fail: the error then surfaces as a notification, not at widget creation)."""

    def __init__(self, factory: SegmenterFactory, **settings: Any) -> None:
        self.factory = factory
        self.settings = settings
        self._segmenter: "InteractiveSegmenter | None" = None

    def _get(self) -> "InteractiveSegmenter":
        if self._segmenter is None:
            self._segmenter = self.factory(**self.settings)
        return self._segmenter

    @property
    def calibrated(self) -> bool:
        """Whether the probabilities are a model's confidence (propagation's stop rule)."""
        return getattr(self._get(), "calibrated", True)

    def set_image(self, image: Any, channels: Any = None) -> None:
        self._get().set_image(image, channels)

    def predict(self, clicks: Any, prev_mask: Any = None) -> Any:
        return self._get().predict(clicks, prev_mask=prev_mask)


class _Relay(QObject):
    """Carries progress from a worker thread to the main thread (queued signal)."""

    progressed = Signal(int, int, str)


@dataclass
class _Annotation:
    """One image layer being annotated: its session and our three layers."""

    image: Image
    session: AnnotationSession
    points: Points
    labels: Labels
    preview: Labels
    preview_slices: set = field(default_factory=set)


class RISNetWidget(QWidget):
    """Dock widget for click-based segmentation with RIS-Net.

    Args:
        napari_viewer: the viewer (napari passes it).
        segmenter_factory: builds the method from (checkpoint, device, use_graphcut); tests
            inject a GraphCutBaseline factory here.
    """

    def __init__(self, napari_viewer: Any, segmenter_factory: SegmenterFactory | None = None
                 ) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.segmenter_factory: SegmenterFactory = segmenter_factory or default_segmenter_factory
        self.negative_mode = False
        self.last_latency: float | None = None
        self.annotation: _Annotation | None = None
        self._annotations: dict[int, _Annotation] = {}
        self._generation = 0
        self._workers: set = set()
        self._propagating = False
        self._creating = False
        self._stop_requested = False
        self._corrected: tuple[int, tuple] | None = None  # (object, slice) last corrected
        self._pbar: progress | None = None
        self._relay = _Relay()
        self._relay.progressed.connect(self._on_progress)
        self._build_ui()
        pending = _PENDING_CHECKPOINTS.pop(id(napari_viewer), None)
        if pending is not None:
            self.set_checkpoint(pending)
        self.viewer.layers.events.inserted.connect(self._refresh_image_choices)
        self.viewer.layers.events.removed.connect(self._on_layer_removed)
        self._refresh_image_choices()
        _WIDGETS.add(self)

    # -- UI --------------------------------------------------------------------------------------
    def _build_ui(self) -> None:
        self.image_combo = QComboBox()
        self.image_combo.currentTextChanged.connect(self._on_image_choice)
        self.model_combo = QComboBox()
        self.model_combo.addItems([DEFAULT_MODEL, CHECKPOINT_MODEL])
        self.checkpoint_edit = QLineEdit()
        self.checkpoint_edit.setPlaceholderText("path/to/checkpoint.pt")
        self.browse_button = QPushButton("Browse…")
        self.browse_button.clicked.connect(self._browse_checkpoint)
        self.device_combo = QComboBox()
        self.device_combo.addItems(["auto", "cpu", "cuda"])
        self.graphcut_check = QCheckBox("graph cut refinement")
        self.graphcut_check.setChecked(True)
        for signal in (self.model_combo.currentTextChanged, self.checkpoint_edit.editingFinished,
                       self.device_combo.currentTextChanged, self.graphcut_check.toggled):
            signal.connect(self._on_settings_changed)

        self.negative_check = QCheckBox("left click adds negative clicks (n)")
        self.negative_check.toggled.connect(self._set_negative_mode)
        self.commit_button = QPushButton("Commit object (c)")
        self.undo_button = QPushButton("Undo (u)")
        self.redo_button = QPushButton("Redo (Shift-U)")
        self.clear_button = QPushButton("Clear object (Esc)")
        self.object_spin = QSpinBox()
        self.object_spin.setRange(0, 2 ** 31 - 1)
        self.object_spin.valueChanged.connect(lambda _: self._update_status())
        self.object_spin.setToolTip("committed object that clicks correct and Propagate carries "
                                    "(0 = clicks make a new object; Propagate takes the last "
                                    "committed one)")
        self.propagate_button = QPushButton("Propagate through the stack (p)")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.recompute_button = QPushButton("Recompute from points")
        self.recompute_button.setToolTip("rebuild the labels from the selected Points layer "
                                         "(e.g. a saved clicks CSV) or from our clicks layer")
        self.commit_button.clicked.connect(self.commit)
        self.undo_button.clicked.connect(self.undo)
        self.redo_button.clicked.connect(self.redo)
        self.clear_button.clicked.connect(self.clear)
        self.propagate_button.clicked.connect(lambda: self.propagate())
        self.stop_button.clicked.connect(self.request_stop)
        self.recompute_button.clicked.connect(lambda: self.recompute_from_points())
        self.status_label = QLabel("pick an image layer")
        self.status_label.setWordWrap(True)

        form = QFormLayout()
        form.addRow("image", self.image_combo)
        form.addRow("model", self.model_combo)
        row = QHBoxLayout()
        row.addWidget(self.checkpoint_edit)
        row.addWidget(self.browse_button)
        form.addRow("checkpoint", row)
        form.addRow("device", self.device_combo)
        form.addRow("", self.graphcut_check)
        form.addRow("", self.negative_check)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        for a, b in ((self.commit_button, self.clear_button), (self.undo_button, self.redo_button)):
            pair = QHBoxLayout()
            pair.addWidget(a)
            pair.addWidget(b)
            layout.addLayout(pair)
        prop = QHBoxLayout()
        prop.addWidget(QLabel("object"))
        prop.addWidget(self.object_spin)
        prop.addWidget(self.propagate_button)
        prop.addWidget(self.stop_button)
        layout.addLayout(prop)
        layout.addWidget(self.recompute_button)
        layout.addWidget(self.status_label)
        layout.addStretch()

    @property
    def session(self) -> AnnotationSession | None:
        return None if self.annotation is None else self.annotation.session

    @property
    def busy(self) -> bool:
        """Whether a prediction, propagation or recomputation is running."""
        return bool(self._workers)

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
        removed = event.value
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
                "use_graphcut": self.graphcut_check.isChecked()}

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
        self._update_status()

    def _create_annotation(self, layer: Image) -> _Annotation:
        data = layer.data[0] if layer.multiscale else layer.data
        session = AnnotationSession(data, self._make_segmenter(), rgb=bool(layer.rgb))
        transform = {"scale": layer.scale, "translate": layer.translate,
                     "rotate": layer.rotate, "shear": layer.shear,
                     "affine": layer.affine.affine_matrix}
        labels = self.viewer.add_labels(session.labels, name=f"{layer.name} RIS-Net labels",
                                        **transform)
        preview = self.viewer.add_labels(
            np.zeros(session.labels_shape, np.uint8), name=f"{layer.name} RIS-Net object",
            opacity=0.6, colormap=DirectLabelColormap(color_dict={None: (0, 0, 0, 0),
                                                                  1: PREVIEW_COLOR}),
            **transform)
        size = max(3.0, min(session.spatial_shape) / 40)
        points = self.viewer.add_points(
            np.zeros((0, len(session.labels_shape))), name=f"{layer.name} RIS-Net clicks",
            size=size, border_width=0.1, border_color="white", **transform)
        points.mouse_drag_callbacks.append(self._on_mouse_drag)
        for action, keys in KEYS.items():
            for key in keys:
                points.bind_key(key, self._key_handler(action), overwrite=True)
        return _Annotation(layer, session, points, labels, preview)

    def _key_handler(self, action: str) -> Callable[[Any], None]:
        ref = weakref.ref(self)

        def handler(layer: Any) -> None:
            widget = ref()
            if widget is not None:
                {"commit": widget.commit, "undo": widget.undo, "redo": widget.redo,
                 "clear": widget.clear, "toggle_sign": widget.toggle_sign,
                 "propagate": widget.propagate, "erase_slice": widget.erase_slice}[action]()
        handler.__name__ = f"risnet_{action}"
        handler.__doc__ = f"RIS-Net: {action.replace('_', ' ')}"
        return handler

    # -- mouse -----------------------------------------------------------------------------------
    def _on_mouse_drag(self, layer: Points, event: Any):
        """Click (press and release without a drag) -> a click; a drag pans as usual."""
        if event.type != "mouse_press" or layer.mode != "pan_zoom":
            return
        button = event.button
        modifiers = tuple(event.modifiers or ())  # vispy Keys compare equal to their names
        position = tuple(event.position)
        press_pos = np.array(getattr(event, "pos", (0, 0)), dtype=float)
        dragged = False
        yield
        while event.type == "mouse_move":
            pos = getattr(event, "pos", None)
            if pos is not None and np.hypot(*(np.asarray(pos, float) - press_pos)) \
                    > CLICK_TOLERANCE_PX:
                dragged = True
            yield
        if dragged or button not in (1, 2):
            return
        if self.viewer.dims.ndisplay != 2:
            show_warning("RIS-Net: click in the 2D view (clicks are made on one slice)")
            return
        modified = "Control" in modifiers or "Meta" in modifiers
        negative = button == 2 or (modified != self.negative_mode)
        self.add_click_at(position, positive=not negative)

    def add_click_at(self, world_position: Any, positive: bool = True) -> None:
        """Add a click at a world position (what the mouse callback calls)."""
        ann = self.annotation
        if ann is None:
            show_warning("RIS-Net: pick an image layer first")
            return
        if self._propagating:
            show_warning("RIS-Net: wait for the propagation to finish (or stop it)")
            return
        try:
            key, row, col = world_to_click(ann.image, world_position,
                                           len(ann.session.leading_shape))
            target = self._correction_target(key, row, col)
            if target:
                self._correct(target, Click(row, col, positive), key)
                return
            ann.session.add_click(Click(row, col, positive), key, predict=False)
        except (ValueError, TypeError) as exc:
            show_warning(f"RIS-Net: {exc}")
            return
        self._refresh_points()
        self._schedule_prediction()

    # -- corrections of committed objects --------------------------------------------------------
    def _correction_target(self, key: tuple, row: float, col: float) -> int:
        """The committed object a click corrects: the one the "object" box names, else the one
        under the click when no object is in progress; 0 = the click is for a new object."""
        session = self.session
        chosen = self.object_spin.value()
        if chosen and chosen in session.objects:
            return chosen
        if session.n_current_clicks == 0:
            return session.object_at(key, row, col)
        return 0

    def _correct(self, object_id: int, click: Click, key: tuple) -> None:
        """Correct a committed object on one slice in a worker (the object becomes the edited
        one: the next clicks correct it too, until Escape or a commit)."""
        session = self.session
        self.object_spin.setValue(object_id)
        self._corrected = (object_id, key)
        self._generation += 1

        def job() -> float:
            tic = time.perf_counter()
            session.correct(object_id, click, key)
            return time.perf_counter() - tic

        self._start_worker(job, returned=self._on_corrected,
                           errored=lambda exc: (show_warning(f"RIS-Net: {exc}"),
                                                self._refresh()))

    def _on_corrected(self, elapsed: float) -> None:
        self.last_latency = elapsed
        self._refresh()

    def erase_slice(self) -> None:
        """Take the edited object (the "object" box) off the slice shown: it ends there."""
        session = self._guard()
        if session is None or not session.leading_shape:
            return
        object_id = self.object_spin.value()
        if object_id not in session.objects:
            show_warning("RIS-Net: click on a committed object first (or pick it in the "
                         "object box), then press e on a slice it should not reach")
            return
        key, _, _ = world_to_click(self.annotation.image, self.viewer.dims.point,
                                   len(session.leading_shape))
        try:
            session.erase_slice(object_id, key)
        except ValueError as exc:
            show_warning(f"RIS-Net: {exc}")
            return
        self._corrected = None
        self._refresh()

    def toggle_sign(self) -> None:
        self.negative_check.setChecked(not self.negative_mode)

    def _set_negative_mode(self, checked: bool) -> None:
        self.negative_mode = bool(checked)
        self._update_status()

    # -- prediction in a worker ------------------------------------------------------------------
    def _start_worker(self, func: Callable, *args: Any, returned: Callable,
                      errored: Callable) -> Any:
        worker = create_worker(func, *args, _start_thread=False,
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
        self._start_worker(_predict_job, ann.session, gen,
                           returned=self._on_prediction,
                           errored=lambda exc: self._on_prediction_error(gen, exc))

    def _on_prediction(self, result: tuple[int, AnnotationSession, float]) -> None:
        gen, session, elapsed = result
        if gen != self._generation or self.session is not session:
            return  # superseded by a newer click: its own result will be shown
        self.last_latency = elapsed
        self._refresh()

    def _on_prediction_error(self, gen: int, exc: Exception) -> None:
        show_error(f"RIS-Net prediction failed: {exc}")
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

    def commit(self) -> int | None:
        """Commit the current object under the next free label id."""
        session = self._guard()
        if session is None:
            return None
        try:
            object_id = session.commit()
        except (ValueError, TypeError, FileNotFoundError, RuntimeError) as exc:
            show_warning(f"RIS-Net: {exc}")
            self._refresh()
            return None
        self._generation += 1  # results of older clicks belong to the committed object
        self.object_spin.setValue(0)
        self._refresh()
        return object_id

    def undo(self) -> None:
        session = self._guard()
        if session is not None and session.undo() is not None:
            self._after_history_change(session)

    def redo(self) -> None:
        session = self._guard()
        if session is not None and session.redo() is not None:
            self._after_history_change(session)

    def clear(self) -> None:
        session = self._guard()
        if session is not None and session.clear():
            self._generation += 1
            self._refresh()
        elif session is not None:  # nothing in progress: stop editing a committed object
            self.object_spin.setValue(0)
            self._corrected = None

    def _after_history_change(self, session: AnnotationSession) -> None:
        self._generation += 1
        self._refresh()
        if session.has_pending:
            self._schedule_prediction()

    # -- propagation -----------------------------------------------------------------------------
    def propagate(self, object_id: int | None = None) -> None:
        """Carry an object (default: the spin box, else the current or last committed one)
        through the stack in a worker, with a progress bar."""
        session = self._guard()
        if session is None:
            return
        if not session.leading_shape:
            show_warning("RIS-Net: propagation needs a stack (an image with a Z or T axis)")
            return
        if object_id is None:
            object_id = self.object_spin.value() or None
        if object_id is None:
            if session.n_current_clicks:
                object_id = self.commit()
                if object_id is None:
                    return
            elif session.objects:
                object_id = max(session.objects)
            else:
                show_warning("RIS-Net: click on an object first, then propagate it")
                return
        if object_id not in session.objects:
            show_warning(f"RIS-Net: object {object_id} is not committed")
            return
        # after a correction: carry it to the neighbours (clicked slices stay as they are)
        from_slice = None
        if self._corrected is not None and self._corrected[0] == object_id \
                and self._corrected[1] in session.objects[object_id].slices:
            from_slice = self._corrected[1]
        self._corrected = None
        self._propagating = True
        self._stop_requested = False
        self.stop_button.setEnabled(True)
        self.propagate_button.setEnabled(False)
        self._pbar = progress(total=0, desc=f"Propagating object {object_id}")
        relay = self._relay

        def job() -> PropagationResult:
            return session.propagate(object_id, from_slice=from_slice,
                                     progress=lambda d, t, m: relay.progressed.emit(d, t, m),
                                     should_stop=lambda: self._stop_requested)

        self._start_worker(job, returned=self._on_propagated, errored=self._on_long_job_error)

    def request_stop(self) -> None:
        self._stop_requested = True

    def _on_progress(self, done: int, total: int, message: str) -> None:
        pbar = self._pbar  # a late signal may arrive after the job ended
        if pbar is None:
            return
        if pbar.total != total:
            pbar.total = total
        pbar.set_description(message)
        pbar.update(done - pbar.n)

    def _end_long_job(self) -> None:
        self._propagating = False
        self.stop_button.setEnabled(False)
        self.propagate_button.setEnabled(True)
        self.recompute_button.setEnabled(True)
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None

    def _on_propagated(self, result: PropagationResult) -> None:
        self._end_long_job()
        self._refresh()
        reasons = "; ".join(f"{'up' if d > 0 else 'down'}: {r}" for d, r in result.stopped.items())
        show_info(f"RIS-Net: object {result.object_id} propagated to {len(result.slices)} "
                  f"slices{' (stopped)' if result.cancelled else ''}. {reasons}")

    def _on_long_job_error(self, exc: Exception) -> None:
        self._end_long_job()
        show_error(f"RIS-Net: {exc}")
        self._refresh()

    # -- reproducibility -------------------------------------------------------------------------
    def recompute_from_points(self, points_layer: Points | None = None) -> None:
        """Rebuild the labels from saved clicks (a Points layer with object_id / sign features,
        e.g. read back from the CSV napari writes for our clicks layer), in a worker."""
        session = self._guard()
        if session is None:
            return
        if points_layer is None:
            active = self.viewer.layers.selection.active
            points_layer = active if isinstance(active, Points) else self.annotation.points
        try:
            records = records_from_points(points_layer.data, points_layer.features,
                                          len(session.leading_shape))
        except (ValueError, TypeError) as exc:
            show_error(f"RIS-Net cannot read clicks from {points_layer.name!r}: {exc}")
            return
        self._propagating = True
        self.recompute_button.setEnabled(False)
        self._pbar = progress(total=0, desc="Recomputing from points")
        relay = self._relay

        def job() -> list[int]:
            return session.recompute(records,
                                     progress=lambda d, t, m: relay.progressed.emit(d, t, m),
                                     should_stop=lambda: self._stop_requested)

        self._stop_requested = False
        self.stop_button.setEnabled(True)
        self._start_worker(job, returned=self._on_recomputed, errored=self._on_long_job_error)

    def _on_recomputed(self, ids: list[int]) -> None:
        self._end_long_job()
        self._generation += 1
        self._refresh()
        if self.session is not None and self.session.has_pending:
            self._schedule_prediction()
        show_info(f"RIS-Net: recomputed {len(ids)} objects from the clicks")

    # -- display ---------------------------------------------------------------------------------
    def _refresh(self) -> None:
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
        ann.preview.refresh()
        ann.labels.refresh()
        self._update_status()

    def _refresh_points(self) -> None:
        ann = self.annotation
        if ann is None:
            return
        data, features, colors = points_from_records(ann.session.click_records(),
                                                     len(ann.session.leading_shape))
        ann.points.data = data
        ann.points.features = features
        if len(data):
            ann.points.face_color = colors
        self._update_status()

    def _update_status(self) -> None:
        session = self.session
        if session is None:
            self.status_label.setText("pick an image layer")
            return
        latency = "-" if self.last_latency is None else f"{self.last_latency * 1000:.0f} ms"
        sign = "negative" if self.negative_mode else "positive"
        editing = self.object_spin.value()
        target = (f"clicks correct object {editing} (Esc: stop)"
                  if editing and editing in session.objects else
                  f"{session.n_current_clicks} clicks on the current object")
        self.status_label.setText(
            f"{target} · {len(session.objects)} objects · last prediction {latency} · "
            f"left click = {sign}")


def _predict_job(session: AnnotationSession, gen: int) -> tuple[int, AnnotationSession, float]:
    """Worker body: predict the pending clicks, report how long it took."""
    tic = time.perf_counter()
    session.predict_pending()
    return gen, session, time.perf_counter() - tic


def use_checkpoint(viewer: Any, path: str | Path) -> bool:
    """Switch the docked RIS-Net widget of ``viewer`` to a checkpoint; when none is docked,
    remember it for the widget opened next. Returns whether a docked widget took it."""
    taken = False
    for widget in list(_WIDGETS):
        if widget.viewer is viewer:
            widget.set_checkpoint(path)
            taken = True
    if not taken:
        _PENDING_CHECKPOINTS[id(viewer)] = Path(path)
    return taken


__all__ = ["KEYS", "RISNetWidget", "default_segmenter_factory", "use_checkpoint"]
