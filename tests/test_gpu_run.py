"""The GPU run, end to end on the CPU: pack tiny synthetic folders, then train with the shipped
recipe (training/gpu/gpu.toml) for a few seconds in a fresh process where PyMaxflow, tomli-w and
napari cannot be imported (a bare GPU node), and check what it leaves behind."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_risnet.cli import main as cli_main
from napari_risnet.inference.graphcut import graph_cut, graphcut_available
from napari_risnet.model.checkpoint import load_checkpoint, read_checkpoint
from napari_risnet.training.config import load_config
from napari_risnet.training.pack import ROOT_INDEX, read_pack, write_pack
from napari_risnet.training.split import is_validation

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "training" / "gpu" / "gpu.toml"
BLOCKED = ("maxflow", "tomli_w", "napari", "qtpy", "magicgui")
# the folder names of training/gpu/gpu.toml, so the shipped recipe reads the test's pack
FOLDERS = ("natural/coco_mval", "dsb2018_nuclei/train", "msd_hippocampus/train")


def _discs(rng: np.random.Generator, shape: tuple[int, int], n: int) -> np.ndarray:
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    lab = np.zeros(shape, np.uint16)
    for j in range(1, n + 1):
        r = rng.integers(6, 14)
        cy, cx = rng.integers(r, shape[0] - r), rng.integers(r, shape[1] - r)
        lab[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = j
    return lab


def make_folders(root: Path, n: int = 10) -> list[Path]:
    """Three tiny folders in the shared layout: RGB + masks, grey + labels, stacks + labels."""
    rng = np.random.default_rng(0)
    natural, nuclei, stacks = (root / f for f in FOLDERS)
    for d, sub in ((natural, "masks"), (nuclei, "labels"), (stacks, "labels")):
        (d / "images").mkdir(parents=True)
        (d / sub).mkdir()
    for i in range(n):
        lab = _discs(rng, (120, 400), 1)  # long side 400 > max_side: must be resized
        rgb = rng.integers(0, 90, (120, 400, 3), dtype=np.uint8)
        rgb[lab > 0] += np.array([150, 60, 20], np.uint8)
        Image.fromarray(rgb).save(natural / "images" / f"photo {i}.jpg", quality=95)
        mask = (lab > 0).astype(np.uint8) * 255
        Image.fromarray(mask).save(natural / "masks" / f"photo {i}.png")
        lab = _discs(rng, (96, 96), 3)
        grey = (rng.integers(0, 40, (96, 96)) + 180 * (lab > 0)).astype(np.uint8)
        Image.fromarray(grey).save(nuclei / "images" / f"cell{i}.png")
        tifffile.imwrite(nuclei / "labels" / f"cell{i}.tif", lab)
        vol_lab = np.stack([_discs(rng, (48, 40), 2) for _ in range(3)])
        vol = (rng.normal(0, 1, vol_lab.shape) + 4.0 * (vol_lab > 0)).astype(np.float32)
        tifffile.imwrite(stacks / "images" / f"vol{i}.tif", vol)
        tifffile.imwrite(stacks / "labels" / f"vol{i}.tif", vol_lab)
    return [natural, nuclei, stacks]


def write_source_recipe(root: Path, folders: list[Path]) -> Path:
    recipe = root / "src.toml"
    recipe.write_text("val_fraction = 0.4\nval_objects = 6\n" + "".join(
        f'[[data]]\npath = "{f.as_posix()}"\n' for f in folders))
    return recipe


@pytest.fixture(scope="module")
def packed(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("gpu")
    recipe = write_source_recipe(root, make_folders(root / "data"))
    assert cli_main(["pack", "--config", str(recipe), "--out", str(root / "pack"),
                     "--max-side", "160", "--budget-mb", "5"]) == 0
    return root, recipe


def test_pack_resizes_keeps_the_held_out_images_apart_and_reads_back(packed):
    root, recipe = packed
    index = json.loads((root / "pack" / ROOT_INDEX).read_text())
    assert [f["name"] for f in index["folders"]] == [
        "natural-coco_mval", "dsb2018_nuclei-train", "msd_hippocampus-train"]
    assert 0 < index["total_bytes"] < 5 * 1024 * 1024
    config = load_config(recipe)
    n_val = 0
    for f in index["folders"]:
        train, val, meta = read_pack(root / "pack" / f["name"])
        assert train and meta["max_side"] == 160
        for stored in train:
            assert max(stored.rgb.shape[:2]) <= 160 and stored.rgb.dtype == np.uint8
            assert stored.rgb.shape[:2] == stored.instances.shape and stored.instances.any()
            # the trainer's held-out images never enter the training part
            assert not is_validation(stored.name, config.val_fraction)  # name = image key
        for sample in val:
            assert sample.gt.any() and sample.gt.shape == sample.image.shape[:2]
            assert is_validation(sample.name.split(":l")[0], config.val_fraction)
        n_val += len(val)
    assert n_val > 0
    natural, _, _ = read_pack(root / "pack" / "natural-coco_mval")
    assert natural[0].rgb.shape == (48, 160, 3)  # 120 x 400 -> long side 160


def test_pack_over_budget_keeps_nothing_and_never_replaces_other_folders(packed, tmp_path):
    _, recipe = packed
    config = load_config(recipe)
    with pytest.raises(ValueError, match="over the budget"):
        write_pack(config, tmp_path / "small", max_side=160, budget_mb=0.001)
    assert not (tmp_path / "small").exists() and not (tmp_path / "small.partial").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not a pack"):
        write_pack(config, tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_graph_cut_imports_pymaxflow_only_when_it_runs(monkeypatch):
    monkeypatch.setitem(sys.modules, "maxflow", None)  # `import maxflow` now fails
    assert not graphcut_available()
    probs = np.full((8, 8), 0.5, np.float32)
    with pytest.raises(ImportError, match="PyMaxflow"):
        graph_cut(probs, np.zeros((8, 8), np.float32))


# installed as sitecustomize.py: every process of the run (workers too) lacks these modules
_BLOCKER = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError(f"{{name}} is not installed on a bare GPU node")
sys.meta_path.insert(0, Block())
"""


