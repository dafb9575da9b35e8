"""Average the weights of checkpoints of one architecture (a "model soup").

Checkpoints along one training run (or runs from the same start) lie in one basin; their
average is usually better than each of them and does not carry the last epoch's swing. Used to
make stage 5's starting point (training/stage5.toml) from stage 4's two checkpoints. With
``weights``, a weighted mean: a fine-tuned model and the one it started from, interpolated
(WiSE-FT), keep more of the start's robustness the more weight it gets. With ``ema``, each
checkpoint contributes the weight average its training run kept (``ema_decay``; a run's
``last.pt``) instead of its last weights: what the run validated and what a next stage starts
from.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from napari_risnet.model.checkpoint import (CheckpointError, load_checkpoint, model_from_payload,
                                            read_checkpoint, save_checkpoint)
from napari_risnet.model.risnet import RISNet


def load_weight_average(path: str | os.PathLike) -> RISNet:
    """The weight average a training run kept in its checkpoint (``train_state["ema"]``, written
    with ``ema_decay`` > 0); CheckpointError for a checkpoint without one."""
    payload = read_checkpoint(path)
    ema = (payload.get("train_state") or {}).get("ema")
    if not ema:
        raise CheckpointError(f"{path} holds no weight average: only a training run's last.pt "
                              f"with ema_decay > 0 has one")
    state = {k[len("module."):]: v for k, v in ema.items() if k.startswith("module.")}
    return model_from_payload(payload, path, state)


def average_checkpoints(paths: Sequence[str | os.PathLike],
                        weights: Sequence[float] | None = None, ema: bool = False) -> RISNet:
    """The model whose floating weights and BN statistics are the mean of the checkpoints'
    (integer buffers, such as BN batch counters, are the first checkpoint's); with ``weights``
    (one per checkpoint, positive, normalised to sum 1) the weighted mean; with ``ema`` each
    checkpoint's training weight average (one checkpoint is then enough: its average alone).

    Raises CheckpointError for too few files, checkpoints of different architectures or, with
    ``ema``, one without a weight average; ValueError for weights that do not match.
    """
    if len(paths) < (1 if ema else 2):
        raise CheckpointError(f"averaging needs at least two checkpoints, got {len(paths)}")
    share = _shares(weights, len(paths))

    def load(path: str | os.PathLike) -> RISNet:
        return load_weight_average(path) if ema else load_checkpoint(path)[0]

    first = load(paths[0])
    config = first.config.to_dict()
    state = {k: v * share[0] if v.is_floating_point() else v.clone()
             for k, v in first.state_dict().items()}
    for path, w in zip(paths[1:], share[1:]):
        model = load(path)
        if model.config.to_dict() != config:
            raise CheckpointError(f"{path} has another architecture than {paths[0]}: only "
                                  f"checkpoints of one model can be averaged")
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                state[k] += w * v
    first.load_state_dict(state, strict=True)
    return first


def _shares(weights: Sequence[float] | None, n: int) -> list[float]:
    if weights is None:
        return [1.0 / n] * n
    if len(weights) != n:
        raise ValueError(f"{len(weights)} weights for {n} checkpoints: give one per checkpoint")
    if any(not w > 0 for w in weights):
        raise ValueError(f"averaging weights must be positive, got {list(weights)}")
    total = float(sum(weights))
    return [w / total for w in weights]


def write_average(paths: Sequence[str | os.PathLike], out: str | os.PathLike,
                  half: bool = False, weights: Sequence[float] | None = None,
                  ema: bool = False) -> Path:
    """Average ``paths`` (weighted by ``weights``; their training weight averages with ``ema``)
    and save the result to ``out`` (fp16 with ``half``: bundled weights)."""
    model = average_checkpoints(paths, weights, ema)
    meta = {"averaged_from": [str(Path(p)) for p in paths]}
    if weights is not None:
        meta["averaging_weights"] = [float(w) for w in weights]
    if ema:
        meta["weight_averages"] = True
    return save_checkpoint(out, model, meta, half=half)
