"""Projects replay with the bundled model of the release that made them, after a release ships
new weights: ``checkpoint = "default"`` plus ``bundled`` in the record; a record without
``bundled`` (0.13.0 and earlier) means the model those releases bundled."""
from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

import napari_risnet.inference.bundled as bundled
from napari_risnet.cli import main
from napari_risnet.model import RISNet, save_checkpoint

from conftest import tiny_config
from test_project import _discs_project, as_previous_layout


def test_each_release_names_the_model_it_bundled(tmp_path, monkeypatch):
    assert bundled.bundled_release() == bundled.CURRENT == "0.24.0"
    assert bundled.bundled_release("0.23.0") == bundled.bundled_release("0.13.0") == "0.5.0"
    assert bundled.bundled_weights("0.23.0").name == "risnet_0.5.0.pt"  # both ship
    assert bundled.bundled_weights().name == "risnet_default.pt"
    # a later release with its own model: the earlier releases keep theirs
    for name in ("risnet_0.5.0.pt", "risnet_default.pt"):
        (tmp_path / name).write_bytes(b"")
    monkeypatch.setattr(bundled, "WEIGHTS_DIR", tmp_path)
    monkeypatch.setattr(bundled, "BUNDLED", (("0.5.0", "risnet_0.5.0.pt"),
                                             ("0.15.0", "risnet_default.pt")))
    assert bundled.bundled_release("0.13.0") == bundled.bundled_release("0.14.0") == "0.5.0"
    assert bundled.bundled_release("0.15.0") == bundled.bundled_release("1.2.0") == "0.15.0"
    assert bundled.recorded_weights({"checkpoint": "default"}).name == "risnet_0.5.0.pt"
    assert bundled.recorded_weights({"bundled": "0.15.0"}).name == "risnet_default.pt"
    with pytest.raises(ValueError, match="oldest"):
        bundled.bundled_release("0.3.0")
    with pytest.raises(ValueError, match="release number"):
        bundled.bundled_release("latest")
    (tmp_path / "risnet_0.5.0.pt").unlink()
    with pytest.raises(FileNotFoundError, match="release 0.5.0"):
        bundled.bundled_weights("0.9.0")


def test_replay_uses_the_bundled_model_its_record_names(tmp_path, capsys, monkeypatch):
    """A project saved today records ``bundled``; once a later release bundles another model,
    replay still rebuilds it with the one that made it, and a record without ``bundled`` (an
    earlier release's) replays with the model of those releases."""
    _, project, saved = _discs_project(tmp_path, 2)
    model = json.loads((project / "project.json").read_text())["model"]
    assert model["checkpoint"] == "default" and model["bundled"] == bundled.CURRENT

    # a later release: its own bundled model (random weights), today's kept under its name
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "risnet_today.pt").write_bytes(bundled.bundled_weights().read_bytes())
    for name in ("risnet_older.pt", "risnet_next.pt"):  # models that answer differently
        save_checkpoint(weights / name, RISNet(tiny_config(prev_mask=True)), half=True)
    monkeypatch.setattr(bundled, "WEIGHTS_DIR", weights)
    monkeypatch.setattr(bundled, "BUNDLED", (("0.1.0", "risnet_older.pt"),
                                             (bundled.CURRENT, "risnet_today.pt"),
                                             ("9.0.0", "risnet_next.pt")))
    monkeypatch.setattr(bundled, "CURRENT", "9.0.0")
    monkeypatch.setattr(bundled, "BEFORE_RECORDED", "0.4.0")  # the older model's releases
    out = tmp_path / "replayed.tif"
    assert main(["replay", str(project), "-o", str(out), "--device", "cpu"]) == 0
    assert "identical to the saved labels" in capsys.readouterr().out
    np.testing.assert_array_equal(tifffile.imread(out), saved)

    # the same record without ``bundled`` is an earlier release's: replayed with the model
    # the releases before recorded models bundled (here another one, so the labels differ)
    as_previous_layout(project, lambda meta: meta["model"].pop("bundled"))
    assert main(["replay", str(project), "-o", str(out), "--device", "cpu"]) == 0
    assert "differs from the saved labels" in capsys.readouterr().out


def test_a_project_names_a_file_by_its_path_and_the_bundled_model_by_its_release(tmp_path,
                                                                                  monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert bundled.checkpoint_record(None) == bundled.checkpoint_record("default") == \
        {"checkpoint": "default", "bundled": bundled.CURRENT}
    assert bundled.checkpoint_record("m.pt") == {"checkpoint": str(tmp_path / "m.pt")}
    assert bundled.checkpoint_record("~/m.pt") == {"checkpoint": str(tmp_path / "home" / "m.pt")}


def test_a_preset_brings_the_model_its_release_bundled(tmp_path, monkeypatch):
    """``--preset 0.18.0`` reproduces 0.18.0's results after a later release ships new weights:
    that release's settings with that release's model."""
    from napari_risnet.cli.commands import build_method
    from napari_risnet.inference.settings import PRESETS

    for name in ("risnet_old.pt", "risnet_new.pt"):
        save_checkpoint(tmp_path / name, RISNet(tiny_config(prev_mask=True)), half=True)
    monkeypatch.setattr(bundled, "WEIGHTS_DIR", tmp_path)
    monkeypatch.setattr(bundled, "BUNDLED", (("0.5.0", "risnet_old.pt"),
                                             ("9.0.0", "risnet_new.pt")))
    monkeypatch.setattr(bundled, "CURRENT", "9.0.0")
    assert build_method("risnet", device="cpu").checkpoint.name == "risnet_new.pt"
    old = build_method("risnet", device="cpu", preset="0.18.0")
    assert old.checkpoint.name == "risnet_old.pt" and old.settings == PRESETS["0.18.0"]
    mine = build_method("risnet", checkpoint=str(tmp_path / "risnet_new.pt"), device="cpu",
                        preset="0.18.0")  # a checkpoint given is the one used
    assert mine.checkpoint.name == "risnet_new.pt"
