"""Average the weights of checkpoints of one architecture (a "model soup").

Checkpoints along one training run (or runs from the same start) lie in one basin; their
average is usually better than each of them and does not carry the last epoch's swing. Used to
make stage 5's starting point (training/stage5.toml) from stage 4's two checkpoints. With
``weights``, a weighted mean: a fine-tuned model and the one it started from, interpolated
(WiSE-FT), keep more of the start's robustness the more weight it gets.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from napari_risnet.model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from napari_risnet.model.risnet import RISNet


def average_checkpoints(paths: Sequence[str | os.PathLike],
                        weights: Sequence[float] | None = None) -> RISNet:
    """The model whose floating weights and BN statistics are the mean of the checkpoints'
    (integer buffers, such as BN batch counters, are the first checkpoint's); with ``weights``
    (one per checkpoint, positive, normalised to sum 1) the weighted mean.

    Raises CheckpointError for fewer than two files or checkpoints of different architectures,
    ValueError for weights that do not match the checkpoints.
    """
    if len(paths) < 2:
        raise CheckpointError(f"averaging needs at least two checkpoints, got {len(paths)}")
    share = _shares(weights, len(paths))
    first, _ = load_checkpoint(paths[0])
    config = first.config.to_dict()
    state = {k: v * share[0] if v.is_floating_point() else v.clone()
             for k, v in first.state_dict().items()}
    for path, w in zip(paths[1:], share[1:]):
        model, _ = load_checkpoint(path)
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
                  half: bool = False, weights: Sequence[float] | None = None) -> Path:
    """Average ``paths`` (weighted by ``weights``) and save the result to ``out`` (fp16 with
    ``half``: bundled weights)."""
    model = average_checkpoints(paths, weights)
    meta = {"averaged_from": [str(Path(p)) for p in paths]}
    if weights is not None:
        meta["averaging_weights"] = [float(w) for w in weights]
    return save_checkpoint(out, model, meta, half=half)
