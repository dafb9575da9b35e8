"""Architecture version 2: previous-mask input, refinement decoder, growing a v1 model."""
import numpy as np
import pytest
import torch

from napari_risnet.clicks import Click
from napari_risnet.inference.predictor import Predictor, PredictorSettings
from napari_risnet.model import (CheckpointError, RISNet, grow_model, load_checkpoint,
                                 save_checkpoint)
from napari_risnet.model.checkpoint import FORMAT, FORMAT_V2
from napari_risnet.training.config import TrainConfig
from napari_risnet.training.datasets import Sample, make_batch
from napari_risnet.training.loss import click_discount_loss, soft_iou_loss
from napari_risnet.training.model_setup import freeze_early_stages

from conftest import tiny_config

BOXES = torch.tensor([[0, 0, 32, 32], [10, 20, 60, 60.0]])
ROI_BATCH = torch.tensor([0, 1])


def _perturb(model: torch.nn.Module, seed: int = 0) -> None:
    """Random non-zero values everywhere (zero-initialised layers included)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.1)


def test_grown_model_answers_exactly_as_the_old_one():
    torch.manual_seed(0)
    old = RISNet(tiny_config()).eval()
    _perturb(old)
    grown = grow_model(old, prev_mask=True, decoder_channels=8).eval()
    assert grown.config.version == 2 and grown.config.in_channels == 6
    x = torch.randn(2, 5, 64, 64)
    mask = (torch.rand(2, 1, 64, 64) > 0.5).float()
    with torch.no_grad():
        before = old(x, BOXES, ROI_BATCH).fused_logits()
        after = grown(torch.cat([x, mask], 1), BOXES, ROI_BATCH)
    assert after.refined_logits is not None
    torch.testing.assert_close(after.final_logits(), before, rtol=0, atol=1e-6)


def test_v2_parts_learn_and_use_the_previous_mask():
    torch.manual_seed(0)
    model = RISNet(tiny_config(prev_mask=True, decoder_channels=8))
    x = torch.randn(2, 6, 64, 64)
    out = model(x, BOXES, ROI_BATCH)
    assert out.refined_logits.shape == (2, 1, 64, 64)
    out.final_logits().mean().backward()
    embed_last = model.backbone.mask_embed[-1].weight
    assert embed_last.grad is not None and embed_last.grad.abs().sum() > 0
    assert model.decoder.out.weight.grad.abs().sum() > 0
    _perturb(model.eval())
    with torch.no_grad():
        a = model(x).final_logits()
        x2 = x.clone()
        x2[:, 5] = 1.0 - x2[:, 5]
        b = model(x2).final_logits()
    assert (a - b).abs().max() > 1e-4  # the previous mask reaches the answer


def test_input_channels_are_checked():
    model = RISNet(tiny_config(prev_mask=True))
    with pytest.raises(ValueError, match=r"\(B, 6, H, W\)"):
        model(torch.randn(1, 5, 32, 32))


def test_decoder_needs_low_level_features():
    with pytest.raises(ValueError, match="stride-4"):
        RISNet(tiny_config(backbone="vgg16_largefov", backbone_kwargs={"out_channels": 16},
                           decoder_channels=8))


def test_v2_checkpoint_format_and_version_messages(tmp_path):
    v1 = RISNet(tiny_config()).eval()
    v2 = grow_model(v1, prev_mask=True, decoder_channels=8).eval()
    p1 = save_checkpoint(tmp_path / "v1.pt", v1)
    p2 = save_checkpoint(tmp_path / "v2.pt", v2)
    assert torch.load(p1, weights_only=True)["format"] == FORMAT  # old releases still read it
    assert torch.load(p2, weights_only=True)["format"] == FORMAT_V2
    loaded, _ = load_checkpoint(p2)
    assert loaded.config.prev_mask and loaded.config.decoder_channels == 8
    payload = torch.load(p2, weights_only=True)
    payload["format"] = "napari-risnet/3"
    torch.save(payload, tmp_path / "v3.pt")
    with pytest.raises(CheckpointError, match="newer napari-risnet.*napari-risnet/3"):
        load_checkpoint(tmp_path / "v3.pt")


def test_predictor_feeds_the_previous_mask(disc):
    image, gt = disc
    torch.manual_seed(0)
    model = RISNet(tiny_config(prev_mask=True, decoder_channels=8)).eval()
    _perturb(model)
    seen = []
    original = model.encode

    def spy(x):
        seen.append(x[0, 5].clone())
        return original(x)

    model.encode = spy
    predictor = Predictor(model, PredictorSettings(use_graphcut=False), device="cpu")
    predictor.set_image(image)
    clicks = [Click(48, 60, True), Click(10, 10, False)]
    predictor.predict(clicks, prev_mask=np.zeros_like(gt))
    predictor.predict(clicks, prev_mask=gt)
    assert seen[0].sum() == 0
    # the disc (pi 22^2 px) inside the window around it and the negative click
    assert 0.05 < seen[-1].mean() < 0.5


def test_make_batch_adds_the_previous_mask_channel():
    rng = np.random.default_rng(0)
    s = Sample(rng.random((32, 32, 3), dtype=np.float32), np.zeros((32, 32), bool),
               np.zeros((32, 32), bool), np.zeros((32, 32), bool))
    s.gt[8:20, 8:20] = True
    prev = np.zeros((32, 32), bool)
    prev[10:14, 10:14] = True
    batch = make_batch([s, s], [[Click(12, 12, True)]] * 2, 2, (0.5,) * 3, (0.5,) * 3,
                       [prev, None])
    assert batch["x"].shape == (2, 6, 32, 32)
    assert batch["x"][0, 5].sum() == 16 and batch["x"][1, 5].sum() == 0


def test_refined_fusion_is_supervised():
    model = RISNet(tiny_config(decoder_channels=8))
    out = model(torch.randn(2, 5, 64, 64), torch.cat([BOXES] * 1), ROI_BATCH)
    pasted = out.pasted_logits.repeat_interleave(1, 0)
    out.pasted_logits = pasted
    gt = torch.zeros(2, 1, 64, 64)
    gt[:, :, 16:48, 16:48] = 1
    with_refine = click_discount_loss(out, gt, torch.ones_like(gt), 1, 0.8, 0.0, 1.0)
    without = click_discount_loss(out, gt, torch.ones_like(gt), 1, 0.8, 0.0, 0.0)
    assert with_refine.refined_loss is not None
    assert with_refine.total.item() == pytest.approx(
        without.total.item() + with_refine.refined_loss.item(), rel=1e-5)


def test_soft_iou_term_scores_the_final_answer():
    gt = torch.zeros(2, 1, 32, 32)
    gt[:, :, 8:24, 8:24] = 1
    valid = torch.ones_like(gt)
    right = soft_iou_loss((gt * 2 - 1) * 20, gt, valid)
    half = gt.clone()
    half[:, :, 16:24] = 0  # half the object missed
    wrong = soft_iou_loss((half * 2 - 1) * 20, gt, valid)
    assert right.shape == (2,) and right.max() < 1e-3
    assert wrong.min() == pytest.approx(0.5, abs=0.01)
    # a missed part outside the valid pixels does not count
    assert soft_iou_loss((half * 2 - 1) * 20, gt, 1 - (gt - half)).max() < 1e-3

    model = RISNet(tiny_config(decoder_channels=8))
    out = model(torch.randn(2, 5, 64, 64), BOXES, ROI_BATCH)
    gt = torch.zeros(2, 1, 64, 64)
    gt[:, :, 16:48, 16:48] = 1
    valid = torch.ones_like(gt)
    with_iou = click_discount_loss(out, gt, valid, 1, 0.8, 0.0, 1.0, iou_weight=2.0)
    without = click_discount_loss(out, gt, valid, 1, 0.8, 0.0, 1.0)
    expected = soft_iou_loss(out.refined_logits, gt, valid).mean()
    assert with_iou.iou_loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert with_iou.total.item() == pytest.approx(without.total.item() + 2 * expected.item(),
                                                  rel=1e-5)
    assert without.iou_loss is None


def test_frozen_stages_keep_weights_and_mask_gradient():
    model = RISNet(tiny_config(prev_mask=True))
    frozen = freeze_early_stages(model, 2)
    assert any(n.startswith("conv_stem") for n in frozen)
    assert any(n.startswith("blocks.1") for n in frozen)
    assert not any(n.startswith("blocks.2") for n in frozen)
    model(torch.randn(1, 6, 64, 64)).final_logits().mean().backward()
    assert model.backbone.body.conv_stem.weight.grad is None
    assert model.backbone.mask_embed[-1].weight.grad.abs().sum() > 0


def test_grow_keys_are_checked():
    with pytest.raises(ValueError, match="unknown key"):
        TrainConfig(grow={"prevmask": True})
