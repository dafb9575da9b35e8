"""The fast dilated-depthwise backward gives autograd's gradients and leaves the rest alone."""
import copy

import pytest
import torch
from torch import nn

from napari_risnet.model import RISNet
from napari_risnet.training.fast_depthwise import (FastDilatedDepthwiseConv2d,
                                                    speed_up_dilated_depthwise)

from conftest import tiny_config


@pytest.mark.parametrize("k,d,bias", [(5, 2, False), (3, 2, True), (5, 3, False)])
def test_gradients_match_autograd(k, d, bias):
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 6, k, padding=d * (k - 1) // 2, dilation=d, groups=6, bias=bias)
    fast = copy.deepcopy(conv)
    assert speed_up_dilated_depthwise(fast) == 1
    x = torch.randn(2, 6, 11, 9).contiguous(memory_format=torch.channels_last)
    grads = []
    for module in (conv, fast):
        xi = x.clone().requires_grad_()
        y = module(xi)
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        grads.append((y.detach(), xi.grad, module.weight.grad,
                      None if module.bias is None else module.bias.grad))
    for ref, got in zip(*grads):
        if ref is not None:
            torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)


def test_only_stride_one_same_padded_dilated_depthwise_convs_are_swapped():
    convs = nn.Sequential(
        nn.Conv2d(4, 4, 3, padding=1, groups=4),                  # not dilated: oneDNN is fine
        nn.Conv2d(4, 4, 3, padding=2, dilation=2, groups=4, stride=2),  # strided
        nn.Conv2d(4, 4, 3, padding=1, dilation=2, groups=4),      # not "same"
        nn.Conv2d(4, 8, 3, padding=2, dilation=2, groups=4),      # channel multiplier
        nn.Conv2d(4, 4, 3, padding=2, dilation=2),                # dense
        nn.Conv2d(4, 4, 3, padding=2, dilation=2, groups=4))      # eligible
    assert speed_up_dilated_depthwise(convs) == 1
    assert [type(c) is FastDilatedDepthwiseConv2d for c in convs] == [False] * 5 + [True]


def test_model_answers_and_state_dict_are_unchanged():
    torch.manual_seed(0)
    model = RISNet(tiny_config()).eval()
    fast = copy.deepcopy(model)
    assert speed_up_dilated_depthwise(fast) > 0  # output stride 16: the last stages are dilated
    assert fast.state_dict().keys() == model.state_dict().keys()
    x = torch.randn(1, 5, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(fast(x).global_logits, model(x).global_logits)
