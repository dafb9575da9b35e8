"""``run_demo``: napari with a sample image and the RIS-Net widget docked (for
``napari-risnet demo``)."""
from __future__ import annotations

from typing import Any

from napari_risnet._napari.sample_data import SAMPLES


def run_demo(sample: str = "nuclei", block: bool = True, **widget_kwargs: Any) -> Any:
    """Open a viewer with a sample ("nuclei" 2D or "stack" 3D) and the widget docked.

    Args:
        sample: which sample image to open.
        block: run the Qt event loop until the window is closed.
        widget_kwargs: passed to RISNetWidget (e.g. ``segmenter_factory``).
    Returns:
        the napari Viewer.
    """
    if sample not in SAMPLES:
        raise ValueError(f"unknown sample {sample!r}; choose one of {sorted(SAMPLES)}")
    import napari

    from napari_risnet._napari.widget import RISNetWidget

    viewer = napari.Viewer(title="napari-risnet demo")
    for data, kwargs, layer_type in SAMPLES[sample]():
        getattr(viewer, f"add_{layer_type}")(data, **kwargs)
    widget = RISNetWidget(viewer, **widget_kwargs)
    viewer.window.add_dock_widget(widget, name="RIS-Net interactive segmentation", area="right")
    if block:
        napari.run()
    return viewer


__all__ = ["run_demo"]
