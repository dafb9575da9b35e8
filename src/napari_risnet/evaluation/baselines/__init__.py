"""Classic interactive methods behind the Predictor's interface (set_image / predict).

The seed's Table 1 rows, all from the clicks alone, sharing the image handling and input checks
of ``_ClickBaseline`` (click discs as seeds; the image border is background until the first
negative click):

- ``GraphCutBaseline`` (graphcut): Boykov-Jolly, colour histograms + contrast-sensitive Potts.
- ``RandomWalkerBaseline`` (random_walker): scikit-image's random walker.
- ``GeodesicMattingBaseline`` (geodesic_matting): Bai & Sapiro's geodesic distances over the
  gradient of the foreground likelihood.
- ``EuclideanStarConvexityBaseline`` (esc), ``GeodesicStarConvexityBaseline`` (gsc): the graph
  cut with Gulshan et al.'s star-convexity constraint around the positive clicks.
- ``GrowCutBaseline`` (growcut): Vezhnevets & Konouchine's cellular automaton.
"""
from napari_risnet.evaluation.baselines.geodesic import GeodesicMattingBaseline
from napari_risnet.evaluation.baselines.graphcut import GraphCutBaseline
from napari_risnet.evaluation.baselines.growcut import GrowCutBaseline
from napari_risnet.evaluation.baselines.random_walker import RandomWalkerBaseline
from napari_risnet.evaluation.baselines.star_convexity import (EuclideanStarConvexityBaseline,
                                                    GeodesicStarConvexityBaseline)

BASELINES = {"graphcut": GraphCutBaseline, "random_walker": RandomWalkerBaseline,
             "geodesic_matting": GeodesicMattingBaseline, "esc": EuclideanStarConvexityBaseline,
             "gsc": GeodesicStarConvexityBaseline, "growcut": GrowCutBaseline}

__all__ = ["BASELINES", "EuclideanStarConvexityBaseline", "GeodesicMattingBaseline",
           "GeodesicStarConvexityBaseline", "GraphCutBaseline", "GrowCutBaseline",
           "RandomWalkerBaseline"]
