"""Classic interactive methods behind the Predictor's interface (set_image / predict).

- ``GraphCutBaseline``: Boykov-Jolly from the clicks alone: colour histograms of discs around
  the clicks (the image border stands in for the background before the first negative click),
  contrast-sensitive Potts, hard constraints at the clicks.
- ``RandomWalkerBaseline``: scikit-image's random walker with the click discs as seeds.
"""
from napari_risnet.baselines.graphcut import GraphCutBaseline
from napari_risnet.baselines.random_walker import RandomWalkerBaseline

BASELINES = {"graphcut": GraphCutBaseline, "random_walker": RandomWalkerBaseline}

__all__ = ["BASELINES", "GraphCutBaseline", "RandomWalkerBaseline"]
