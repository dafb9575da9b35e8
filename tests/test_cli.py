import json

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from napari_risnet.cli import main
from napari_risnet.model import RISNet, save_checkpoint

from conftest import disc_image, tiny_config


@pytest.fixture
def dataset(tmp_path):
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for k in range(2):
        img, gt = disc_image(shape=(64, 80), centre=(30, 40 + k), radius=14, seed=k, rgb=True)
        Image.fromarray(img).save(root / "images" / f"im {k}.png")  # stems may hold spaces
        mask = np.where(gt, 255, 0).astype(np.uint8)
        mask[0:3] = 128  # an ignore band
        Image.fromarray(mask).save(root / "masks" / f"im {k}.png")
    return root


def test_evaluate_graphcut_writes_json_and_plot(dataset, tmp_path, capsys):
    out, plot = tmp_path / "r.json", tmp_path / "c.png"
    assert main(["evaluate", str(dataset), "--method", "graphcut", "--max-clicks", "5",
                 "--out", str(out), "--plot", str(plot)]) == 0
    data = json.loads(out.read_text())
    for key in ("noc85", "noc90", "nof85", "nof90", "miou", "spc", "n_objects"):
        assert key in data
    assert data["n_objects"] == 2 and len(data["miou"]) == 5
    assert data["noc90"] <= 2  # a clean disc is easy for a graph cut
    assert plot.stat().st_size > 1000
    assert "NoC@90" in capsys.readouterr().out


