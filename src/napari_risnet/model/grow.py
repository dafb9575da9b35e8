"""Grow a trained model into a larger architecture without losing what it learnt.

CPU training is short, so every hour should compound: a version-1 model gains the
previous-mask input and / or the refinement decoder with the new weights initialised so that
the grown model answers *exactly* as the old one until training moves them (the extra stem
filter and the decoder's last convolution start at zero).
"""
from __future__ import annotations

from napari_risnet.model.risnet import RISNet, RISNetConfig


def grow_model(model: RISNet, prev_mask: bool | None = None,
               decoder_channels: int | None = None) -> RISNet:
    """A new RISNet with the same weights plus the requested parts.

    Args:
        model: the trained model (any version).
        prev_mask: add the previous-mask input channel (None = keep as is).
        decoder_channels: add a refinement decoder of this width (None = keep as is).
    Returns:
        The grown model on the same device, in the mode of ``model``.
    """
    old = model.config
    cfg = RISNetConfig.from_dict({**old.to_dict(),
                                  "prev_mask": old.prev_mask if prev_mask is None else prev_mask,
                                  "decoder_channels": old.decoder_channels
                                  if decoder_channels is None else decoder_channels})
    if old.prev_mask and not cfg.prev_mask:
        raise ValueError("cannot remove the previous-mask input of a model trained with it")
    if old.decoder_channels and cfg.decoder_channels != old.decoder_channels:
        raise ValueError(f"the model already has a decoder of {old.decoder_channels} channels")
    kwargs = dict(cfg.backbone_kwargs, pretrained=False)
    cfg.backbone_kwargs = kwargs
    device = next(model.parameters()).device
    grown = RISNet(cfg).to(device)
    src = model.state_dict()
    dst = grown.state_dict()
    for key, value in src.items():
        target = dst[key]
        if value.shape == target.shape:
            dst[key] = value.clone()
        else:
            raise ValueError(f"cannot grow {key}: {tuple(value.shape)} -> {tuple(target.shape)}")
    grown.load_state_dict(dst, strict=True)
    return grown.train(model.training)
