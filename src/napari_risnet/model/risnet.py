"""RIS-Net as a trainable ``nn.Module``: global branch, pyramid context, local branch, fusion,
and (optional, architecture version 2) the previous mask as an input and a stride-4 refinement
decoder after the fusion.

Shapes: B images, N ROIs in total over the batch, H x W the network input, S = ``roi_size``.
Boxes are ``[r0, c0, r1, c1]`` in input pixels (row, col; exclusive end).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import roi_align

from napari_risnet.model.backbones import create_backbone

#: Logit used for "outside this ROI" when pasting local predictions (probability ~ 0).
OUTSIDE_LOGIT = -30.0
FUSIONS = ("max", "mean")


@dataclass
class RISNetConfig:
    """Everything needed to rebuild a model; saved in every checkpoint."""

    backbone: str = "efficientnet_lite0"
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    use_context: bool = True
    use_local: bool = True
    roi_size: int = 41
    context_bins: tuple[int, ...] = (1, 2, 3, 6)
    context_channels: int = 16
    local_channels: int = 64
    fusion: str = "max"
    #: the previous mask of the object as a 6th input channel (0 / 1; zeros on a first click):
    #: the network sees what it answered before, so a late click corrects instead of re-guessing
    prev_mask: bool = False
    #: channels of the stride-4 refinement decoder after the fusion (0 = none): the fused mask
    #: is otherwise a bilinear upsampling of a stride-8 grid
    decoder_channels: int = 0

    @property
    def in_channels(self) -> int:
        return 6 if self.prev_mask else 5

    @property
    def version(self) -> int:
        """1 = the first released architecture; 2 = with previous mask and / or decoder."""
        return 2 if (self.prev_mask or self.decoder_channels) else 1

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["context_bins"] = list(self.context_bins)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RISNetConfig":
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown RIS-Net config keys: {sorted(unknown)}")
        d = dict(d)
        if "context_bins" in d:
            d["context_bins"] = tuple(d["context_bins"])
        cfg = cls(**d)
        if cfg.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {cfg.fusion!r}")
        return cfg


def _separable(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False),
                         nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class PyramidContext(nn.Module):
    """Multiscale global context: average pools of conv7 to b x b bins, a 1x1 conv each,
    upsampled back to the feature grid (so an ROI cut from it stays spatially aligned)."""

    def __init__(self, in_channels: int, bins: tuple[int, ...], channels: int) -> None:
        super().__init__()
        self.bins = bins
        self.convs = nn.ModuleList(
            nn.Sequential(nn.Conv2d(in_channels, channels, 1, bias=False), nn.ReLU(inplace=True))
            for _ in bins)
        self.out_channels = channels * len(bins)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        size = feats.shape[-2:]
        outs = [F.interpolate(conv(F.adaptive_avg_pool2d(feats, b)), size=size, mode="bilinear",
                              align_corners=False) for b, conv in zip(self.bins, self.convs)]
        return torch.cat(outs, dim=1)


@dataclass
class RISNetOutput:
    """Raw outputs of a forward pass (logits).

    global_logits: (B, 1, H, W). local_logits: (N, 1, S, S) or None. pasted_logits: (N, 1, H, W),
    each local prediction in image space, ``OUTSIDE_LOGIT`` outside its ROI, or None.
    roi_batch: (N,) image index of each ROI, or None. refined_logits: (B, 1, H, W), the fusion
    refined by the stride-4 decoder, or None without one.
    """

    global_logits: torch.Tensor
    local_logits: torch.Tensor | None = None
    pasted_logits: torch.Tensor | None = None
    roi_batch: torch.Tensor | None = None
    refined_logits: torch.Tensor | None = None

    def final_logits(self, fusion: str = "max") -> torch.Tensor:
        """What the model answers: the refined fusion when there is a decoder, else the fusion."""
        if self.refined_logits is not None:
            return self.refined_logits
        return self.fused_logits(fusion)

    def fused_logits(self, fusion: str = "max", roi_mask: torch.Tensor | None = None
                     ) -> torch.Tensor:
        """Fuse the global prediction with the pasted local ones, per image.

        Args:
            fusion: "max" (paper: pixelwise max of probabilities = max of logits) or "mean"
                (average of the predictions that cover a pixel).
            roi_mask: optional (N,) bool, which ROIs take part (the training loss adds them
                one by one).
        Returns:
            (B, 1, H, W) fused logits.
        """
        return fuse(self.global_logits, self.pasted_logits, self.roi_batch, fusion, roi_mask)


def fuse(global_logits: torch.Tensor, pasted: torch.Tensor | None, roi_batch: torch.Tensor | None,
         fusion: str = "max", roi_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Fusion of RIS-Net (see :meth:`RISNetOutput.fused_logits`)."""
    if pasted is None or roi_batch is None or len(pasted) == 0:
        return global_logits
    if roi_mask is not None:
        pasted, roi_batch = pasted[roi_mask], roi_batch[roi_mask]
    out = []
    for b in range(global_logits.shape[0]):
        locs = pasted[roi_batch == b]
        g = global_logits[b:b + 1]
        if len(locs) == 0:
            out.append(g)
        elif fusion == "max":
            out.append(torch.maximum(g, locs.amax(dim=0, keepdim=True)))
        else:
            inside = (locs > OUTSIDE_LOGIT / 2).float()
            probs = torch.sigmoid(g) + (torch.sigmoid(locs) * inside).sum(0, keepdim=True)
            p = probs / (1 + inside.sum(0, keepdim=True))
            out.append(torch.logit(p.clamp(1e-6, 1 - 1e-6)))
    return torch.cat(out)


