"""The pull back toward the starting weights (``anchor_decay``, L2-SP in its decoupled form).

Every CPU fine-tuning run since stage 6 gained the new domain and, the longer it ran, lost
natural photos' late clicks, though the teacher held COCO's answers: what a new domain moves is
the weights every folder shares. A penalty on the distance from the starting weights (Li et al.,
"Explicit inductive bias for transfer learning with convolutional networks", ICML 2018) lets
the data move a weight only as far as it keeps paying for it. Applied after the optimizer step,
as AdamW decouples its weight decay, so Adam's per-weight scaling does not rescale the pull.
"""
from __future__ import annotations

import torch


class WeightAnchor:
    """The trainable weights as they were when this was made; :meth:`pull` moves the current
    weights ``lr * decay`` of the way back to them. Make it before a resume loads other weights:
    the anchor is the run's starting model, not wherever a resume picks up."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        if decay < 0:
            raise ValueError(f"anchor decay must be >= 0, got {decay}")
        self.decay = decay
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.start = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def pull(self, lr: float) -> None:
        weight = lr * self.decay
        if weight <= 0:
            return
        if weight > 1:
            raise ValueError(f"lr * anchor decay must be <= 1, got {lr} * {self.decay}")
        torch._foreach_lerp_(self.params, self.start, weight)

    def distance(self) -> float:
        """Root-mean-square distance of the trainable weights from the start (for the log)."""
        with torch.no_grad():
            total = sum(float(((p - s) ** 2).sum()) for p, s in zip(self.params, self.start))
            count = sum(p.numel() for p in self.params)
        return (total / max(count, 1)) ** 0.5


__all__ = ["WeightAnchor"]
