"""napari-risnet: RIS-Net click-based interactive segmentation.

The package root is headless: it never imports napari or Qt, so the CLI, training and
evaluation run on a machine without a display.
"""
from napari_risnet.clicks import Click

__version__ = "0.1.0"

__all__ = ["Click", "__version__"]
