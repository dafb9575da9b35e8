"""Training throughput (samples/s) of recipe variants on synthetic images, batch 8.

    python benchmarks/train_speed.py [--crop 320] [--threads 2] [--steps 4] [--iterative 0.7]
        [--fp32-rollouts] [--fp32-frozen] [--native-depthwise] [--only SUBSTRING]

``--fp32-rollouts``, ``--fp32-frozen`` and ``--native-depthwise`` switch off the CPU speed-ups of
the trainer (bf16 robot rollouts, the frozen stages' forward in bf16,
``training/fast_depthwise.py``) to measure what each is worth.

Each row is one variant of the trainer (architecture version, frozen stages, iterative clicks);
nothing is read from disk, so the numbers only measure compute.
"""
from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch

import napari_risnet.training.trainer as trainer_module
from napari_risnet.training.config import TrainConfig
from napari_risnet.training.datasets import ObjectPool
from napari_risnet.training.trainer import Trainer
from napari_risnet.training.validation import ValidationSet

VARIANTS = {
    "v1 (shipped architecture)": {},
    "v1, stem + 2 stages frozen": {"freeze_stages": 2},
    "v2 (prev mask + decoder 32)": {"model": {"prev_mask": True, "decoder_channels": 32}},
    "v2, stem + 2 stages frozen": {"model": {"prev_mask": True, "decoder_channels": 32},
                                   "freeze_stages": 2},
}


def synthetic_pool(n: int = 8) -> ObjectPool:
    rng = np.random.default_rng(0)
    images, labels = [], []
    for _ in range(n):
        yy, xx = np.mgrid[:400, :500]
        cy, cx, r = rng.integers(120, 280), rng.integers(150, 350), rng.integers(40, 110)
        gt = (yy - cy) ** 2 + (xx - cx) ** 2 < r ** 2
        img = np.clip(np.where(gt, 170, 70) + rng.normal(0, 20, gt.shape), 0, 255)
        images.append(np.repeat(img[..., None], 3, -1).astype(np.uint8))
        labels.append(gt.astype(np.int32))
    return ObjectPool.from_arrays(images, labels)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--crop", type=int, default=320)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--iterative", type=float, default=0.0, help="iterative-click probability")
    p.add_argument("--fp32-rollouts", action="store_true",
                   help="iterative-click rollouts in fp32 even where the CPU has native bf16")
    p.add_argument("--fp32-frozen", action="store_true",
                   help="the frozen early stages' forward in fp32 even with native bf16")
    p.add_argument("--native-depthwise", action="store_true",
                   help="oneDNN's own backward for the dilated depthwise convolutions")
    p.add_argument("--only", default="", help="run the variants whose name contains this")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.native_depthwise:
        trainer_module.speed_up_dilated_depthwise = lambda model: 0
    pool = synthetic_pool()
    print(f"| variant | samples/s at {args.crop}x{args.crop}, {args.threads} threads, "
          f"iterative {args.iterative}{', fp32 rollouts' if args.fp32_rollouts else ''}"
          f"{', fp32 frozen stages' if args.fp32_frozen else ''}"
          f"{', native depthwise backward' if args.native_depthwise else ''} |\n"
          "|---|---|")
    for name, overrides in VARIANTS.items():
        if args.only not in name:
            continue
        model = {"backbone_kwargs": {"pretrained": False, "output_stride": 16},
                 **overrides.get("model", {})}
        with tempfile.TemporaryDirectory() as tmp:
            cfg = TrainConfig(out_dir=tmp, crop_size=args.crop, batch_size=8,
                              threads=args.threads, iterative_prob=args.iterative, device="cpu",
                              optimizer="adamw", model=model,
                              cpu_bf16_rollouts=not args.fp32_rollouts,
                              cpu_bf16_frozen=not args.fp32_frozen,
                              freeze_stages=overrides.get("freeze_stages", 0))
            trainer = Trainer(cfg, pool, ValidationSet([]))
            trainer.train_step()
            tic = time.perf_counter()
            for _ in range(args.steps):
                trainer.train_step()
            rate = 8 * args.steps / (time.perf_counter() - tic)
        print(f"| {name} | {rate:.2f} |", flush=True)


if __name__ == "__main__":
    main()
