"""Average the weights of checkpoints of one architecture (a "model soup").

Checkpoints along one training run (or runs from the same start) lie in one basin; their
average is usually better than each of them and does not carry the last epoch's swing. Used to
make stage 5's starting point (training/stage5.toml) from stage 4's two checkpoints.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from napari_risnet.model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from napari_risnet.model.risnet import RISNet


def average_checkpoints(paths: Sequence[str | os.PathLike]) -> RISNet:
    """The model whose floating weights and BN statistics are the mean of the checkpoints'
    (integer buffers, such as BN batch counters, are the first checkpoint's).

    Raises CheckpointError for fewer than two files or checkpoints of different architectures.
    """
    if len(paths) < 2:
        raise CheckpointError(f"averaging needs at least two checkpoints, got {len(paths)}")
    first, _ = load_checkpoint(paths[0])
    config = first.config.to_dict()
    state = {k: v.clone() for k, v in first.state_dict().items()}
    for path in paths[1:]:
        model, _ = load_checkpoint(path)
        if model.config.to_dict() != config:
            raise CheckpointError(f"{path} has another architecture than {paths[0]}: only "
                                  f"checkpoints of one model can be averaged")
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                state[k] += v
    n = len(paths)
    for k, v in state.items():
        if v.is_floating_point():
            v /= n
    first.load_state_dict(state, strict=True)
    return first


def write_average(paths: Sequence[str | os.PathLike], out: str | os.PathLike,
                  half: bool = False) -> Path:
    """Average ``paths`` and save the result to ``out`` (fp16 with ``half``: bundled weights)."""
    model = average_checkpoints(paths)
    meta = {"averaged_from": [str(Path(p)) for p in paths]}
    return save_checkpoint(out, model, meta, half=half)
