"""Training crops and their Xu et al. clicks made in DataLoader worker processes.

On a GPU the main process must only feed the model: cropping, augmenting and sampling the
first clicks of a batch run in ``workers`` processes, whole batches at a time. The iterative
robot clicks need the model, so they stay in the trainer's main process.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from napari_risnet.clicks import Click
from napari_risnet.training.config import TrainConfig
from napari_risnet.training.datasets import ObjectPool, Sample
from napari_risnet.training.sampling import sample_clicks

Batch = tuple[list[Sample], list[list[Click]]]
log = logging.getLogger(__name__)
PREFETCH = 2  # batches each worker keeps ready


class CropClickStream(IterableDataset):
    """An endless stream of batches: (B, S, S, 3) uint8 crops (a quarter of float32 in shared
    memory; the crops were uint8 before augmentation, so this costs < 1/255), gt / ignore /
    others / previous (focus crops; ``has_prev`` says which) masks as tensors (shared memory
    between processes, no pickling of pixels) and the click lists."""

    def __init__(self, pool: ObjectPool, config: TrainConfig, seed: int) -> None:
        super().__init__()
        self.pool, self.config, self.seed = pool, config, seed

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        rng = np.random.default_rng([self.seed, info.id if info is not None else 0])
        cfg = self.config
        while True:
            samples = [self.pool.sample(rng, cfg.crop_size, cfg.full_image_prob,
                                        focus_prob=cfg.focus_prob,
                                        augmentations=cfg.augment)
                       for _ in range(cfg.batch_size)]
            clicks = [[(c.row, c.col, c.positive) for c in
                       sample_clicks(s.gt, s.ignore, s.others, rng, cfg.max_positive,
                                     cfg.max_negative)] for s in samples]
            rgb = np.stack([s.rgb for s in samples]) * 255.0
            yield {"rgb": torch.from_numpy(rgb.round().astype(np.uint8)),
                   "gt": torch.from_numpy(np.stack([s.gt for s in samples])),
                   "ignore": torch.from_numpy(np.stack([s.ignore for s in samples])),
                   "others": torch.from_numpy(np.stack([s.others for s in samples])),
                   "prev": torch.from_numpy(np.stack([s.gt if s.prev is None else s.prev
                                                      for s in samples])),
                   "has_prev": torch.tensor([s.prev is not None for s in samples]),
                   "clicks": clicks}


def _one_thread(_: int) -> None:
    torch.set_num_threads(1)  # many workers x many threads would oversubscribe the CPU


def workers_that_fit(config: TrainConfig, shm: str | Path = "/dev/shm") -> int:
    """``config.workers``, fewer where the shared-memory folder cannot hold their batches
    (containers often mount a 64 MB /dev/shm: the DataLoader would die with a bus error);
    0 = sample in the main process."""
    if not Path(shm).is_dir():
        return config.workers
    per_batch = config.batch_size * config.crop_size ** 2 * 7  # rgb uint8 + four masks
    fit = int(shutil.disk_usage(shm).free // (2 * PREFETCH * per_batch))
    if fit < config.workers:
        log.warning("%s has room for %d of %d loader workers' batches: using %d", shm, fit,
                    config.workers, min(fit, config.workers))
    return max(0, min(fit, config.workers))


def sample_batches(pool: ObjectPool, config: TrainConfig, seed: int) -> Iterator[Batch] | None:
    """Batches of (samples, clicks) from ``config.workers`` worker processes (fewer when
    shared memory is short; None when none fits: the trainer samples in its own process).

    The workers start here, before the caller moves a model to the GPU (a fork after CUDA
    initialisation is fragile).
    """
    if config.workers < 1:
        raise ValueError(f"sample_batches needs workers >= 1, got {config.workers}")
    workers = workers_that_fit(config)
    if workers == 0:
        return None
    loader = DataLoader(CropClickStream(pool, config, seed), batch_size=None,
                        num_workers=workers, worker_init_fn=_one_thread,
                        prefetch_factor=PREFETCH)
    it = iter(loader)

    def batches() -> Iterator[Batch]:
        for b in it:
            n = len(b["clicks"])
            rgb = b["rgb"].float().div_(255.0).numpy()
            samples = [Sample(rgb[i], b["gt"][i].numpy(), b["ignore"][i].numpy(),
                              b["others"][i].numpy(),
                              b["prev"][i].numpy() if b["has_prev"][i] else None)
                       for i in range(n)]
            yield samples, [[Click(r, c, p) for r, c, p in cl] for cl in b["clicks"]]

    return batches()
