"""One network pass over a zoom-in window: RIS-Net's answer as logits, optionally averaged with
the answer to the mirror image (test-time flip averaging). Kept apart from the predictor, which
decides windows, priors and the graph cut, so the network call is one small piece.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from napari_risnet.model.risnet import RISNet


def window_logits(model: RISNet, x: torch.Tensor, boxes: np.ndarray | None, flip: bool,
                  timings: dict[str, float]) -> torch.Tensor:
    """(H, W) final logits of ``model`` for the network input ``x`` (1, C, H, W) and its ROI
    ``boxes`` (N, 4) [r0, c0, r1, c1] in input pixels (None: global branch only).

    ``flip``: also run the mirror image in the same batch (boxes mirrored) and average the two
    answers, mirrored back. Adds the seconds of "backbone" and "local" to ``timings``.
    """
    tic = time.perf_counter()
    roi_batch = None
    if flip:
        x = torch.cat([x, x.flip(-1)])
        if boxes is not None:
            mirrored = boxes.copy()
            mirrored[:, 1], mirrored[:, 3] = x.shape[-1] - boxes[:, 3], x.shape[-1] - boxes[:, 1]
            boxes = np.concatenate([boxes, mirrored])
            roi_batch = torch.arange(2, device=x.device).repeat_interleave(len(mirrored))
    with torch.inference_mode():
        feats, low = model.encode(x)
        add_timing(timings, "backbone", time.perf_counter() - tic)
        tic = time.perf_counter()
        rois = None if boxes is None else torch.from_numpy(boxes).to(x.device)
        out = model.heads(feats, x.shape[-2:], rois, roi_batch, low=low)
        logits = out.final_logits(model.config.fusion)[:, 0]
        logits = (logits[0] + logits[1].flip(-1)) / 2 if flip else logits[0]
    add_timing(timings, "local", time.perf_counter() - tic)
    return logits


def add_timing(timings: dict[str, float], key: str, value: float) -> None:
    """Accumulate seconds per stage (a window may take several passes per click)."""
    timings[key] = timings.get(key, 0.0) + value


__all__ = ["add_timing", "window_logits"]
