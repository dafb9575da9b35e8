"""Inference: preprocessing, the Predictor and the graph cut (no UI)."""
from napari_risnet.inference.graphcut import GraphCutParams, graph_cut
from napari_risnet.inference.predictor import (InteractiveSegmenter, Prediction, Predictor,
                                               default_checkpoint, resolve_device)
from napari_risnet.inference.preprocess import CropTransform, ImageNormalizer

__all__ = ["CropTransform", "GraphCutParams", "ImageNormalizer", "InteractiveSegmenter",
           "Prediction", "Predictor", "default_checkpoint", "graph_cut", "resolve_device"]
