"""The iFCN recipes are the bundled model's recipes with the global branch alone."""
from dataclasses import asdict
from pathlib import Path

import pytest

from napari_risnet.model import RISNet, RISNetConfig
from napari_risnet.training.config import load_config

TRAINING = Path(__file__).resolve().parents[1] / "training"
EXPERIMENTS = TRAINING / "experiments"
ONLY_DIFFERENT = {"out_dir", "init_checkpoint", "gamma", "local_aux_weight", "model"}


@pytest.mark.parametrize("ifcn, bundled", [("ifcn.toml", "stage1.toml"),
                                           ("ifcn_stage2.toml", "stage2.toml")])
def test_ifcn_recipe_differs_from_the_bundled_one_only_by_the_branches(ifcn, bundled):
    a, b = asdict(load_config(EXPERIMENTS / ifcn)), asdict(load_config(TRAINING / bundled))
    for key in a.keys() - ONLY_DIFFERENT:
        assert a[key] == b[key], key  # same data, weights, crops, schedule, seed
    assert a["gamma"] == 0.0 and a["local_aux_weight"] == 0.0
    model = dict(a["model"])
    assert model.pop("use_local") is False and model.pop("use_context") is False
    assert model == b["model"]


def test_ifcn_stage2_starts_from_ifcn_stage1():
    stage1, stage2 = load_config(EXPERIMENTS / "ifcn.toml"), load_config(EXPERIMENTS / "ifcn_stage2.toml")
    assert Path(stage2.init_checkpoint) == Path(stage1.out_dir) / "best.pt"


def test_ifcn_model_has_no_local_branch_and_no_context():
    cfg = load_config(EXPERIMENTS / "ifcn.toml").model
    cfg["backbone_kwargs"] = {**cfg["backbone_kwargs"], "pretrained": False}
    model = RISNet(RISNetConfig.from_dict(cfg))
    assert model.context is None and not hasattr(model, "local_proj")
