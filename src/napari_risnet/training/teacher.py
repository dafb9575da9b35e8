"""The frozen teacher of ``distill_weight``: the model a fine-tuning run must not forget.

A new domain at a useful learning rate moves the weights away from what the bundled model does
well (the 0.14.0 candidate learned EM chloroplasts and gave back COCO and the hippocampus). The
teacher's answer on the same input, for the folders marked ``distill = true``, holds the
student near it there while the ground truth keeps teaching everywhere.
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch

from napari_risnet.inference.predictor import default_checkpoint
from napari_risnet.model.checkpoint import CheckpointError, load_checkpoint
from napari_risnet.model.risnet import RISNet, RISNetOutput
from napari_risnet.training.loss import distill_loss


def build_teacher(student: RISNet, checkpoint: str, device: torch.device) -> RISNet:
    """A frozen, eval-mode teacher: ``checkpoint`` ("default" = bundled), or, when empty, a copy
    of ``student`` as it is now (call before training or resuming: the starting model). The
    teacher must take the student's input (same image channels and previous-mask input)."""
    if checkpoint:
        path = default_checkpoint() if checkpoint == "default" else Path(checkpoint)
        teacher, _ = load_checkpoint(path, map_location=device)
        if teacher.config.prev_mask != student.config.prev_mask:
            raise CheckpointError(
                f"{path}: the teacher {'takes' if teacher.config.prev_mask else 'lacks'} a "
                f"previous-mask input and the trained model "
                f"{'does' if student.config.prev_mask else 'does not'}; it cannot answer the "
                f"same input")
        if (tuple(teacher.image_mean), tuple(teacher.image_std)) != \
                (tuple(student.image_mean), tuple(student.image_std)):
            raise CheckpointError(f"{path}: the teacher normalises images differently from the "
                                  f"trained model ({teacher.config.backbone} vs "
                                  f"{student.config.backbone}); it cannot answer the same input")
    else:
        teacher = copy.deepcopy(student)
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher.to(device=device, memory_format=torch.channels_last)


@torch.no_grad()
def teacher_probabilities(teacher: RISNet, x: torch.Tensor, boxes: torch.Tensor,
                          roi_batch: torch.Tensor, out_scale: float) -> torch.Tensor:
    """The teacher's final answer as probabilities (B, 1, H, W), the student's loss target."""
    out: RISNetOutput = teacher(x, boxes, roi_batch, out_scale=out_scale)
    return torch.sigmoid(out.final_logits().float())


def distill_term(teacher: RISNet, out: RISNetOutput, x: torch.Tensor, batch: dict,
                 valid: torch.Tensor, held: list[bool], out_scale: float, bf16: bool
                 ) -> torch.Tensor:
    """The batch's mean KL of the student's answer ``out`` from the teacher's on the same input
    ``x`` (with ``batch``'s ROIs), over the valid pixels of the crops whose folder is ``held``.
    ``bf16``: the teacher's forward under bf16 autocast (a loss target, no gradient: 2x on a
    CPU with native bf16, as the rollouts)."""
    weight = torch.tensor(held, dtype=valid.dtype, device=valid.device)[:, None, None, None]
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        target = teacher_probabilities(teacher, x, batch["boxes"], batch["roi_batch"], out_scale)
    return distill_loss(out.final_logits().float(), target, valid * weight).mean()
