"""Inference: preprocessing, the Predictor, its settings and answer rules, the graph cut (no UI)."""
from napari_risnet.inference.graphcut import GraphCutParams, graph_cut
from napari_risnet.inference.predictor import (InteractiveSegmenter, Prediction, Predictor,
                                               default_checkpoint, resolve_device)
from napari_risnet.inference.preprocess import CropTransform, ImageNormalizer
from napari_risnet.inference.settings import PRESETS, RULES, PredictorSettings

__all__ = ["CropTransform", "GraphCutParams", "ImageNormalizer", "InteractiveSegmenter",
           "PRESETS", "Prediction", "Predictor", "PredictorSettings", "RULES",
           "default_checkpoint", "graph_cut", "resolve_device"]
