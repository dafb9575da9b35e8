"""What backs the widget's labels layers without a label volume in memory: a project's chunked
labels are shown through their Zarr array (napari reads the slice it draws; volumes up to
64 MiB through their copy in memory), and the preview of
the object being clicked is a Zarr array in memory that stores only the slices holding a mask
(all-background chunks are not stored)."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def labels_layer_data(labels: Any) -> Any:
    """The array a napari Labels layer shows for a session's labels: the Zarr array of a
    project's ``ChunkedLabels`` (its copy in memory for a small volume), the numpy array
    itself otherwise."""
    if not getattr(labels, "is_chunked", False):
        return labels
    return labels.mirror if labels.mirror is not None else labels.array


def preview_array(shape: Sequence[int]) -> Any:
    """An all-background uint8 array of ``shape`` for the preview layer: numpy for a 2D image,
    for a stack a Zarr array in memory with one chunk per slice (a volume of zeros costs
    nothing; a slice costs memory only while it holds a mask)."""
    shape = tuple(int(s) for s in shape)
    if len(shape) <= 2:
        return np.zeros(shape, np.uint8)
    import zarr
    from zarr.storage import MemoryStore

    return zarr.create_array(store=MemoryStore(), shape=shape,
                             chunks=(1,) * (len(shape) - 2) + shape[-2:], dtype=np.uint8,
                             fill_value=0)


def sync_labels_layer(layer: Any, labels: Any) -> None:
    """Point ``layer`` at ``labels`` when the session moved to other storage (its first save
    into a project, a reopened project); nothing when it already shows them."""
    data = labels_layer_data(labels)
    if layer is not None and layer.data is not data:
        layer.data = data


__all__ = ["labels_layer_data", "preview_array", "sync_labels_layer"]
