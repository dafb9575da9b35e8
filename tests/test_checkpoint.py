import pytest
import torch

from napari_risnet.model import CheckpointError, load_checkpoint, save_checkpoint



def test_round_trip_rebuilds_the_same_model(tmp_path, tiny_model):
    path = save_checkpoint(tmp_path / "m.pt", tiny_model, {"note": "x"})
    model, meta = load_checkpoint(path)
    assert meta["note"] == "x"
    x = torch.randn(1, 5, 32, 32)
    with torch.no_grad():
        a = tiny_model(x).global_logits
        b = model(x).global_logits
    torch.testing.assert_close(a, b)


def test_half_precision_checkpoint_loads(tmp_path, tiny_model):
    path = save_checkpoint(tmp_path / "h.pt", tiny_model, half=True)
    payload = torch.load(path, weights_only=True)
    assert all(v.dtype == torch.float16 for v in payload["state_dict"].values()
               if v.is_floating_point())
    model, _ = load_checkpoint(path)
    assert next(model.parameters()).dtype == torch.float32


def test_truncated_file_is_refused(tmp_path, tiny_model):
    path = save_checkpoint(tmp_path / "m.pt", tiny_model)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable"):
        load_checkpoint(path)


def test_foreign_file_is_refused(tmp_path):
    path = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, path)
    with pytest.raises(CheckpointError, match="not a napari-risnet checkpoint"):
        load_checkpoint(path)


def test_weights_of_another_architecture_are_refused(tmp_path, tiny_model):
    path = save_checkpoint(tmp_path / "m.pt", tiny_model)
    payload = torch.load(path, weights_only=True)
    payload["config"]["local_channels"] = 8
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="do not match"):
        load_checkpoint(path)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


def test_average_of_checkpoints_is_the_mean_of_their_weights(tmp_path):
    from napari_risnet.cli import main
    from napari_risnet.model import RISNet
    from conftest import tiny_config

    torch.manual_seed(0)
    a, b = RISNet(tiny_config()), RISNet(tiny_config())
    save_checkpoint(tmp_path / "a.pt", a)
    save_checkpoint(tmp_path / "b.pt", b)
    assert main(["average", str(tmp_path / "a.pt"), str(tmp_path / "b.pt"),
                 "--out", str(tmp_path / "ab.pt")]) == 0
    avg, meta = load_checkpoint(tmp_path / "ab.pt")
    assert len(meta["averaged_from"]) == 2
    for name, v in avg.state_dict().items():
        if v.is_floating_point():
            torch.testing.assert_close(v, (a.state_dict()[name] + b.state_dict()[name]) / 2)
    conv = next(k for k, v in a.state_dict().items() if v.is_floating_point() and v.ndim == 4)
    assert not torch.equal(avg.state_dict()[conv], a.state_dict()[conv])  # a real mean


def test_weighted_average_interpolates_towards_the_heavier_checkpoint(tmp_path, capsys):
    from napari_risnet.cli import main
    from napari_risnet.model import RISNet
    from conftest import tiny_config

    torch.manual_seed(0)
    a, b = RISNet(tiny_config()), RISNet(tiny_config())
    save_checkpoint(tmp_path / "a.pt", a)
    save_checkpoint(tmp_path / "b.pt", b)
    args = ["average", str(tmp_path / "a.pt"), str(tmp_path / "b.pt"), "--out",
            str(tmp_path / "ab.pt")]
    assert main(args + ["--weights", "3", "1"]) == 0
    avg, meta = load_checkpoint(tmp_path / "ab.pt")
    assert meta["averaging_weights"] == [3.0, 1.0]
    for name, v in avg.state_dict().items():
        if v.is_floating_point():
            torch.testing.assert_close(v, 0.75 * a.state_dict()[name] + 0.25 * b.state_dict()[name])
    capsys.readouterr()
    assert main(args + ["--weights", "1"]) == 2
    assert "one per checkpoint" in capsys.readouterr().err
    assert main(args + ["--weights", "1", "0"]) == 2
    assert "positive" in capsys.readouterr().err


def test_average_refuses_one_file_and_mixed_architectures(tmp_path, capsys):
    from napari_risnet.cli import main
    from napari_risnet.model import RISNet
    from napari_risnet.model.averaging import average_checkpoints
    from conftest import tiny_config

    save_checkpoint(tmp_path / "a.pt", RISNet(tiny_config()))
    save_checkpoint(tmp_path / "c.pt", RISNet(tiny_config(context_channels=8)))
    with pytest.raises(CheckpointError, match="another architecture"):
        average_checkpoints([tmp_path / "a.pt", tmp_path / "c.pt"])
    assert main(["average", str(tmp_path / "a.pt"), "--out", str(tmp_path / "x.pt")]) == 2
    assert "at least two checkpoints" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()


def test_a_checkpoint_path_with_a_tilde_is_read_from_home(tmp_path, tiny_model, monkeypatch):
    from napari_risnet.inference.predictor import Predictor

    monkeypatch.setenv("HOME", str(tmp_path))
    save_checkpoint(tmp_path / "m.pt", tiny_model)
    model, _ = load_checkpoint("~/m.pt")
    assert sum(p.numel() for p in model.parameters()) == \
        sum(p.numel() for p in tiny_model.parameters())
    assert Predictor(checkpoint="~/m.pt", device="cpu").checkpoint == tmp_path / "m.pt"