def paste_rois(local_logits: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int]
               ) -> torch.Tensor:
    """Paste (N, 1, S, S) local logits into (N, 1, H, W) image space, OUTSIDE_LOGIT outside.

    boxes: (N, 4) [r0, c0, r1, c1] in pixels of the H x W image.
    """
    h, w = size
    dev, dt = local_logits.device, local_logits.dtype
    rows = torch.arange(h, device=dev, dtype=dt) + 0.5
    cols = torch.arange(w, device=dev, dtype=dt) + 0.5
    r0, c0, r1, c1 = (boxes[:, i].to(dt)[:, None] for i in range(4))
    v = (rows[None] - r0) / (r1 - r0).clamp(min=1e-3) * 2 - 1  # (N, H)
    u = (cols[None] - c0) / (c1 - c0).clamp(min=1e-3) * 2 - 1  # (N, W)
    grid = torch.stack(torch.broadcast_tensors(u[:, None, :], v[:, :, None]), dim=-1)
    sampled = F.grid_sample(local_logits, grid, mode="bilinear", padding_mode="border",
                            align_corners=False)
    inside = ((v.abs() <= 1)[:, :, None] & (u.abs() <= 1)[:, None, :])[:, None]
    return torch.where(inside, sampled, torch.full_like(sampled, OUTSIDE_LOGIT))


class RefinementDecoder(nn.Module):
    """A light decoder to stride 4: the fused logits, the backbone's stride-4 features and conv7
    predict a correction of the fused logits, added at full resolution.

    Its last convolution starts at zero, so a model grown with a decoder answers exactly as it
    did without one until training moves it.
    """

    def __init__(self, low_channels: int, feat_channels: int, channels: int) -> None:
        super().__init__()
        self.low = nn.Sequential(nn.Conv2d(low_channels, channels, 1, bias=False),
                                 nn.BatchNorm2d(channels), nn.ReLU(inplace=True))
        self.feat = nn.Sequential(nn.Conv2d(feat_channels, channels, 1, bias=False),
                                  nn.BatchNorm2d(channels), nn.ReLU(inplace=True))
        self.block = nn.Sequential(_separable(2 * channels + 1, channels),
                                   _separable(channels, channels))
        self.out = nn.Conv2d(channels, 1, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, low: torch.Tensor, feats: torch.Tensor, fused: torch.Tensor
                ) -> torch.Tensor:
        """low: (B, Cl, h4, w4); feats: (B, C, h8, w8); fused: (B, 1, H, W) logits ->
        refined (B, 1, H, W) logits."""
        size4 = low.shape[-2:]
        f = F.interpolate(self.feat(feats), size=size4, mode="bilinear", align_corners=False)
        p = torch.sigmoid(F.interpolate(fused, size=size4, mode="bilinear", align_corners=False))
        delta = self.out(self.block(torch.cat([self.low(low), f, p.to(f.dtype)], dim=1)))
        return fused + F.interpolate(delta, size=fused.shape[-2:], mode="bilinear",
                                     align_corners=False)


