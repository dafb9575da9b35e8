"""The model a training run starts from and what of it trains: the initial weights (grown where
the recipe asks), the optimizer, the frozen early stages and the BatchNorm statistics they keep.
"""
from __future__ import annotations

from pathlib import Path

import torch

from napari_risnet.inference.predictor import default_checkpoint
from napari_risnet.model.checkpoint import load_checkpoint
from napari_risnet.model.grow import grow_model
from napari_risnet.model.risnet import RISNet, RISNetConfig
from napari_risnet.training.config import TrainConfig


def build_model(config: TrainConfig, device: torch.device) -> tuple[RISNet, dict]:
    """A fresh model (ImageNet backbone) or the ``init_checkpoint`` to fine-tune, grown by
    ``config.grow`` (new parts initialised so the starting model answers as before)."""
    if config.init_checkpoint:
        path = default_checkpoint() if config.init_checkpoint == "default" \
            else Path(config.init_checkpoint)
        model, meta = load_checkpoint(path, map_location=device)
        if config.grow:
            model = grow_model(model, **config.grow)
        return model, meta
    if config.grow:
        raise ValueError("`grow` needs an init_checkpoint to grow; for a fresh model put "
                         "prev_mask / decoder_channels in [model]")
    return RISNet(RISNetConfig.from_dict(config.model)).to(device), {}


def make_optimizer(config: TrainConfig, model: torch.nn.Module
                   ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.StepLR]:
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                              weight_decay=config.weight_decay)
    else:
        opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=config.lr_step_epochs,
                                            gamma=config.lr_gamma)
    return opt, sched


def freeze_early_stages(model: RISNet, n_blocks: int) -> list[str]:
    """Stop training the stem and the first ``n_blocks`` EfficientNet stages (high resolution,
    generic edges: a large part of a CPU step's backward, little to gain from a short
    schedule). The previous mask joins after stage 2, so it keeps its gradient. Returns the
    frozen parameter names."""
    if n_blocks <= 0:
        return []
    body = getattr(model.backbone, "body", None)
    if body is None:
        raise ValueError(f"freeze_stages needs the efficientnet_lite0 backbone, not "
                         f"{model.config.backbone}")
    frozen = []
    for prefix, module in _frozen_named(body, n_blocks):
        for name, p in module.named_parameters():
            p.requires_grad_(False)
            frozen.append(f"{prefix}.{name}")
    return frozen


def _frozen_named(body: torch.nn.Module, n_blocks: int) -> list[tuple[str, torch.nn.Module]]:
    return [("conv_stem", body.conv_stem), ("bn1", body.bn1)] + \
        [(f"blocks.{i}", body.blocks[i]) for i in range(min(n_blocks, len(body.blocks)))]


def frozen_modules(model: RISNet, n_blocks: int) -> list[torch.nn.Module]:
    """The modules :func:`freeze_early_stages` freezes (none for ``n_blocks <= 0``)."""
    body = getattr(model.backbone, "body", None)
    if body is None or n_blocks <= 0:
        return []
    return [module for _, module in _frozen_named(body, n_blocks)]


def frozen_bn_eval(model: RISNet, n_blocks: int, all_statistics: bool = False) -> None:
    """Frozen stages keep their BatchNorm statistics (eval mode) while the rest trains; with
    ``all_statistics`` every BatchNorm does (its scale and shift still train)."""
    for module in frozen_modules(model, n_blocks):
        module.eval()
    if all_statistics:
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.eval()


__all__ = ["build_model", "freeze_early_stages", "frozen_bn_eval", "frozen_modules",
           "make_optimizer"]
