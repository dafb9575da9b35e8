"""RIS-Net's click-discount loss.

    L = L_global + sum_t gamma^(t-1) * exp(-dL_t)

ROIs are added greedily, each time the one whose addition lowers the fused loss most (the
largest error it fixes); dL_t is that drop. gamma = 0: no local term (global branch only);
gamma = 1: every ROI counts alike, which the seed describes as adding all ROIs at once, so we
use a single term exp(-(L_global - L_fused(all ROIs))). An optional auxiliary loss supervises
each local prediction inside its own ROI (helps the local branch start; 0 disables it), and an
optional soft-IoU term on what the user gets (the refined fusion, or the fusion), an optional
normalised focal term on it (``nfl_weight``), and an optional term on the clicks' own
neighbourhoods (``click_weight`` on ``near_clicks``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from napari_risnet.model.risnet import OUTSIDE_LOGIT, RISNetOutput


def masked_bce(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Per-image mean BCE over valid pixels. logits/target/valid: (B, ..., H, W) -> (B,)."""
    loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none") * valid
    dims = tuple(range(1, logits.ndim))
    return loss.sum(dims) / valid.sum(dims).clamp(min=1.0)


@dataclass
class LossTerms:
    total: torch.Tensor
    global_loss: torch.Tensor
    local_term: torch.Tensor
    aux: torch.Tensor
    fused_loss: torch.Tensor  # loss of the fusion with every ROI (monitoring)
    refined_loss: torch.Tensor | None = None  # the decoder's refined fusion, when there is one
    iou_loss: torch.Tensor | None = None  # 1 - soft IoU of the final answer, when weighted in
    click_loss: torch.Tensor | None = None  # BCE of the final answer near the clicks, when on
    nfl_loss: torch.Tensor | None = None  # normalised focal loss of the final answer, when on


def click_discount_loss(out: RISNetOutput, gt: torch.Tensor, valid: torch.Tensor,
                        n_roi: int, gamma: float = 0.8, aux_weight: float = 0.5,
                        refine_weight: float = 1.0, iou_weight: float = 0.0,
                        near_clicks: torch.Tensor | None = None, click_weight: float = 0.0,
                        nfl_weight: float = 0.0, nfl_gamma: float = 2.0) -> LossTerms:
    """The seed's loss for a batch where every image has exactly ``n_roi`` ROIs, plus
    ``refine_weight`` x the BCE of the refined fusion when the model has a decoder (what the
    user gets must be supervised itself, not only its parts), plus ``iou_weight`` x
    (1 - soft IoU) of the final answer: the per-pixel BCE of a crop is mostly easy background, so
    a thin boundary error or a small object barely moves it, while NoC counts in IoU; plus
    ``click_weight`` x the BCE of the final answer on ``near_clicks`` (B, 1, H, W) only, the
    pixels around the clicks: a click answered too softly, or one whose neighbourhood stays on
    the wrong side, costs a user another click (what the predictor's click threshold and click
    prior patch after the fact), yet those few pixels are a sliver of the crop's mean BCE; plus
    ``nfl_weight`` x the normalised focal loss of the final answer (``normalized_focal_loss``).

    Args:
        out: model output (pasted_logits (B*n_roi, 1, H, W) ordered image by image).
        gt, valid: (B, 1, H, W) float targets and valid-pixel weights.
    """
    terms = _seed_loss(out, gt, valid, n_roi, gamma, aux_weight)
    if out.refined_logits is not None and refine_weight > 0:
        refined = masked_bce(out.refined_logits, gt, valid).mean()
        terms.total = terms.total + refine_weight * refined
        terms.refined_loss = refined
    if iou_weight > 0:
        terms.iou_loss = soft_iou_loss(out.final_logits(), gt, valid).mean()
        terms.total = terms.total + iou_weight * terms.iou_loss
    if nfl_weight > 0:
        terms.nfl_loss = normalized_focal_loss(out.final_logits(), gt, valid, nfl_gamma).mean()
        terms.total = terms.total + nfl_weight * terms.nfl_loss
    if click_weight > 0:
        if near_clicks is None:
            raise ValueError("click_weight > 0 needs near_clicks (the pixels around the clicks)")
        per_image = masked_bce(out.final_logits(), gt, valid * near_clicks)
        # images with no click pixel marked (click_scope "last": no corrective click) do not
        # dilute the term; with every click marked, every image has some
        marked = near_clicks.flatten(1).amax(1) > 0
        terms.click_loss = per_image[marked].mean() if marked.any() else per_image.sum() * 0
        terms.total = terms.total + click_weight * terms.click_loss
    return terms


def near_clicks(distance_maps: torch.Tensor, radius: float) -> torch.Tensor:
    """(B, 1, H, W) float mask of the pixels within ``radius`` px of any click, from the
    network input's (B, 2, H, W) distance maps in pixels (nearest positive / negative click)."""
    return (distance_maps.amin(1, keepdim=True) <= radius).float()


