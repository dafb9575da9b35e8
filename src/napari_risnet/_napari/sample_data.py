"""Sample data for napari's File > Open Sample menu (files shipped in ``sample_data/``,
see ``sample_data/LICENSES.md``)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "sample_data"
NUCLEI_FILE = SAMPLE_DIR / "nuclei_dsb2018.png"
STACK_FILE = SAMPLE_DIR / "nuclei_stack_cells3d.tif"
#: cells3d voxel size in micrometres (z, y, x): napari then shows the stack isotropically.
STACK_SCALE = (0.29, 0.26, 0.26)

LayerData = tuple[np.ndarray, dict[str, Any], str]


def load_nuclei() -> np.ndarray:
    """The 256 x 256 uint8 DSB2018 fluorescence nuclei image."""
    from skimage.io import imread
    return np.asarray(imread(NUCLEI_FILE))


def load_stack() -> np.ndarray:
    """The (20, 128, 128) uint16 cells3d nuclei crop."""
    import tifffile
    return tifffile.imread(STACK_FILE)


def nuclei_sample() -> list[LayerData]:
    """napari sample: a 2D nuclei image."""
    return [(load_nuclei(), {"name": "nuclei (DSB2018)"}, "image")]


def nuclei_stack_sample() -> list[LayerData]:
    """napari sample: a small 3D nuclei stack, for propagation."""
    return [(load_stack(), {"name": "nuclei stack (cells3d)", "scale": STACK_SCALE}, "image")]


#: The names of napari's File > Open Sample menu (``napari.yaml``'s keys).
SAMPLES = {"nuclei": nuclei_sample, "nuclei_stack": nuclei_stack_sample}
#: Old names still accepted (``napari-risnet demo --sample stack``).
SAMPLE_ALIASES = {"stack": "nuclei_stack"}

__all__ = ["SAMPLES", "SAMPLE_ALIASES", "load_nuclei", "load_stack", "nuclei_sample", "nuclei_stack_sample"]
