"""The "Fine-tune RIS-Net" widget: image + Labels layers annotated here (or image / label
folders) -> ``finetune(...)`` in a worker with a progress bar and a cancel button -> the
held-out NoC before / after, on how many objects.

Acceptance: the RIS-Net widgets switch to the new checkpoint (through ``_plugin_state``: napari
gives each widget its own viewer proxy) on their own only when the run finished and the held-out
estimate improved. A cancelled run, one without a held-out estimate, or one that did not need
fewer clicks is *offered*: "Use the fine-tuned model" / "Keep the current model", with the
numbers. A failed run offers nothing. Fewer than ``MIN_HELD_OUT`` held-out objects are called a
rough estimate."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from napari.layers import Image, Labels
from napari.qt.threading import create_worker
from napari.utils import progress
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import (QComboBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel,
                            QLineEdit, QProgressBar, QPushButton, QSpinBox, QVBoxLayout, QWidget)

from napari_risnet._napari.layers import ROLE_KEY
from napari_risnet._napari.plugin_state import offer_checkpoint
from napari_risnet._napari.triton_guard import keep_triton_out
from napari_risnet.threads import available_cores, default_threads
from napari_risnet.wording import plural

keep_triton_out()  # before fine-tuning imports torch (see _triton_guard: GL crash)

DEFAULT_OUT = Path.home() / "napari-risnet" / "finetuned.pt"
#: Below this many held-out objects the before / after numbers are called a rough estimate.
MIN_HELD_OUT = 5
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")


class _Relay(QObject):
    progressed = Signal(int, int, str)


class FinetuneWidget(QWidget):
    """Fine-tune RIS-Net on the objects annotated in this viewer.

    Either pick an image layer and its Labels layer (e.g. "<image> RIS-Net labels"), or give a
    data folder with ``images/`` and ``labels/`` holding files of the same stem.
    """

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.result: Any = None
        self.worker: Any = None
        self._stop = False
        self._pbar: progress | None = None
        self._relay = _Relay()
        self._relay.progressed.connect(self._on_progress)

        self.image_combo = QComboBox()
        self.labels_combo = QComboBox()
        self.folder_edit = QLineEdit()
        self.folder_edit.setPlaceholderText("optional: folder with images/ and labels/")
        self.folder_button = QPushButton("Browse…")
        self.folder_button.clicked.connect(self._browse_folder)
        self.epochs_spin = QSpinBox()
        self.epochs_spin.setRange(1, 1000)
        self.epochs_spin.setValue(5)
        self.steps_spin = QSpinBox()
        self.steps_spin.setRange(0, 100000)
        self.steps_spin.setValue(0)
        self.steps_spin.setSpecialValueText("auto")
        self.steps_spin.setToolTip("training steps per epoch (auto: about two passes over the "
                                   "objects, 20 to 200); fewer steps = a quicker, smaller change")
        self.threads_spin = QSpinBox()
        self.threads_spin.setRange(1, max(64, available_cores()))
        self.threads_spin.setValue(default_threads())
        self.threads_spin.setToolTip(f"CPU threads for training ({available_cores()} cores "
                                     f"here); the default leaves room for napari and other work")
        self.base_edit = QLineEdit("default")
        self.base_edit.setToolTip('"default" = the bundled model, or a checkpoint path')
        self.device_combo = QComboBox()
        self.device_combo.addItems(["auto", "cpu", "cuda"])
        self.out_edit = QLineEdit(str(DEFAULT_OUT))
        self.run_button = QPushButton("Fine-tune")
        self.run_button.clicked.connect(self.run)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.progress_bar = QProgressBar()
        self.progress_bar.setVisible(False)
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        self.result_label = QLabel("")
        self.result_label.setWordWrap(True)
        self.use_button = QPushButton("Use the fine-tuned model")
        self.use_button.clicked.connect(self.use_new_model)
        self.keep_button = QPushButton("Keep the current model")
        self.keep_button.clicked.connect(self.keep_current_model)
        for button in (self.use_button, self.keep_button):
            button.setVisible(False)

        form = QFormLayout()
        form.addRow("image", self.image_combo)
        form.addRow("labels", self.labels_combo)
        folder = QHBoxLayout()
        folder.addWidget(self.folder_edit)
        folder.addWidget(self.folder_button)
        form.addRow("or folder", folder)
        form.addRow("epochs", self.epochs_spin)
        form.addRow("steps per epoch", self.steps_spin)
        form.addRow("threads", self.threads_spin)
        form.addRow("base model", self.base_edit)
        form.addRow("device", self.device_combo)
        form.addRow("output", self.out_edit)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        layout.addLayout(buttons)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.status_label)
        layout.addWidget(self.result_label)
        choice = QHBoxLayout()
        choice.addWidget(self.use_button)
        choice.addWidget(self.keep_button)
        layout.addLayout(choice)
        layout.addStretch()
        for ev in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            ev.connect(self._refresh_choices)
        self._refresh_choices()

    @property
    def busy(self) -> bool:
        return self.worker is not None

    def _refresh_choices(self, event: Any = None) -> None:
        for combo, kind in ((self.image_combo, Image), (self.labels_combo, Labels)):
            current = combo.currentText()
            names = [ly.name for ly in self.viewer.layers if type(ly) is kind
                     and ly.metadata.get(ROLE_KEY) != "preview"]  # not the object being clicked
            combo.clear()
            combo.addItems(names)
            if current in names:
                combo.setCurrentText(current)
            elif kind is Labels:
                guess = f"{self.image_combo.currentText()} RIS-Net labels"
                if guess in names:
                    combo.setCurrentText(guess)

    def _browse_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Data folder (images/, labels/)")
        if path:
            self.folder_edit.setText(path)

    # -- data ------------------------------------------------------------------------------------
    def collect_data(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """The training pairs: from the folder when one is given, else from the layers."""
        folder = self.folder_edit.text().strip()
        if folder:
            return _read_folder(Path(folder))
        image_name, labels_name = self.image_combo.currentText(), self.labels_combo.currentText()
        if not image_name or not labels_name:
            raise ValueError("pick an image layer and its Labels layer (or a data folder)")
        image = self.viewer.layers[image_name]
        labels = np.asarray(self.viewer.layers[labels_name].data)
        data = np.asarray(image.data[0] if image.multiscale else image.data)
        spatial = data.shape[:-1] if image.rgb else data.shape
        if spatial != labels.shape:
            raise ValueError(f"image {image_name!r} {spatial} and labels {labels_name!r} "
                             f"{labels.shape} differ in shape")
        if not labels.any():
            raise ValueError(f"labels {labels_name!r} are empty: annotate some objects first")
        return [data], [labels.astype(np.int32, copy=False)]

    # -- run -------------------------------------------------------------------------------------
    def run(self) -> None:
        """Start fine-tuning in a worker."""
        if self.busy:
            return
        try:
            images, labels = self.collect_data()
        except (ValueError, TypeError, OSError) as exc:
            show_error(f"Fine-tune RIS-Net: {exc}")
            return
        kwargs = {"base": self.base_edit.text().strip() or "default",
                  "out": Path(self.out_edit.text().strip() or DEFAULT_OUT),
                  "epochs": int(self.epochs_spin.value()),
                  "steps_per_epoch": int(self.steps_spin.value()) or None,
                  "threads": int(self.threads_spin.value()),
                  "device": self.device_combo.currentText()}
        self._stop = False
        relay = self._relay

        def job() -> Any:
            from napari_risnet.training.finetune import finetune
            return finetune(images, labels, progress=lambda d, t, m: relay.progressed.emit(
                int(d), int(t), str(m)), should_stop=lambda: self._stop, **kwargs)

        self._pbar = progress(total=0, desc="Fine-tuning RIS-Net")
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress_bar.setRange(0, 0)  # busy until the first step reports a total
        self.progress_bar.setVisible(True)
        self.status_label.setText("starting: loading the training code…")
        self.result_label.setText("")
        self._show_choice(False)
        self.worker = create_worker(job, _start_thread=False,
                                    _connect={"returned": self._on_done,
                                              "errored": self._on_error})
        self.worker.finished.connect(self._on_finished)
        self.worker.start()

    def cancel(self) -> None:
        """Ask the running fine-tuning to stop after its current step."""
        self._stop = True
        self.status_label.setText("cancelling after the current step…")

    def _on_progress(self, done: int, total: int, message: str) -> None:
        pbar = self._pbar  # a late signal may arrive after the job ended
        if pbar is None:
            return
        self.progress_bar.setRange(0, max(0, total))
        if total:
            self.progress_bar.setValue(min(done, total))
        step = f"step {done}/{total}: " if total else ""
        self.status_label.setText(f"{step}{message}")
        if pbar.total != total:
            pbar.total = total
        pbar.set_description(message)
        pbar.update(done - pbar.n)

    def _on_done(self, result: Any) -> None:
        self.result = result
        text = _describe(result)
        self.status_label.setText("cancelled" if result.cancelled else "done")
        if result.cancelled and getattr(result, "steps", -1) == 0:
            self.result_label.setText(f"{text}\ncancelled before the first training step: "
                                      f"nothing new to use; the current model stays")
            show_info("Fine-tune RIS-Net: cancelled before training; the current model stays")
            return
        if _improved(result):
            taken = offer_checkpoint(self.viewer, result.checkpoint)
            use = ("now used by the RIS-Net widget" if taken else
                   "the RIS-Net widget opened next will use it")
            self.result_label.setText(f"{text}\ncheckpoint: {result.checkpoint} ({use})")
            show_info(f"RIS-Net fine-tuned: {text}; {use}")
            return
        why = _why_not_switched(result)
        self.result_label.setText(f"{text}\n{why}: the RIS-Net widget keeps its current model "
                                  f"unless you choose the new one.\ncheckpoint: "
                                  f"{result.checkpoint}")
        self._show_choice(True)
        show_info(f"Fine-tune RIS-Net: {why}; choose whether to use the new model")

    def _show_choice(self, visible: bool) -> None:
        for button in (self.use_button, self.keep_button):
            button.setVisible(visible)

    def use_new_model(self) -> None:
        """The user's choice: switch the RIS-Net widgets to the fine-tuned checkpoint."""
        if self.result is None:
            return
        taken = offer_checkpoint(self.viewer, self.result.checkpoint)
        use = ("now used by the RIS-Net widget" if taken else
               "the RIS-Net widget opened next will use it")
        self.result_label.setText(f"{_describe(self.result)}\ncheckpoint: "
                                  f"{self.result.checkpoint} ({use}, as you chose)")
        self._show_choice(False)

    def keep_current_model(self) -> None:
        """The user's choice: the RIS-Net widgets keep their model (the file stays on disk)."""
        if self.result is None:
            return
        self.result_label.setText(f"{_describe(self.result)}\nkept the current model; the "
                                  f"fine-tuned checkpoint stays at {self.result.checkpoint}")
        self._show_choice(False)

    def _on_error(self, exc: Exception) -> None:
        self.status_label.setText("failed")
        self.result_label.setText(f"failed: {exc}. The RIS-Net widget keeps its current model")
        self._show_choice(False)
        show_error(f"Fine-tune RIS-Net failed: {exc}")

    def _on_finished(self) -> None:
        self.worker = None
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.progress_bar.setVisible(False)
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _improved(result: Any) -> bool:
    """Finished (not cancelled), both numbers measured, and fewer clicks after."""
    if result.cancelled or getattr(result, "n_val", None) == 0:
        return False
    before, after = result.noc_before, result.noc_after
    return _finite(before) and _finite(after) and after < before