def distill_loss(logits: torch.Tensor, teacher_prob: torch.Tensor, valid: torch.Tensor
                 ) -> torch.Tensor:
    """Per-image mean KL divergence (B,) of the answer ``logits`` from the teacher's
    probabilities over ``valid`` pixels: the BCE against the soft target less the target's own
    entropy, so it is 0 where the student answers as the teacher does (and the reported number
    reads as a distance, not as the teacher's uncertainty)."""
    p = teacher_prob.clamp(1e-6, 1 - 1e-6)
    entropy = -(p * p.log() + (1 - p) * (1 - p).log())
    kl = (F.binary_cross_entropy_with_logits(logits, p, reduction="none") - entropy) * valid
    dims = tuple(range(1, logits.ndim))
    return kl.sum(dims) / valid.sum(dims).clamp(min=1.0)


def soft_iou_loss(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor
                  ) -> torch.Tensor:
    """Per-image 1 - soft IoU (probabilities as fuzzy sets) over valid pixels: (B, ...) -> (B,).
    A +1 on both sides keeps an empty target and an empty answer at zero loss."""
    p = torch.sigmoid(logits) * valid
    t = target * valid
    dims = tuple(range(1, logits.ndim))
    inter = (p * t).sum(dims)
    union = (p + t - p * t).sum(dims)
    return 1.0 - (inter + 1.0) / (union + 1.0)


def normalized_focal_loss(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor,
                          gamma: float = 2.0) -> torch.Tensor:
    """Per-image normalised focal loss (B,) over valid pixels, as RITM trains its answers with
    (Sofiiuk et al., "Reviving iterative training with mask guidance", 2022): each pixel's BCE
    weighted by (1 - p_t)^gamma, the weights rescaled (without gradient) to sum to the number of
    valid pixels. The loss then sits on the pixels still wrong -- a late click's sliver of
    boundary -- however few they are, where a mean BCE is spent on easy background. Balanced
    classes (alpha 0.5), RITM's defaults."""
    p = torch.sigmoid(logits)
    p_true = torch.where(target > 0.5, p, 1 - p)
    dims = tuple(range(1, logits.ndim))
    beta = (1 - p_true).pow(gamma) * valid  # the valid pixels' weights enter here, once
    scale = (valid.sum(dims, keepdim=True) / beta.sum(dims, keepdim=True).clamp(min=1e-12))
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    loss = 0.5 * beta * scale.detach() * bce
    return loss.sum(dims) / valid.sum(dims).clamp(min=1.0)


def _seed_loss(out: RISNetOutput, gt: torch.Tensor, valid: torch.Tensor, n_roi: int,
               gamma: float, aux_weight: float) -> LossTerms:
    g = out.global_logits
    l_global = masked_bce(g, gt, valid)
    zero = g.new_zeros(g.shape[0])
    if out.pasted_logits is None or gamma == 0.0:
        total = l_global.mean()
        return LossTerms(total, l_global.mean(), zero.mean(), zero.mean(), l_global.mean())
    b = g.shape[0]
    pasted = out.pasted_logits.reshape(b, n_roi, *g.shape[-2:])
    target, weight = gt[:, 0][:, None], valid[:, 0][:, None]  # (B, 1, H, W)
    if gamma == 1.0:
        fused = torch.maximum(g[:, 0], pasted.amax(1))[:, None]
        l_fused = masked_bce(fused, gt, valid)
        local_term = torch.exp(-(l_global - l_fused))
    else:
        current, l_current = g[:, 0], l_global
        remaining = torch.ones(b, n_roi, dtype=torch.bool, device=g.device)
        local_term = zero
        for t in range(n_roi):
            cand = torch.maximum(current[:, None], pasted)  # (B, K, H, W)
            losses = masked_bce_k(cand, target, weight)  # (B, K)
            pick = torch.where(remaining, losses.detach(), torch.full_like(losses, float("inf")))
            idx = pick.argmin(1)
            l_new = losses.gather(1, idx[:, None])[:, 0]
            local_term = local_term + gamma ** t * torch.exp(-(l_current - l_new))
            current = cand[torch.arange(b), idx]
            l_current = l_new
            remaining[torch.arange(b), idx] = False
        l_fused = l_current
    aux = zero
    if aux_weight > 0:
        inside = (out.pasted_logits > OUTSIDE_LOGIT / 2).float().reshape(b, n_roi, *g.shape[-2:])
        aux = masked_bce_k(pasted, target.expand_as(pasted), weight * inside).mean(1)
    total = (l_global + local_term + aux_weight * aux).mean()
    return LossTerms(total, l_global.mean(), local_term.mean(), aux.mean(), l_fused.mean())


def masked_bce_k(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor
                 ) -> torch.Tensor:
    """(B, K, H, W) logits vs (B, 1|K, H, W) target/weight -> (B, K) mean BCE per map."""
    loss = F.binary_cross_entropy_with_logits(logits, target.expand_as(logits),
                                              reduction="none") * weight
    return loss.sum((-2, -1)) / weight.expand_as(logits).sum((-2, -1)).clamp(min=1.0)
