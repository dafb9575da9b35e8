"""BatchNorm folded into the convolution before it, for inference.

At inference a BatchNorm is a fixed per-channel scale and shift, so it can live in the weights and
bias of the convolution that feeds it. On a CPU the separate normalisation pass is 16 % of the
backbone's time (docs/experiments.md, 0.27.0); folded, the answers change only in the last bits
of the floats, which is why the predictor records it as a setting (``fold_batchnorm``).
"""
from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def _what_follows(bn: nn.BatchNorm2d) -> nn.Module:
    """What is left of a BatchNorm once folded: timm's ``BatchNormAct2d`` keeps its dropout and
    activation, a plain BatchNorm nothing."""
    rest = [m for m in (getattr(bn, "drop", None), getattr(bn, "act", None))
            if isinstance(m, nn.Module) and not isinstance(m, nn.Identity)]
    if not rest:
        return nn.Identity()
    return rest[0] if len(rest) == 1 else nn.Sequential(*rest)


def fold_batchnorm(model: nn.Module) -> tuple[nn.Module, int]:
    """A copy of ``model`` in eval mode with every BatchNorm2d that directly follows a Conv2d
    (the next child of the same parent, over the conv's channels) folded into that conv;
    returns it and the number of BatchNorms folded. ``model`` itself is left as it was (a
    trainer or another predictor may share it).

    Children are visited in the order they were registered, which is the order torch's and
    timm's blocks (``conv_pw``, ``bn1``, ``conv_dw``, ``bn2`` …) and ``nn.Sequential`` apply
    them; a BatchNorm that follows anything else is left alone.
    """
    folded = copy.deepcopy(model).eval()
    count = 0

    def visit(module: nn.Module) -> None:
        nonlocal count
        names = list(module._modules)
        for first, second in zip(names, names[1:]):
            conv, bn = module._modules[first], module._modules[second]
            if (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)
                    and bn.track_running_stats and bn.running_mean is not None
                    and bn.num_features == conv.out_channels):
                module._modules[first] = fuse_conv_bn_eval(conv, bn)
                module._modules[second] = _what_follows(bn)
                count += 1
        for child in module._modules.values():
            if child is not None:
                visit(child)

    visit(folded)
    return folded, count


__all__ = ["fold_batchnorm"]
