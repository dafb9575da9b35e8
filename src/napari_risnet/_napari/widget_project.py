"""The dock widget's project side: which folder an annotation autosaves to, restoring a saved
project when an image is annotated again, "Change folder…" and "Open project…". The files
themselves are written by ``annotation.project`` (napari-free); this is only the glue.

Mixed into ``RISNetWidget`` (``_widget.py``), whose attributes it uses: ``viewer``,
``annotation``, ``_annotations``, ``_settings()``, ``set_image_layer``, ``overlap_combo``,
``project_label``.
"""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari.layers import Image
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QFileDialog

from napari_risnet._napari.lazy_labels import sync_labels_layer
from napari_risnet._napari.layers import PROJECT_KEY, ROLE_KEY, SAVED_ROLE, unwrap_proxy
from napari_risnet.annotation.project import (ImageInfo, Project, ProjectState, default_folder,
                                              fingerprint, is_project, predictor_record)

if TYPE_CHECKING:
    from napari_risnet.annotation import AnnotationSession


def layer_path(layer: Any) -> str | None:
    """The file an image layer was read from, if any."""
    source = getattr(layer, "source", None)
    path = getattr(source, "path", None)
    return str(path) if path else None


class ProjectControls:
    """Autosave / reopen for the RIS-Net dock widget (see the module doc)."""

    def _connect_project_controls(self) -> None:
        self.project_button.clicked.connect(lambda: self.choose_project_folder())
        self.open_project_button.clicked.connect(lambda: self.open_project())

    # -- when an image starts being annotated ----------------------------------------------------
    def _attach_project(self, layer: Image, session: "AnnotationSession", data: Any) -> dict:
        """Pick the annotation's project folder and restore what it holds. Returns the fields
        ``ImageAnnotation`` keeps: project, image_info, overwrite_ids."""
        path = layer_path(layer)
        info = ImageInfo.of(data, bool(layer.rgb), None, path)
        named = layer.metadata.get(PROJECT_KEY)
        folder = Path(named) if named else default_folder(path, layer.name)
        candidates = [folder] if named else itertools.chain([folder], _numbered(folder))
        for candidate in candidates:  # a name shared by another image's project: next one
            project = Project(candidate)
            if not project.exists():
                break
            try:
                state = project.restore(session)
            except (ValueError, TypeError, OSError) as exc:
                if named:
                    raise ValueError(f"cannot reopen the project {candidate}: {exc}") from exc
                continue
            show_info(f"RIS-Net: reopened {len(state.object_ids)} objects from "
                      f"{project.folder}; the annotation continues")
            self._schedule_drop_saved_layers(project.folder)
            return {"project": project, "image_info": info,
                    "overwrite_ids": set(state.overwrite_ids)}
        if project.folder != folder:
            show_info(f"RIS-Net: {folder} holds the project of another image; this one saves "
                      f"to {project.folder}")
        overwrite_ids: set[int] = set()
        return {"project": project, "image_info": info, "overwrite_ids": overwrite_ids}

    # -- saving ----------------------------------------------------------------------------------
    def _project_record(self) -> tuple[dict, dict]:
        settings = self._settings()
        from napari_risnet._napari.widget_jobs import default_segmenter_factory

        default = self.segmenter_factory is default_segmenter_factory
        method = getattr(self.segmenter_factory, "method_name", "risnet" if default else "custom")
        model = {"method": method, **settings}
        predictor = predictor_record(self.annotation.session.segmenter if self.annotation
                                     else None)
        if predictor:  # replay rebuilds the same predictor after the defaults change
            model["predictor"] = predictor
        if default or model.get("checkpoint") not in (None, "default"):
            from napari_risnet.inference.bundled import checkpoint_record

            model.update(checkpoint_record(model.get("checkpoint")))  # a path, or which bundled
        return model, {"overlaps": self.overlap_combo.currentText()}

    def _autosave(self) -> bool:
        """Save the current annotation's committed objects; say so when it fails."""
        ann = self.annotation
        if ann is None or ann.project is None:
            return False
        if not ann.session.objects and not ann.project.exists():
            return False  # nothing committed yet: no folder is created
        model, settings = self._project_record()
        try:
            ann.project.save(ann.session, ann.image_info, model, settings, ann.overwrite_ids)
        except (OSError, ValueError) as exc:
            show_error(f"RIS-Net could not save the project to {ann.project.folder}: {exc}. "
                       f"Your work is still in napari: choose another folder (Change folder…)")
            return False
        sync_labels_layer(ann.labels, ann.session.labels)  # the first save moves them to disk
        self._update_project_label()
        return True

    def _update_project_label(self) -> None:
        ann = self.annotation
        if ann is None or ann.project is None:
            self.project_label.setText("no project yet")
            return
        state = "saved" if ann.project.exists() else "created at the first commit"
        self.project_label.setText(f"{ann.project.folder} ({state})")
        self.project_label.setToolTip(f"{ann.project.folder}: every commit is saved here "
                                      f"(labels.zarr, project.json)")

    # -- buttons ---------------------------------------------------------------------------------
    def choose_project_folder(self, folder: str | Path | None = None) -> bool:
        """Save the current annotation to another (new or empty) folder from now on."""
        ann = self.annotation
        if ann is None:
            show_warning("RIS-Net: pick an image layer first")
            return False
        if folder is None:
            folder = QFileDialog.getExistingDirectory(self, "Project folder for this image",
                                                      str(ann.project.folder.parent))
            if not folder:
                return False
        folder = Path(folder)
        if is_project(folder) and folder != ann.project.folder:
            show_warning(f"RIS-Net: {folder} already holds a project; use 'Open project…' to "
                         f"continue it, or choose an empty folder")
            return False
        ann.project = Project(folder)
        saved = self._autosave()
        self._update_project_label()
        show_info(f"RIS-Net: this image now saves to {folder}"
                  f"{' (saved)' if saved else ''}")
        return True

    def open_project(self, folder: str | Path | None = None) -> bool:
        """Reopen a project: on the open image it belongs to, else on its image file."""
        if folder is None:
            folder = QFileDialog.getExistingDirectory(self, "Open a RIS-Net project folder")
            if not folder:
                return False
        project = Project(folder)
        try:
            state = project.load()
        except (ValueError, OSError) as exc:
            show_error(f"RIS-Net cannot open {folder}: {exc}")
            return False
        layer = self._layer_for(state)
        if layer is None:
            path = state.image.path
            if not path or not Path(path).is_file():
                show_error(f"RIS-Net: the image of {folder} ({path or 'not saved'}) is neither "
                           f"open nor found; open the image first, then 'Open project…'")
                return False
            from napari_risnet.data import open_image

            layer = self.viewer.add_image(open_image(path), name=Path(path).stem,
                                          rgb=state.image.rgb or None,
                                          metadata={PROJECT_KEY: str(project.folder)})
            return self._annotation_for(layer) is not None
        ann = self._annotation_for(layer)
        if ann is None:
            return False
        if ann.project.folder != project.folder:
            if ann.session.objects:
                show_warning(f"RIS-Net: {len(ann.session.objects)} objects of "
                             f"{ann.project.folder} are replaced by the project {folder} "
                             f"(they stay saved in {ann.project.folder})")
            project.restore(ann.session, state)
            sync_labels_layer(ann.labels, ann.session.labels)
            ann.project, ann.overwrite_ids = project, set(state.overwrite_ids)
            show_info(f"RIS-Net: reopened {len(state.object_ids)} objects from {folder}")
        self._generation += 1
        self._refresh()
        self._update_project_label()
        return True

    def _layer_for(self, state: ProjectState) -> Image | None:
        """An open image layer that is the project's image (same pixels)."""
        for layer in self.viewer.layers:
            if not isinstance(layer, Image):
                continue
            data = layer.data[0] if layer.multiscale else layer.data
            if tuple(data.shape) == tuple(state.image.shape) and \
                    (not state.image.fingerprint or fingerprint(data) == state.image.fingerprint):
                return layer
        return None

    def _annotation_for(self, layer: Image) -> Any:
        self.set_image_layer(layer)
        ann = self.annotation
        return ann if ann is not None and ann.image is unwrap_proxy(layer) else None

    # -- the reader's labels layer ---------------------------------------------------------------
    def _schedule_drop_saved_layers(self, folder: Path) -> None:
        """The project reader adds the saved labels for viewing; once the widget restores the
        project its own labels layer shows them, so the reader's copy goes (after the current
        layer event, never inside it)."""
        QTimer.singleShot(0, lambda: self._drop_saved_layers(folder))

    def _drop_saved_layers(self, folder: Path) -> None:
        for layer in list(self.viewer.layers):
            if layer.metadata.get(ROLE_KEY) == SAVED_ROLE and \
                    Path(layer.metadata.get(PROJECT_KEY, "")) == Path(folder):
                self.viewer.layers.remove(layer)


def _numbered(folder: Path):
    """``folder 2``, ``folder 3``, … (endless; the caller stops at the first usable one)."""
    k = 2
    while True:
        yield folder.with_name(f"{folder.name} {k}")
        k += 1


__all__ = ["ProjectControls", "layer_path"]
