import pytest
import torch

from napari_risnet.model import BACKBONES, RISNet, create_backbone, fuse, paste_rois
from napari_risnet.model.risnet import OUTSIDE_LOGIT

from conftest import tiny_config

BACKBONE_KWARGS = {
    "efficientnet_lite0": {"pretrained": False, "output_stride": 16, "out_channels": 32},
    "vgg16_largefov": {"out_channels": 32},
}


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_backbone_forward_backward(name):
    torch.manual_seed(0)
    model = RISNet(tiny_config(backbone=name, backbone_kwargs=BACKBONE_KWARGS[name]))
    x = torch.randn(2, 5, 64, 64)
    boxes = torch.tensor([[0, 0, 32, 32], [10, 20, 60, 60], [0, 0, 64, 64.0]])
    out = model(x, boxes, torch.tensor([0, 0, 1]))
    assert out.global_logits.shape == (2, 1, 64, 64)
    assert out.local_logits.shape == (3, 1, 9, 9)
    fused = out.fused_logits()
    fused.mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    first_conv = next(m for m in model.backbone.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.in_channels == 5
    assert first_conv.weight.grad[:, 3:].abs().sum() > 0  # the click channels learn


def test_unknown_backbone_message():
    with pytest.raises(ValueError, match="available"):
        create_backbone("resnet9000")


def test_bad_input_shape():
    model = RISNet(tiny_config())
    with pytest.raises(ValueError, match=r"\(B, 5, H, W\)"):
        model(torch.randn(1, 3, 32, 32))


def test_paste_is_zero_probability_outside_roi():
    local = torch.full((1, 1, 4, 4), 5.0)
    pasted = paste_rois(local, torch.tensor([[2.0, 4.0, 6.0, 12.0]]), (10, 16))
    assert pasted.shape == (1, 1, 10, 16)
    assert torch.all(pasted[0, 0, 2:6, 4:12] == 5.0)
    outside = torch.ones(10, 16, dtype=torch.bool)
    outside[2:6, 4:12] = False
    assert torch.all(pasted[0, 0][outside] == OUTSIDE_LOGIT)


def test_max_fusion_takes_pixelwise_max_per_image():
    g = torch.zeros(2, 1, 4, 4)
    pasted = torch.full((2, 1, 4, 4), OUTSIDE_LOGIT)
    pasted[0, 0, :2, :2] = 3.0  # image 0
    pasted[1, 0, 2:, 2:] = -1.0  # image 1, lower than global: no effect under max
    out = fuse(g, pasted, torch.tensor([0, 1]), "max")
    assert torch.all(out[0, 0, :2, :2] == 3.0) and torch.all(out[0, 0, 2:, 2:] == 0.0)
    assert torch.all(out[1] == 0.0)
    mean = fuse(g, pasted, torch.tensor([0, 1]), "mean")
    p = torch.sigmoid(mean[0, 0, 0, 0])
    assert p == pytest.approx((0.5 + torch.sigmoid(torch.tensor(3.0)).item()) / 2, abs=1e-4)
