"""Iterative-click rollouts: where they run in bf16 and that they still place clicks."""
import numpy as np
import torch

import napari_risnet.training.rollouts as rollouts
from napari_risnet.model import RISNet
from napari_risnet.training.config import TrainConfig
from napari_risnet.training.datasets import ObjectPool
from napari_risnet.training.rollouts import add_iterative_clicks, rollout_autocast
from napari_risnet.training.sampling import sample_clicks

from conftest import disc_image, tiny_config

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_rollouts_use_bf16_only_where_it_pays(monkeypatch):
    cfg = TrainConfig()
    assert rollout_autocast(cfg, CUDA) is True  # amp on CUDA
    assert rollout_autocast(TrainConfig(amp=False), CUDA) is False
    monkeypatch.setattr(rollouts, "cpu_has_native_bf16", lambda: True)
    assert rollout_autocast(cfg, CPU) is True
    assert rollout_autocast(TrainConfig(cpu_bf16_rollouts=False), CPU) is False
    monkeypatch.setattr(rollouts, "cpu_has_native_bf16", lambda: False)  # emulated bf16: slower
    assert rollout_autocast(cfg, CPU) is False


def _batch(n=4):
    rng = np.random.default_rng(0)
    images, labels = zip(*(disc_image(shape=(64, 64), centre=(30, 32 + k), radius=12, seed=k)
                           for k in range(n)))
    pool = ObjectPool.from_arrays(list(images), [g.astype(np.int32) for g in labels])
    samples = [pool.sample(rng, 64) for _ in range(n)]
    clicks = [sample_clicks(s.gt, s.ignore, s.others, rng, 2, 2) for s in samples]
    return samples, clicks, rng


def test_bf16_rollout_runs_the_model_in_bf16_and_adds_robot_clicks(monkeypatch):
    monkeypatch.setattr(rollouts, "cpu_has_native_bf16", lambda: True)
    torch.manual_seed(0)
    model = RISNet(tiny_config(prev_mask=True))
    seen = []
    model.register_forward_hook(lambda m, i, out: seen.append(out.global_logits.dtype))
    samples, clicks, rng = _batch()
    cfg = TrainConfig(iterative_prob=1.0, iterative_clicks=1)
    new_clicks, prev = add_iterative_clicks(model, samples, clicks, cfg, rng, CPU)
    assert seen == [torch.bfloat16]
    assert model.training  # restored after the rollout
    grew = [len(n) - len(c) for n, c in zip(new_clicks, clicks)]
    assert set(grew) <= {0, 1} and sum(grew) > 0
    for g, p in zip(grew, prev):  # a previous mask exactly where a click was added
        assert (p is not None) == (g == 1)
        if p is not None:
            assert p.dtype == bool and p.shape == samples[0].gt.shape
    seen.clear()
    add_iterative_clicks(model, samples, clicks, TrainConfig(iterative_prob=1.0,
                         iterative_clicks=1, cpu_bf16_rollouts=False), rng, CPU)
    assert seen == [torch.float32]