def test_evaluate_risnet_with_a_random_checkpoint(dataset, tmp_path):
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "rand.pt", RISNet(tiny_config()))
    out = tmp_path / "r.json"
    assert main(["evaluate", str(dataset), "--checkpoint", str(ckpt), "--max-clicks", "2",
                 "--limit", "1", "--device", "cpu", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["n_objects"] == 1
    assert json.loads(out.read_text())["focus"] is True
    assert main(["evaluate", str(dataset), "--checkpoint", str(ckpt), "--max-clicks", "2",
                 "--limit", "1", "--device", "cpu", "--no-focus", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["focus"] is False


def test_no_focus_turns_the_focus_pass_off(tmp_path):
    from napari_risnet.cli import build_method

    ckpt = save_checkpoint(tmp_path / "rand.pt", RISNet(tiny_config()))
    assert build_method("risnet", str(ckpt), "cpu").settings.focus_from > 0
    assert build_method("risnet", str(ckpt), "cpu", focus=False).settings.focus_from == 0


def test_preset_and_set_choose_the_predictor_settings(dataset, tmp_path, capsys):
    from napari_risnet.cli import build_method
    from napari_risnet.inference.settings import PRESETS

    ckpt = save_checkpoint(tmp_path / "rand.pt", RISNet(tiny_config()))
    old = build_method("risnet", str(ckpt), "cpu", preset="0.10.0").settings
    assert old.spill_ratio == PRESETS["0.10.0"].spill_ratio == 0  # 0.10.0 had no spill limit
    changed = build_method("risnet", str(ckpt), "cpu", preset="0.10.0",
                           assignments=["magnified_bias=0.25", "rules_off=flip_averaging"])
    assert changed.settings.magnified_bias == 0.25
    assert not changed.settings.uses("flip_averaging") and old.uses("flip_averaging")
    out = tmp_path / "r.json"
    assert main(["evaluate", str(dataset), "--checkpoint", str(ckpt), "--max-clicks", "2",
                 "--limit", "1", "--device", "cpu", "--set", "magnified_bias=0.25",
                 "--out", str(out)]) == 0
    assert json.loads(out.read_text())["predictor"]["magnified_bias"] == 0.25
    assert main(["evaluate", str(dataset), "--preset", "0.1.0", "--device", "cpu"]) == 2
    assert "no predictor preset for release '0.1.0'" in capsys.readouterr().err
    assert main(["evaluate", str(dataset), "--set", "bias=1", "--device", "cpu"]) == 2
    assert "unknown setting 'bias'" in capsys.readouterr().err
    assert main(["evaluate", str(dataset), "--method", "graphcut", "--set", "n_roi=3"]) == 2
    assert "only apply to --method risnet" in capsys.readouterr().err


def test_evaluate_stack_with_labels(tmp_path):
    root = tmp_path / "stack"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    img, gt = disc_image(shape=(40, 40), centre=(20, 20), radius=8)
    tifffile.imwrite(root / "images" / "v.tif", np.stack([img, img, img]))
    lab = np.stack([gt, gt, np.zeros_like(gt)]).astype(np.uint8)
    tifffile.imwrite(root / "labels" / "v.tif", lab)
    out = tmp_path / "s.json"
    assert main(["evaluate", str(root), "--method", "graphcut", "--max-clicks", "3",
                 "--out", str(out)]) == 0
    assert json.loads(out.read_text())["n_objects"] == 2  # one object per (slice, label)


def test_segment_headless(tmp_path):
    img, gt = disc_image()
    Image.fromarray(img).save(tmp_path / "img.png")
    out = tmp_path / "mask.tif"
    assert main(["segment", str(tmp_path / "img.png"), "--method", "graphcut",
                 "--click", "48,60,+", "--click", "5,5,-", "-o", str(out)]) == 0
    mask = tifffile.imread(out) > 0
    assert (mask & gt).sum() / (mask | gt).sum() > 0.9


@pytest.mark.parametrize("argv, message", [
    (["evaluate", "{missing}", "--method", "graphcut"], "no images found"),
    (["evaluate", "{mismatch}", "--method", "graphcut"], "no mask or label"),
    (["evaluate", "{ds}", "--method", "risnet", "--checkpoint", "{foreign}"],
     "not a napari-risnet checkpoint"),
    (["segment", "{img}", "--method", "graphcut", "--click", "500,5,+", "-o", "{out}"],
     "outside"),
])
def test_bad_input_gives_one_line_errors(tmp_path, dataset, capsys, argv, message):
    (tmp_path / "mismatch" / "images").mkdir(parents=True)
    (tmp_path / "mismatch" / "masks").mkdir()
    Image.fromarray(np.zeros((9, 9), np.uint8)).save(tmp_path / "mismatch" / "images" / "a.png")
    Image.fromarray(np.zeros((9, 9), np.uint8)).save(tmp_path / "mismatch" / "masks" / "b.png")
    torch.save({"x": 1}, tmp_path / "foreign.pt")
    img, _ = disc_image()
    Image.fromarray(img).save(tmp_path / "img.png")
    subst = {"missing": tmp_path / "nothing", "mismatch": tmp_path / "mismatch", "ds": dataset,
             "foreign": tmp_path / "foreign.pt", "img": tmp_path / "img.png",
             "out": tmp_path / "o.tif"}
    argv = [a.format(**subst) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_bad_click_syntax(capsys):
    with pytest.raises(SystemExit):
        main(["segment", "x.png", "--click", "1,2", "-o", "m.tif"])
    assert "ROW,COL,+" in capsys.readouterr().err


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("evaluate", "segment", "train", "finetune", "average", "pack", "demo"):
        assert cmd in out


def test_unreadable_image_is_one_line_exit_2(tmp_path):
    """Run as a user would (a separate process): no traceback, exit status 2."""
    import subprocess
    import sys

    bad = tmp_path / "notimage.png"
    bad.write_text("hello")
    proc = subprocess.run([sys.executable, "-m", "napari_risnet", "segment", str(bad),
                           "--method", "graphcut", "--click", "5,5,+", "-o",
                           str(tmp_path / "o.tif")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot read" in lines[0] and "Traceback" not in proc.stderr


def test_negative_click_coordinates_are_accepted(tmp_path, capsys):
    from napari_risnet.cli import build_parser
    from napari_risnet.cli.checks import join_click_values as _join_click_values

    args = build_parser().parse_args(_join_click_values(
        ["segment", "x.png", "--click", "-5,10,+", "--click", "3,-2.5,-", "-o", "m.tif"]))
    assert [(c.row, c.col, c.positive) for c in args.click] == [(-5, 10, True),
                                                                 (3, -2.5, False)]
    img, _ = disc_image()
    Image.fromarray(img).save(tmp_path / "img.png")
    assert main(["segment", str(tmp_path / "img.png"), "--method", "graphcut", "--click",
                 "-5,10,+", "-o", str(tmp_path / "o.tif")]) == 2
    err = capsys.readouterr().err
    assert "outside" in err and "expected one argument" not in err
