"""Frozen early stages in bf16: only where autograd records nothing, and nothing else changes."""
import pytest
import torch
from torch import nn

import napari_risnet.training.trainer as trainer_module
from napari_risnet.training.config import TrainConfig
from napari_risnet.training.frozen_bf16 import run_frozen_in_bf16
from napari_risnet.training.model_setup import frozen_modules
from napari_risnet.training.trainer import Trainer
from napari_risnet.training.validation import ValidationSet

from conftest import tiny_config


def _frozen_block():
    torch.manual_seed(0)
    block = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()).eval()
    for p in block.parameters():
        p.requires_grad_(False)
    return block


def test_bf16_only_where_autograd_records_nothing():
    ref, fast = _frozen_block(), _frozen_block()
    assert run_frozen_in_bf16([fast]) == 1
    assert run_frozen_in_bf16([fast]) == 0  # already swapped
    x = torch.randn(2, 3, 16, 16)
    expected = ref(x)
    out = fast(x)  # a training step: gradients on, frozen input and weights
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, expected, rtol=0.05, atol=0.05)
    assert not torch.equal(out, expected)  # it did run in bf16
    with torch.no_grad():  # validation / inference: the fp32 forward, bit for bit
        assert torch.equal(fast(x), ref(x))
    xg = x.clone().requires_grad_()  # an input that needs a gradient: fp32, recorded
    assert torch.equal(fast(xg), ref(xg))
    assert fast.state_dict().keys() == ref.state_dict().keys()


@pytest.mark.parametrize("native,flag,expected", [(True, True, True), (False, True, False),
                                                   (True, False, False)])
def test_trainer_uses_it_on_a_cpu_with_native_bf16(tmp_path, monkeypatch, native, flag,
                                                   expected):
    monkeypatch.setattr(trainer_module, "cpu_has_native_bf16", lambda: native)
    model = {k: v for k, v in vars(tiny_config()).items()}
    cfg = TrainConfig(out_dir=str(tmp_path), device="cpu", freeze_stages=2, model=model,
                      cpu_bf16_frozen=flag, iterative_prob=0.0)
    trainer = Trainer(cfg, pool=None, val=ValidationSet([]))
    swapped = [type(m).__name__.startswith("Bf16") for m in frozen_modules(trainer.model, 2)]
    assert swapped and all(s == expected for s in swapped)
    later = trainer.model.backbone.body.blocks[2]  # trains: never swapped
    assert not any(type(m).__name__.startswith("Bf16") for m in later.modules())
