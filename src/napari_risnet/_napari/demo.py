"""``run_demo``: napari with a sample image and the RIS-Net widget docked (for
``napari-risnet demo``)."""
from __future__ import annotations

from typing import Any

from napari_risnet._napari.sample_data import SAMPLE_ALIASES, SAMPLES


def run_demo(sample: str = "nuclei", block: bool = True, threads: int | None = None,
             **widget_kwargs: Any) -> Any:
    """Open a viewer with a sample ("nuclei" 2D or "nuclei_stack" 3D, the names of napari's
    File > Open Sample menu; "stack" is accepted too) and the widget docked.

    Args:
        sample: which sample image to open.
        block: run the Qt event loop until the window is closed.
        threads: the widget's torch thread count (None: its default).
        widget_kwargs: passed to RISNetWidget (e.g. ``segmenter_factory``).
    Returns:
        the napari Viewer.
    """
    sample = SAMPLE_ALIASES.get(sample, sample)
    if sample not in SAMPLES:
        raise ValueError(f"unknown sample {sample!r}; choose one of {sorted(SAMPLES)}")
    import napari

    from napari_risnet._napari.widget import RISNetWidget

    viewer = napari.Viewer(title="napari-risnet demo")
    for data, kwargs, layer_type in SAMPLES[sample]():
        getattr(viewer, f"add_{layer_type}")(data, **kwargs)
    widget = RISNetWidget(viewer, **widget_kwargs)
    if threads:
        widget.threads_spin.setValue(int(threads))
    viewer.window.add_dock_widget(widget, name="RIS-Net interactive segmentation", area="right")
    if block:
        napari.run()
    return viewer


__all__ = ["run_demo"]
