"""anchor_decay: the trained weights pulled back toward the run's starting model (L2-SP)."""
import pytest
import torch

from napari_risnet.model import RISNet, save_checkpoint
from napari_risnet.model.risnet import RISNetConfig
from napari_risnet.training.anchor import WeightAnchor
from napari_risnet.training.config import TrainConfig

from test_training import _tiny_recipe


def test_pull_moves_each_trained_weight_its_share_of_the_way_back():
    net = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 1))
    net[1].weight.requires_grad_(False)  # frozen: not anchored, not moved
    anchor = WeightAnchor(net, decay=100.0)
    start = net[0].weight.detach().clone()
    frozen = net[1].weight.detach().clone()
    with torch.no_grad():
        net[0].weight.add_(1.0)
        net[1].weight.add_(1.0)
    assert anchor.distance() > 0.5
    anchor.pull(lr=2e-3)  # 0.2 of the way back
    assert torch.allclose(net[0].weight, start + 0.8, atol=1e-6)
    assert torch.allclose(net[1].weight, frozen + 1.0)
    WeightAnchor(net, decay=0.0).pull(lr=1.0)  # off: nothing moves
    assert torch.allclose(net[0].weight, start + 0.8, atol=1e-6)
    with pytest.raises(ValueError, match="<= 1"):
        anchor.pull(lr=0.1)


def test_recipe_checks_the_anchor():
    with pytest.raises(ValueError, match="anchor_decay must be >= 0"):
        TrainConfig(anchor_decay=-1.0)
    with pytest.raises(ValueError, match="anchor_decay \\* lr"):
        TrainConfig(anchor_decay=2000.0, lr=1e-3)
    assert TrainConfig(anchor_decay=100.0, lr=1e-3).anchor_decay == 100.0


def _run(tmp_path, name: str, decay: float):
    from napari_risnet.training.trainer import train

    cfg = _tiny_recipe(tmp_path / name, optimizer="adamw", lr=0.01, steps_per_epoch=6,
                       iterative_prob=0.0, weight_decay=0.0, anchor_decay=decay)
    start = tmp_path / "start.pt"
    if not start.is_file():
        torch.manual_seed(0)
        save_checkpoint(start, RISNet(RISNetConfig.from_dict(cfg.model)), {})
    cfg.init_checkpoint = str(start)
    return cfg, train(cfg)


def _distance(path, start) -> float:
    """How far the weights moved (BatchNorm statistics are no weights: not anchored)."""
    a = torch.load(path, weights_only=True)["state_dict"]
    b = torch.load(start, weights_only=True)["state_dict"]
    return sum(float(((a[k].float() - b[k].float()) ** 2).sum()) for k in b
               if b[k].is_floating_point() and "running" not in k) ** 0.5


def test_anchored_training_stays_nearer_the_start_and_reports_how_near(tmp_path):
    _, free = _run(tmp_path, "free", 0.0)
    _, held = _run(tmp_path, "held", 90.0)  # lr * decay = 0.9: a strong pull
    start = tmp_path / "start.pt"
    free_d = _distance(tmp_path / "free" / "run" / "last.pt", start)
    held_d = _distance(tmp_path / "held" / "run" / "last.pt", start)
    assert free_d > 0
    assert held_d < 0.5 * free_d
    assert "anchor_rms" in held["history"][-1] and "anchor_rms" not in free["history"][-1]
    assert 0 < held["history"][-1]["anchor_rms"]


def test_a_resumed_run_is_anchored_to_where_the_run_started(tmp_path):
    """A kill and a resume must not move the anchor to the weights the resume loads."""
    from napari_risnet.training.datasets import ObjectPool
    from napari_risnet.training.trainer import Trainer
    from napari_risnet.training.validation import ValidationSet

    cfg, _ = _run(tmp_path, "run", 10.0)
    pool = ObjectPool.from_folders([(d.path, d.weight, d.objects, d.min_area)
                                    for d in cfg.data], cfg.max_side)
    resumed = Trainer(cfg, pool, ValidationSet([]), resume=True)
    assert resumed.step == 6
    start = torch.load(tmp_path / "start.pt", weights_only=True)["state_dict"]
    names = [n for n, p in resumed.model.named_parameters() if p.requires_grad]
    assert len(names) == len(resumed.anchor.start)
    for name, anchored in zip(names, resumed.anchor.start):
        assert torch.equal(anchored, start[name].float()), name
    assert resumed.anchor.distance() > 0  # the resumed weights are elsewhere
