"""The "Fine-tune RIS-Net" widget: image + Labels layers annotated here (or image / label
folders) -> ``finetune(...)`` in a worker with a progress bar and a cancel button -> every open
RIS-Net widget switches to the new checkpoint (through ``_plugin_state``: napari gives each
widget its own viewer proxy), and the held-out NoC before / after is reported."""
from __future__ import annotations

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

keep_triton_out()  # before fine-tuning imports torch (see _triton_guard: GL crash)

DEFAULT_OUT = Path.home() / "napari-risnet" / "finetuned.pt"
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

        form = QFormLayout()
        form.addRow("image", self.image_combo)
        form.addRow("labels", self.labels_combo)
        folder = QHBoxLayout()
        folder.addWidget(self.folder_edit)
        folder.addWidget(self.folder_button)
        form.addRow("or folder", folder)
        form.addRow("epochs", self.epochs_spin)
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
        taken = offer_checkpoint(self.viewer, result.checkpoint)
        use = ("now used by the RIS-Net widget" if taken else
               "the RIS-Net widget opened next will use it")
        self.result_label.setText(f"{text}\ncheckpoint: {result.checkpoint} ({use})")
        self.status_label.setText("cancelled" if result.cancelled else "done")
        show_info(f"RIS-Net fine-tuned: {text}; {use}")

    def _on_error(self, exc: Exception) -> None:
        self.status_label.setText("")
        self.result_label.setText(f"failed: {exc}")
        show_error(f"Fine-tune RIS-Net failed: {exc}")

    def _on_finished(self) -> None:
        self.worker = None
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.progress_bar.setVisible(False)
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None


def _describe(result: Any) -> str:
    """One honest line: the metric as computed, on how many held-out objects."""
    metric = getattr(result, "metric", "NoC@85")
    n_val = getattr(result, "n_val", None)
    cancelled = " (cancelled)" if result.cancelled else ""
    if n_val == 0:
        return (f"trained{cancelled}; {metric} not measured: annotate at least two objects so "
                f"one can be held out")
    held = "" if n_val is None else f" on {n_val} held-out objects"
    return (f"{metric}{held}: before {result.noc_before:.2f} → after {result.noc_after:.2f} "
            f"clicks{cancelled}")


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