def _why_not_switched(result: Any) -> str:
    if result.cancelled:
        return "the run was cancelled"
    if getattr(result, "n_val", None) == 0 or not _finite(result.noc_after):
        return "the new model could not be checked on held-out objects"
    if result.noc_after > result.noc_before:
        return "the new model needs MORE clicks on the held-out objects"
    return "the new model needs no fewer clicks on the held-out objects"


def _describe(result: Any) -> str:
    """One honest line: the metric as computed, on how many held-out objects."""
    metric = getattr(result, "metric", "NoC@85")
    n_val = getattr(result, "n_val", None)
    cancelled = " (cancelled)" if result.cancelled else ""
    if n_val == 0:
        return (f"trained{cancelled}; {metric} not measured: annotate at least two objects so "
                f"one can be held out")
    held = "" if n_val is None else f" on {plural(int(n_val), 'held-out object')}"
    before = f"{result.noc_before:.2f}" if _finite(result.noc_before) else "not measured"
    if _finite(result.noc_after):
        after = f"after {result.noc_after:.2f} clicks"
    else:
        after = "after: not measured (cancelled before the first validation)"
    rough = ""
    if n_val is not None and 0 < n_val < MIN_HELD_OUT:
        rough = (f". Only {plural(int(n_val), 'object')} held out: a rough estimate (annotate "
                 f"more objects, at least {MIN_HELD_OUT * 5}, for a reliable one)")
    return f"{metric}{held}: before {before} → {after}{cancelled}{rough}"


def _read_folder(folder: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """images/<stem>.* and labels/<stem>.tif pairs of a data folder."""
    img_dir, lab_dir = folder / "images", folder / "labels"
    if not img_dir.is_dir() or not lab_dir.is_dir():
        raise ValueError(f"{folder} needs images/ and labels/ subfolders")
    from skimage.io import imread
    images, labels = [], []
    for path in sorted(img_dir.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        matches = [p for p in lab_dir.glob(f"{path.stem}.*") if p.suffix.lower() in
                   IMAGE_SUFFIXES]
        if matches:
            images.append(np.asarray(imread(path)))
            labels.append(np.asarray(imread(matches[0])).astype(np.int32))
    if not images:
        raise ValueError(f"no image in {img_dir} has a label file of the same stem in {lab_dir}")
    return images, labels


__all__ = ["FinetuneWidget"]
