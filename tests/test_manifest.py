"""The npe2 manifest: valid, every python_name importable, sample data shipped and licensed."""
from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest
import yaml

import napari_risnet

MANIFEST = Path(napari_risnet.__file__).resolve().parent / "napari.yaml"
SAMPLE_DIR = MANIFEST.parent / "sample_data"


def _python_names() -> list[str]:
    data = yaml.safe_load(MANIFEST.read_text())
    return [c["python_name"] for c in data["contributions"]["commands"]]


@pytest.mark.parametrize("python_name", _python_names())
def test_every_python_name_imports(python_name: str) -> None:
    module, _, attr = python_name.partition(":")
    obj = getattr(importlib.import_module(module), attr)
    assert callable(obj)


def test_manifest_validates_with_npe2() -> None:
    from npe2 import PluginManifest

    pm = PluginManifest.from_file(MANIFEST)
    assert pm.name == "napari-risnet"
    pm.validate_imports()
    widgets = {w.display_name for w in pm.contributions.widgets}
    assert widgets == {"RIS-Net interactive segmentation", "Fine-tune RIS-Net"}
    assert {s.key for s in pm.contributions.sample_data} == {"nuclei", "nuclei_stack"}


def test_installed_distribution_points_at_this_manifest() -> None:
    from npe2 import PluginManifest

    pm = PluginManifest.from_distribution("napari-risnet")
    assert pm.name == "napari-risnet"


def test_sample_data_is_small_licensed_and_loads() -> None:
    from napari_risnet._napari.sample_data import nuclei_sample, nuclei_stack_sample

    files = [p for p in SAMPLE_DIR.iterdir() if p.name != "LICENSES.md"]
    assert sum(p.stat().st_size for p in files) < 1_000_000
    licences = (SAMPLE_DIR / "LICENSES.md").read_text()
    for p in files:
        assert p.name in licences
    [(image, meta, kind)] = nuclei_sample()
    assert kind == "image" and image.ndim == 2 and image.dtype == np.uint8
    [(stack, meta, kind)] = nuclei_stack_sample()
    assert stack.shape == (20, 128, 128) and stack.dtype == np.uint16
    assert len(meta["scale"]) == 3
