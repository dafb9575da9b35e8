"""Where a training sample's clicks and previous mask come from beyond the sampled first
clicks: the robot user clicking on the model's own errors (iterative training, as in RITM) or
on a focus crop's coarse mask. Used by the trainer (CPU and GPU runs); the robot is the
evaluation's own (``napari_risnet.evaluation.robot``).
"""
from __future__ import annotations

import logging
from concurrent.futures import BrokenExecutor, Executor

import numpy as np
import torch

from napari_risnet.clicks import Click
from napari_risnet.model.risnet import RISNet
from napari_risnet.evaluation.robot import robot_next_click
from napari_risnet.training.config import TrainConfig
from napari_risnet.training.datasets import Sample, make_batch

log = logging.getLogger(__name__)


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bf16 natively here (avx512_bf16 or AMX); elsewhere bf16 is emulated
    and slower than fp32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN, or a renamed private op
        return False


def rollout_autocast(config: TrainConfig, device: torch.device) -> bool:
    """bf16 autocast for the no-grad rollouts: with ``amp`` on CUDA; on a CPU with native bf16
    (``cpu_bf16_rollouts``). A rollout only picks the robot's next click and the previous-mask
    input, so bf16's rounding near the 0.5 boundary is harmless there, and it halves the cost of
    iterative training on such a CPU."""
    if device.type == "cuda":
        return config.amp
    return device.type == "cpu" and config.cpu_bf16_rollouts and cpu_has_native_bf16()


def add_iterative_clicks(model: RISNet, samples: list[Sample], clicks: list[list[Click]],
                         config: TrainConfig, rng: np.random.Generator,
                         device: torch.device, robot_pool: Executor | None = None
                         ) -> tuple[list[list[Click]], list[np.ndarray | None]]:
    """Place extra clicks where the current model errs, with the evaluation's RobotUser
    (in ``robot_pool``'s processes when given: its distance transforms are a GPU step's main
    CPU cost).

    Returns the clicks and, per sample, the model's own mask *before* its last click (None =
    no previous answer): what a model with the previous-mask input sees at that click, as in
    RITM's iterative training. Samples that come with a previous mask (focus crops) are left
    to :func:`add_focus_clicks`.
    """
    prev: list[np.ndarray | None] = [None] * len(samples)
    chosen = [i for i in range(len(samples)) if rng.random() < config.iterative_prob
              and clicks[i] and samples[i].prev is None]
    if not chosen:
        return clicks, prev
    clicks = [list(c) for c in clicks]
    n_iter = int(rng.integers(1, config.iterative_clicks + 1))
    with_prev = model.config.prev_mask
    was_training = model.training
    model.eval()
    use_bf16 = rollout_autocast(config, device)
    try:
        for _ in range(n_iter):
            batch = make_batch([samples[i] for i in chosen], [clicks[i] for i in chosen],
                               config.n_roi, model.image_mean, model.image_std,
                               [prev[i] for i in chosen] if with_prev else None, device)
            with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16,
                                                 enabled=use_bf16):
                # the same memory format as the model (train_step): no per-layer conversion
                x = batch["x"].to(device, memory_format=torch.channels_last)
                out = model(x, batch["boxes"].to(device),
                            batch["roi_batch"].to(device))
                masks = (out.final_logits(model.config.fusion)[:, 0] >= 0).cpu().numpy()
            args = ([samples[i].gt for i in chosen], [samples[i].ignore for i in chosen],
                    [clicks[i] for i in chosen], list(masks))
            nexts = _robot_clicks(args, robot_pool)
            for k, (i, nxt) in enumerate(zip(chosen, nexts)):
                if nxt is not None:
                    clicks[i].append(nxt)
                    prev[i] = masks[k]
    finally:
        model.train(was_training)
    return clicks, prev


def add_focus_clicks(samples: list[Sample], clicks: list[list[Click]],
                     prev: list[np.ndarray | None], robot_pool: Executor | None = None
                     ) -> tuple[list[list[Click]], list[np.ndarray | None]]:
    """For samples that come with a previous mask (focus crops): that mask, and the robot's
    click on its larger error — the click the predictor's focus pass is centred on."""
    given = [i for i, s in enumerate(samples) if s.prev is not None and clicks[i]]
    if not given:
        return clicks, prev
    clicks, prev = [list(c) for c in clicks], list(prev)
    args = ([samples[i].gt for i in given], [samples[i].ignore for i in given],
            [clicks[i] for i in given], [samples[i].prev for i in given])
    for i, nxt in zip(given, _robot_clicks(args, robot_pool)):
        prev[i] = samples[i].prev
        if nxt is not None:
            clicks[i].append(nxt)
    return clicks, prev


def _robot_clicks(args: tuple, pool: Executor | None) -> list[Click | None]:
    """``robot_next_click`` over the samples, in ``pool`` when it works (a node whose process
    pool breaks loses speed, not the run)."""
    if pool is not None:
        try:
            return list(pool.map(robot_next_click, *args, chunksize=max(1, len(args[0]) // 16)))
        except (BrokenExecutor, OSError) as exc:
            log.warning("robot click processes failed (%s): placing them in this process", exc)
    return list(map(robot_next_click, *args))
