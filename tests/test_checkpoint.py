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
