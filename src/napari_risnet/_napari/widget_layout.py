"""The layout of the "RIS-Net interactive segmentation" dock widget: its controls and their
arrangement, without behaviour (the controller in ``_widget.py`` wires them to the session)."""
from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (QCheckBox, QComboBox, QFormLayout, QHBoxLayout, QLabel, QLineEdit,
                            QProgressBar, QPushButton, QSizePolicy, QSpinBox, QVBoxLayout,
                            QWidget)

from napari_risnet.threads import available_cores, default_threads

DEFAULT_MODEL = "bundled default"
CHECKPOINT_MODEL = "checkpoint file"
KEEP_EXISTING = "keep existing"
REPLACE_EXISTING = "replace existing"


class RISNetLayout(QWidget):
    """The dock widget's controls; subclassed by the controller ``RISNetWidget``."""

    def __init__(self) -> None:
        super().__init__()
        self._build_ui()

    def _build_ui(self) -> None:
        """Create the controls (kept as attributes, so tests drive them) and arrange them."""
        self.image_combo = QComboBox()
        self.model_combo = QComboBox()
        self.model_combo.addItems([DEFAULT_MODEL, CHECKPOINT_MODEL])
        self.checkpoint_edit = QLineEdit()
        self.checkpoint_edit.setPlaceholderText("path/to/checkpoint.pt")
        self.browse_button = QPushButton("Browse…")
        self.device_combo = QComboBox()
        self.device_combo.addItems(["auto", "cpu", "cuda"])
        self.graphcut_check = QCheckBox("graph cut refinement")
        self.graphcut_check.setChecked(True)
        self.threads_spin = QSpinBox()
        self.threads_spin.setRange(1, max(64, available_cores()))
        self.threads_spin.setValue(default_threads())
        self.threads_spin.setToolTip(
            f"CPU threads for the model ({available_cores()} cores here). Fewer threads keep "
            f"clicks fast while other programs run; the default leaves room for napari and "
            f"other work")

        self.overlap_combo = QComboBox()
        self.overlap_combo.addItems([KEEP_EXISTING, REPLACE_EXISTING])
        self.overlap_combo.setToolTip("where a new object overlaps committed ones: keep their "
                                      "pixels, or paint the new object over them")
        self.negative_check = QCheckBox("left click = negative (n)")
        self.commit_button = QPushButton("Commit object (c)")
        self.undo_button = QPushButton("Undo (u)")
        self.redo_button = QPushButton("Redo (Shift-U)")
        self.clear_button = QPushButton("Clear object (Esc)")
        self.object_spin = QSpinBox()
        self.object_spin.setRange(0, 2 ** 31 - 1)
        self.object_spin.setToolTip("committed object that clicks correct and Propagate carries "
                                    "(0 = clicks make a new object; Propagate takes the last "
                                    "committed one)")
        self.propagate_button = QPushButton("Propagate through the stack (p)")
        self.stop_button = QPushButton("Cancel")
        self.stop_button.setToolTip("stop the propagation after the slice being predicted "
                                    "(the slices done so far are kept; u undoes them)")
        self.stop_button.setEnabled(False)
        self.progress_bar = QProgressBar()
        self.progress_bar.setVisible(False)
        self.progress_label = QLabel("")
        self.progress_label.setVisible(False)
        self.recompute_button = QPushButton("Recompute from points")
        self.recompute_button.setToolTip("rebuild the labels from the selected Points layer "
                                         "(e.g. a saved clicks CSV) or from our clicks layer")
        self.project_label = QLabel("no project yet")
        self.project_label.setWordWrap(True)
        self.project_label.setToolTip("every commit is saved here (labels.tif, project.json)")
        self.project_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # a long path must not widen the dock (and squeeze the canvas): it is clipped instead
        self.project_label.setSizePolicy(QSizePolicy.Policy.Ignored,
                                         QSizePolicy.Policy.Preferred)
        self.project_button = QPushButton("Change folder…")
        self.open_project_button = QPushButton("Open project…")
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
        form.addRow("threads", self.threads_spin)
        form.addRow("overlaps", self.overlap_combo)
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
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.progress_label)
        layout.addWidget(self.recompute_button)
        layout.addWidget(QLabel("project (autosaved on every commit):"))
        layout.addWidget(self.project_label)
        project_row = QHBoxLayout()
        project_row.addWidget(self.project_button)
        project_row.addWidget(self.open_project_button)
        layout.addLayout(project_row)
        layout.addWidget(self.status_label)
        layout.addStretch()


__all__ = ["CHECKPOINT_MODEL", "DEFAULT_MODEL", "KEEP_EXISTING", "REPLACE_EXISTING", "RISNetLayout"]
