"""napari reader for annotation project folders (``*.risnet``): the image (when its file is
found) and the saved labels, both lazy (the labels' Zarr array, a large TIFF memory-mapped):
napari reads the slices it draws. Docking the RIS-Net widget then restores the objects and their
clicks, and the annotation continues (the widget replaces the saved-labels layer by its own)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from napari_risnet._napari.lazy_labels import labels_layer_data
from napari_risnet._napari.layers import PROJECT_KEY, ROLE_KEY, SAVED_ROLE
from napari_risnet.annotation.project import Project, is_project

LayerData = tuple[Any, dict[str, Any], str]


def get_reader(path: str | list[str]) -> Callable[[Any], list[LayerData]] | None:
    """napari's reader hook: our reader for one project folder, None for anything else."""
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    return read_project if is_project(path) else None


def read_project(path: str | list[str]) -> list[LayerData]:
    """Layers of a project: its image (if the file is found) and its labels."""
    if isinstance(path, (list, tuple)):
        path = path[0]
    folder = Path(path)
    state = Project(folder).load(writable=False)  # a look: never rolls back a live commit
    name = folder.name[:-len(".risnet")] if folder.name.endswith(".risnet") else folder.name
    meta = {PROJECT_KEY: str(folder)}
    layers: list[LayerData] = []
    image_path = state.image.path
    if image_path and Path(image_path).is_file():
        from napari_risnet.data import open_image

        name = Path(image_path).stem
        layers.append((open_image(image_path), {"name": name, "metadata": dict(meta),
                                                  "rgb": state.image.rgb}, "image"))
    layers.append((labels_layer_data(state.labels), {"name": f"{name} RIS-Net labels (saved)",
                                  "metadata": {**meta, ROLE_KEY: SAVED_ROLE}}, "labels"))
    return layers


__all__ = ["get_reader", "read_project"]
