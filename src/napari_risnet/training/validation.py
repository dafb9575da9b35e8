"""The objects a training run is judged on: held-out images of its own folders (by image, so no
training crop comes from them), scored by the same robot user as the evaluation.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from napari_risnet.data import ObjectSample, list_objects, load_object, spread
from napari_risnet.evaluation.images import evaluate
from napari_risnet.inference.graphcut import graphcut_available
from napari_risnet.inference.predictor import Predictor
from napari_risnet.inference.settings import PredictorSettings
from napari_risnet.model.risnet import RISNet
from napari_risnet.training.config import TrainConfig
from napari_risnet.training.datasets import image_key
from napari_risnet.training.split import is_validation


@dataclass
class ValidationSet:
    samples: list[ObjectSample]
    use_graphcut: bool = True  # without PyMaxflow (a bare GPU node) the network's mask alone

    def noc85(self, model: RISNet, device: torch.device, max_clicks: int) -> float:
        """Mean NoC@85 of the robot user (graph cut on, as users get it, where available)."""
        if not self.samples:
            return float("nan")
        was_training = model.training
        settings = PredictorSettings(use_graphcut=self.use_graphcut and graphcut_available())
        predictor = Predictor(model, settings, device=device)
        summary, _ = evaluate(predictor, self.samples, max_clicks=max_clicks, stop_iou=0.85)
        model.train(was_training)
        return summary.noc85


def data_set_name(folder: str) -> str:
    """A training folder's short name in reports and ``--only``: dsb2018_nuclei for
    .../dsb2018_nuclei/train, coco_mval for .../coco_mval."""
    parts = Path(folder).parts
    return parts[-2] if parts[-1] in ("train", "test") else parts[-1]


def held_out_objects(config: TrainConfig, per_source: int, only: str | None = None
                     ) -> tuple[list[tuple[str, list[ObjectSample]]], set[str]]:
    """Per training folder (in recipe order): ``per_source`` objects spread over its held-out
    images; and the keys of all held-out images, which training must exclude. ``only``: load
    the objects of the folder of that name (``data_set_name``) alone; the keys stay complete."""
    by_source, exclude = [], set()
    for src in config.data:
        refs, _ = list_objects(src.path, src.objects, src.min_area)
        val_refs = [r for r in refs if is_validation(image_key(r), config.val_fraction)]
        exclude |= {image_key(r) for r in val_refs}
        if only is not None and data_set_name(src.path) != only:
            continue  # decoding the others' images is most of the time a one-folder run takes
        cache: dict = {}
        by_source.append((src.path, [load_object(r, cache) for r in spread(val_refs, per_source)]))
    return by_source, exclude


def validation_from_folders(config: TrainConfig) -> tuple[ValidationSet, set[str]]:
    """Held-out objects of every training folder, and the image keys to exclude from training."""
    per_source = max(1, config.val_objects // max(1, len(config.data)))
    by_source, exclude = held_out_objects(config, per_source)
    return ValidationSet([s for _, samples in by_source for s in samples]), exclude


__all__ = ["ValidationSet", "data_set_name", "held_out_objects", "validation_from_folders"]