def test_gpu_run_trains_on_the_cpu_within_its_budget_and_writes_loadable_checkpoints(
        packed, tmp_path):
    root, _ = packed
    out = tmp_path / "run"
    budget = 30  # seconds from process start; steps begin after ~5-15 s on a busy 2-core CPU
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(_BLOCKER.format(blocked=BLOCKED))
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site"), "PYTHON": sys.executable,
           "OMP_NUM_THREADS": "1"}
    # the documented command (training/gpu/run.sh OUT), from another folder, on the test's pack
    cmd = ["bash", str(ROOT / "training" / "gpu" / "run.sh"), "run",
           "--pack", str(root / "pack"), "--device", "cpu",
           "--set", f"time_budget_s={budget}", "--set", "checkpoint_every_s=1",
           "--set", "batch_size=2", "--set", "crop_size=64", "--set", "workers=1",
           "--set", "robot_workers=1", "--set", "steps_per_epoch=3",
           "--set", "val_max_clicks=2", "--set", "threads=1",
           # asks for the graph cut although PyMaxflow is missing: validation falls back
           "--set", "val_graphcut=true"]
    tic = time.time()
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    wall = time.time() - tic
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "GPU none" in proc.stdout and "PyMaxflow" not in proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    history = json.loads((out / "history.json").read_text())
    why = f"{summary}\n{history}\n{proc.stdout[-2000:]}"
    assert summary["out_of_time"] and summary["elapsed_s"] <= budget + 5, why
    assert summary["steps"] > 0 and summary["samples"] == 2 * summary["steps"], why
    assert wall < budget + 30
    assert history[0]["epoch"] == 0 and np.isfinite(history[0]["val_noc85"])  # the start model
    trained = [h for h in history[1:] if h.get("step")]
    assert trained, f"no training step within the budget: {history}"
    assert all(np.isfinite(h["val_noc85"]) and np.isfinite(h["loss"]) for h in trained)
    for name in ("last.pt", "best.pt"):
        model, meta = load_checkpoint(out / name)
        assert model.config.prev_mask and model.config.decoder_channels == 32  # grown to v2
        assert meta["step"] > 0
    state = read_checkpoint(out / "last.pt")["train_state"]
    assert state["step"] == history[-1]["step"]
    assert (out / "config.json").is_file()  # tomli-w was blocked: the recipe written as JSON


def test_loader_workers_shrink_to_the_shared_memory_there_is(monkeypatch, tmp_path):
    from collections import namedtuple

    from napari_risnet.training import loader
    from napari_risnet.training.config import TrainConfig

    config = TrainConfig(batch_size=64, crop_size=320, workers=12)
    per_batch = 64 * 320 ** 2 * 7  # rgb + gt, ignore, others, previous mask
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(loader.shutil, "disk_usage",
                        lambda _: usage(0, 0, 3 * 2 * loader.PREFETCH * per_batch))
    assert loader.workers_that_fit(config, tmp_path) == 3
    monkeypatch.setattr(loader.shutil, "disk_usage", lambda _: usage(0, 0, 64 * 2 ** 20))
    assert loader.workers_that_fit(config, tmp_path) == 0  # a 64 MB /dev/shm: main process
    assert loader.workers_that_fit(config, tmp_path / "missing") == 12


def test_batched_click_maps_equal_the_distance_transform():
    from napari_risnet.clicks import Click, distance_maps
    from napari_risnet.training.datasets import click_distance_maps

    rng = np.random.default_rng(1)
    shape = (37, 50)
    clicks = [[Click(float(rng.uniform(-3, 40)), float(rng.uniform(-3, 53)),
                     bool(rng.random() < .5)) for _ in range(n)] for n in (0, 1, 4, 9)]
    clicks.append([Click(2.5, 3.5, True), Click(400.0, 3.0, True)])  # .5 rounding, off-image
    got = click_distance_maps(shape, clicks).numpy()
    want = np.stack([distance_maps(shape, c) for c in clicks])
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-4)
    far = click_distance_maps((300, 300), [[Click(0, 0, True)]]).numpy()
    assert far[0, 0, 299, 299] == 255.0 and far[0, 1].min() == 255.0  # truncated / no click


def test_robot_clicks_survive_a_broken_process_pool():
    from concurrent.futures import BrokenExecutor

    from napari_risnet.clicks import Click
    from napari_risnet.training.rollouts import _robot_clicks

    class Broken:
        def map(self, *args, **kwargs):
            raise BrokenExecutor("a worker died")

    gt = np.zeros((20, 20), bool)
    gt[5:15, 5:15] = True
    args = ([gt], [np.zeros_like(gt)], [[Click(10, 10, True)]], [np.zeros_like(gt)])
    assert _robot_clicks(args, Broken()) == _robot_clicks(args, None)
    assert _robot_clicks(args, None)[0].positive