class RISNet(nn.Module):
    """Regional Interactive Image Segmentation Network (Liew et al., ICCV 2017).

    Composed of a backbone ("conv7" features), ``conv8_global``, an optional pyramid context and
    an optional local branch (roi_align -> conv7_local -> conv8_local). ``forward`` is trainable;
    inference wraps it in ``torch.inference_mode`` in the predictor.
    """

    def __init__(self, config: RISNetConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or RISNetConfig()
        kwargs = dict(config.backbone_kwargs)
        if config.prev_mask:
            kwargs["in_channels"] = config.in_channels
        if config.decoder_channels:
            kwargs["low_level"] = True
        self.backbone = create_backbone(config.backbone, **kwargs)
        c = self.backbone.out_channels
        self.stride = self.backbone.output_stride
        self.conv8_global = nn.Conv2d(c, 1, 1)
        self.context = (PyramidContext(c, config.context_bins, config.context_channels)
                        if config.use_context else None)
        if config.use_local:
            cin = c + (self.context.out_channels if self.context is not None else 0)
            # 1x1 projection before pooling: roi_align (single-threaded on CPU, slow backward)
            # then moves local_channels instead of cin channels per ROI pixel.
            self.local_proj = nn.Sequential(nn.Conv2d(cin, config.local_channels, 1, bias=False),
                                            nn.BatchNorm2d(config.local_channels),
                                            nn.ReLU(inplace=True))
            self.conv7_local = nn.Sequential(_separable(config.local_channels,
                                                        config.local_channels),
                                             _separable(config.local_channels,
                                                        config.local_channels))
            self.conv8_local = nn.Conv2d(config.local_channels, 1, 1)
        self.decoder = (RefinementDecoder(self.backbone.low_level_channels, c,
                                          config.decoder_channels)
                        if config.decoder_channels else None)

    @property
    def image_mean(self) -> tuple[float, ...]:
        return self.backbone.image_mean

    @property
    def image_std(self) -> tuple[float, ...]:
        return self.backbone.image_std

    def forward(self, x: torch.Tensor, boxes: torch.Tensor | None = None,
                roi_batch: torch.Tensor | None = None, out_scale: float = 1.0) -> RISNetOutput:
        """Run both branches.

        Args:
            x: (B, 5, H, W) normalised image (3) + distance maps / 255 (2), and with
                ``config.prev_mask`` a 6th channel: the previous mask (0 / 1).
            boxes: (N, 4) float [r0, c0, r1, c1] ROIs in input pixels, or None (global only).
            roi_batch: (N,) long, the image of each ROI (default: all image 0).
            out_scale: logits at this fraction of the input resolution (training computes its
                loss at 1/2 to save time; inference uses 1).
        Returns:
            RISNetOutput with logits at ``out_scale`` x input resolution.
        """
        cin = self.config.in_channels
        if x.ndim != 4 or x.shape[1] != cin:
            raise ValueError(f"expected input (B, {cin}, H, W), got {tuple(x.shape)}")
        size = (round(x.shape[-2] * out_scale), round(x.shape[-1] * out_scale))
        if boxes is not None and out_scale != 1.0:
            boxes = boxes * out_scale
        feats, low = self.encode(x)
        return self.heads(feats, size, boxes, roi_batch, low)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Backbone: conv7 features and the stride-4 features the decoder needs (else None)."""
        if self.decoder is None:
            return self.backbone(x), None
        return self.backbone.forward_pyramid(x)

    def heads(self, feats: torch.Tensor, size: tuple[int, int] | torch.Size,
              boxes: torch.Tensor | None = None, roi_batch: torch.Tensor | None = None,
              low: torch.Tensor | None = None) -> RISNetOutput:
        """Everything after the backbone (split out so the predictor can time the parts).

        feats: (B, C, h, w) conv7 features of an input of ``size`` = (H, W); low: the stride-4
        features from :meth:`encode` (needed with a decoder).
        """
        out = self._branches(feats, (int(size[0]), int(size[1])), boxes, roi_batch)
        if self.decoder is not None:
            if low is None:
                raise ValueError("this model has a refinement decoder: pass the stride-4 "
                                 "features from model.encode(x) to heads()")
            out.refined_logits = self.decoder(low, feats, out.fused_logits(self.config.fusion))
        return out

    def _branches(self, feats: torch.Tensor, size: tuple[int, int],
                  boxes: torch.Tensor | None, roi_batch: torch.Tensor | None) -> RISNetOutput:
        global_logits = F.interpolate(self.conv8_global(feats), size=size, mode="bilinear",
                                      align_corners=False)
        if not self.config.use_local or boxes is None or len(boxes) == 0:
            return RISNetOutput(global_logits)
        if roi_batch is None:
            roi_batch = torch.zeros(len(boxes), dtype=torch.long, device=feats.device)
        if self.context is not None:
            feats = torch.cat([feats, self.context(feats)], dim=1)
        feats = self.local_proj(feats).contiguous()
        # torchvision wants (batch, x1, y1, x2, y2): swap (row, col) only here.
        tv_boxes = torch.cat([roi_batch[:, None].to(feats.dtype), boxes[:, [1, 0, 3, 2]]
                              .to(feats.dtype)], dim=1)
        scale = feats.shape[-1] / size[-1]
        pooled = roi_align(feats, tv_boxes, output_size=self.config.roi_size,
                           spatial_scale=scale, sampling_ratio=1, aligned=True)
        local_logits = self.conv8_local(self.conv7_local(pooled))
        pasted = paste_rois(local_logits, boxes, size)
        return RISNetOutput(global_logits, local_logits, pasted, roi_batch)
