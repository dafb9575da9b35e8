"""Fine-tuning on the user's own annotations (the `finetune` command and the napari widget).

Validation: with enough annotated planes (images, or slices of a stack) ``val_fraction`` of the
planes is held out; with fewer (a user's first fine-tune is often one image or one slice)
``val_fraction`` of the *objects* is held out instead, and training ignores their pixels (they
are neither targets nor background). Training runs from the base model with the same trainer as
the default recipe; the robot user's NoC@85 on the held-out objects is reported before and after.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from napari_risnet.data import ObjectSample, list_dataset, read_array
from napari_risnet.model.checkpoint import load_checkpoint, save_checkpoint
from napari_risnet.training.config import TrainConfig
from napari_risnet.training.datasets import ObjectPool, iter_planes, remove_small
from napari_risnet.training.split import is_validation
from napari_risnet.training.trainer import Trainer
from napari_risnet.training.validation import ValidationSet

#: With fewer annotated planes than this, validation holds out objects, not planes.
MIN_PLANES_FOR_PLANE_SPLIT = 5
#: The metric ``FinetuneResult`` reports (the trainer validates with NoC@85).
METRIC = "NoC@85"

Plane = tuple[str, np.ndarray, np.ndarray]


@dataclass
class FinetuneResult:
    """What a fine-tune produced; ``noc_*`` are ``metric`` on the ``n_val`` held-out objects
    (NaN when too few objects were annotated to hold any out)."""

    checkpoint: Path
    noc_before: float
    noc_after: float
    n_train: int
    n_val: int
    cancelled: bool = False
    metric: str = METRIC
    split: str = "images"  # "images" (planes held out) or "objects" (objects held out)
    steps: int = -1  # training steps done (0: cancelled before the first; -1: unknown)

    @property
    def measured(self) -> bool:
        """Whether both numbers were measured (a cancel before the first validation, or no
        held-out object, leaves ``noc_after`` unmeasured)."""
        return bool(self.n_val) and np.isfinite(self.noc_before) and np.isfinite(self.noc_after)

    @property
    def improved(self) -> bool:
        """Whether the held-out estimate says the new model needs fewer clicks."""
        return self.measured and self.noc_after < self.noc_before


@dataclass
class ValidationSplit:
    """Training planes (with an ignore mask each) and the held-out objects."""

    train: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list)
    val: list[ObjectSample] = field(default_factory=list)
    by: str = "images"


def _planes(images: list[np.ndarray], labels: list[np.ndarray], min_area: int) -> list[Plane]:
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} label maps")
    if not images:
        raise ValueError("no images to fine-tune on")
    planes = []
    for k, (img, lab) in enumerate(zip(images, labels)):
        for name, im2, lab2 in iter_planes(img, lab, f"image{k}"):
            lab2 = remove_small(np.asarray(lab2), min_area)
            if lab2.any():
                planes.append((name, im2, lab2))
    if not planes:
        raise ValueError("the label maps hold no object of at least "
                         f"{min_area} pixels: annotate some objects first")
    return planes


def split_planes(planes: list[Plane], val_fraction: float) -> tuple[list, list]:
    """Hold out ~val_fraction of the planes; at least one on each side when there are two."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    val = [p for p in planes if is_validation(p[0].replace(":z", "_z"), val_fraction)]
    n_target = int(round(val_fraction * len(planes)))
    if val_fraction > 0 and len(planes) >= 2 and not val:
        val = planes[len(planes) // 2: len(planes) // 2 + max(1, n_target)]
    train = [p for p in planes if all(p is not v for v in val)]
    if not train:
        train, val = planes[:-1], planes[-1:]
    return train, val


def split_objects(planes: list[Plane], val_fraction: float, max_objects: int
                  ) -> ValidationSplit:
    """Hold out ~val_fraction of the objects (spread over the planes, at least one when there
    are two or more, never all); training sees their pixels as ignored."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    objects = [(k, int(i)) for k, (_, _, lab) in enumerate(planes) for i in np.unique(lab) if i]
    n = len(objects)
    n_val = 0 if val_fraction == 0 or n < 2 else         min(n - 1, max_objects, max(1, int(round(val_fraction * n))))
    picked = {objects[int((j + 0.5) * n / n_val)] for j in range(n_val)} if n_val else set()
    split = ValidationSplit(by="objects")
    for k, (name, img, lab) in enumerate(planes):
        held = [i for (kk, i) in picked if kk == k]
        ignore = np.isin(lab, held) if held else np.zeros(lab.shape, bool)
        train_lab = np.where(ignore, 0, lab)
        if train_lab.any():
            split.train.append((name, img, train_lab, ignore))
        split.val += [ObjectSample(f"{name}:l{i}", img, lab == i, np.zeros(lab.shape, bool), lab)
                      for i in sorted(held)]
    return split


def split_validation(planes: list[Plane], val_fraction: float, max_objects: int
                     ) -> ValidationSplit:
    """Planes held out when there are enough of them, else objects (see the module doc)."""
    if len(planes) < MIN_PLANES_FOR_PLANE_SPLIT:
        return split_objects(planes, val_fraction, max_objects)
    train, val = split_planes(planes, val_fraction)
    return ValidationSplit([(n, im, lab, np.zeros(lab.shape, bool)) for n, im, lab in train],
                           _val_samples(val, max_objects), "images")


def _val_samples(val: list, max_objects: int) -> list[ObjectSample]:
    samples = []
    for name, img, lab in val:
        for i in np.unique(lab):
            if i:
                samples.append(ObjectSample(f"{name}:l{i}", img, lab == i,
                                            np.zeros(lab.shape, bool), lab))
    if len(samples) > max_objects:
        idx = np.linspace(0, len(samples) - 1, max_objects).round().astype(int)
        samples = [samples[i] for i in idx]
    return samples


def finetune(images: list[np.ndarray], labels: list[np.ndarray], base: str | Path = "default",
             out: str | Path | None = None, epochs: int = 5, val_fraction: float = 0.2,
             device: str = "auto", progress: Callable[[int, int, str], None] | None = None,
             should_stop: Callable[[], bool] | None = None, steps_per_epoch: int | None = None,
             batch_size: int = 8, lr: float = 2e-4, min_area: int = 16, val_objects: int = 40,
             max_clicks: int = 10, threads: int | None = None) -> FinetuneResult:
    """Fine-tune ``base`` on images with instance label maps and save the result to ``out``.

    Args:
        images: 2D / RGB images or (Z, Y, X) stacks.
        labels: instance label maps of the same spatial shape (0 = background).
        base: "default" (bundled model) or a checkpoint path.
        out: output checkpoint; a temporary file when None.
        epochs, steps_per_epoch: length of training (steps default to ~2 passes over the objects
            per epoch, between 20 and 200).
        progress: called with (step, total_steps, message); should_stop: polled every step.
        threads: torch CPU threads (None: torch's default; see ``napari_risnet.threads``).
    Returns:
        FinetuneResult with NoC@85 on the held-out objects before and after.
    """
    def say(message: str) -> None:  # before the first training step: total 0 = indeterminate
        if progress is not None:
            progress(0, 0, message)

    say("preparing the training data…")
    planes = _planes(images, labels, min_area)
    split = split_validation(planes, val_fraction, val_objects)
    pool = ObjectPool.from_arrays([p[1] for p in split.train], [p[2] for p in split.train],
                                  min_area=min_area, ignores=[p[3] for p in split.train])
    val = ValidationSet(split.val)
    say("loading the base model…")
    if steps_per_epoch is None:
        steps_per_epoch = int(np.clip(2 * len(pool) / batch_size, 20, 200))
    out = Path(out) if out is not None else Path(tempfile.mkdtemp()) / "risnet_finetuned.pt"
    work = Path(tempfile.mkdtemp(prefix="risnet-finetune-"))
    config = TrainConfig(out_dir=str(work), init_checkpoint=str(base), epochs=epochs,
                         steps_per_epoch=steps_per_epoch, batch_size=batch_size,
                         optimizer="adamw", lr=lr, weight_decay=1e-4, lr_step_epochs=max(1, epochs),
                         device=device, val_max_clicks=max_clicks, checkpoint_every=10**9,
                         iterative_prob=0.3, full_image_prob=0.2, validate_at_start=True,
                         threads=int(threads or 0))
    trainer = Trainer(config, pool, val, progress=progress, should_stop=should_stop)
    summary = trainer.run()  # validates before the first step and after every epoch
    noc_before = summary["history"][0]["val_noc85"]
    model, meta = load_checkpoint(Path(summary["best"]), map_location="cpu")
    noc_after = summary["best_val_noc85"] if val.samples else float("nan")
    if not np.isfinite(noc_after):
        noc_after = float("nan")  # cancelled before the first validation: not measured
    meta.update(finetuned_from=str(base), val_noc85_before=noc_before, val_noc85_after=noc_after)
    save_checkpoint(out, model, meta)
    return FinetuneResult(out, noc_before, noc_after, len(pool), len(val.samples),
                          cancelled=bool(summary.get("stopped")), split=split.by,
                          steps=int(summary.get("steps", -1)))


def finetune_folders(images: str | Path, masks: str | Path | None = None,
                     labels: str | Path | None = None, **kwargs) -> FinetuneResult:
    """`napari-risnet finetune`: the same, reading images/ with masks/ or labels/ folders."""
    if (masks is None) == (labels is None):
        raise ValueError("give exactly one of masks or labels")
    ann_dir = Path(masks or labels)
    img_dir = Path(images)
    with tempfile.TemporaryDirectory() as tmp:  # reuse the dataset pairing (stems, errors)
        root = Path(tmp)
        (root / "images").symlink_to(img_dir.resolve(), target_is_directory=True)
        (root / ("masks" if masks else "labels")).symlink_to(ann_dir.resolve(),
                                                             target_is_directory=True)
        entries = list_dataset(root)
        imgs, labs = [], []
        for e in entries:
            img = read_array(e.image)
            ann = read_array(e.mask if masks else e.labels)
            if masks:
                from scipy import ndimage

                ann, _ = ndimage.label(ann > 0 if ann.max() <= 1 else ann > 128)
            if ann.shape[:2] != img.shape[:2] and ann.shape != img.shape[:ann.ndim]:
                raise ValueError(f"{e.stem}: annotation {ann.shape} does not match image "
                                 f"{img.shape}")
            imgs.append(img)
            labs.append(ann)
    return finetune(imgs, labs, **kwargs)
