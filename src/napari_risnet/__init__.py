"""napari-risnet: RIS-Net click-based interactive segmentation.

The package root is headless: it never imports napari or Qt, so the CLI, training and
evaluation run on a machine without a display.
"""
from importlib.metadata import PackageNotFoundError, version

from napari_risnet.clicks import Click

try:
    __version__ = version("napari-risnet")  # the installed metadata: one source, pyproject
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["Click", "__version__"]
