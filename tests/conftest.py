"""Shared fixtures: tiny synthetic images and tiny random-weight models (CPU, seconds)."""
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from napari_risnet.model import RISNet, RISNetConfig


def disc_image(shape=(96, 128), centre=(48, 60), radius=22, seed=0, rgb=False):
    """A bright disc on a dark noisy background and its mask."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    gt = (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 < radius ** 2
    rng = np.random.default_rng(seed)
    img = np.clip(np.where(gt, 190, 60) + rng.normal(0, 12, shape), 0, 255).astype(np.uint8)
    if rgb:
        img = np.stack([img, img, img // 2], axis=-1)
    return img, gt


@pytest.fixture
def disc():
    return disc_image()


def stack_folder(root: Path, n: int) -> Path:
    """``n`` small (Z, Y, X) stacks of one bright object each, as evaluate-stack reads them."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    rng = np.random.default_rng(n)
    yy, xx = np.mgrid[:40, :40]
    for k in range(n):
        img = (20 + 10 * rng.random((6, 40, 40))).astype(np.uint8)
        lab = np.zeros(img.shape, np.uint16)
        lab[1:5][:, (yy - 18 - k) ** 2 + (xx - 20) ** 2 <= 49] = 1
        img[lab > 0] = 200
        tifffile.imwrite(root / "images" / f"v{k}.tif", img)
        tifffile.imwrite(root / "labels" / f"v{k}.tif", lab)
    return root


def tiny_config(**kw) -> RISNetConfig:
    base = dict(backbone="efficientnet_lite0",
                backbone_kwargs={"pretrained": False, "output_stride": 16, "out_channels": 32},
                context_channels=4, local_channels=16, roi_size=9)
    base.update(kw)
    return RISNetConfig(**base)


@pytest.fixture
def tiny_model():
    torch.manual_seed(0)
    return RISNet(tiny_config()).eval()


# -- napari widget fixtures (tests/test_widget.py) ---------------------------------------------
@pytest.fixture(autouse=True)
def _projects_in_tmp(tmp_path, monkeypatch):
    """The widget autosaves annotation projects; in tests they go to the test's tmp folder."""
    monkeypatch.setenv("NAPARI_RISNET_PROJECTS", str(tmp_path / "risnet-projects"))


@pytest.fixture
def graphcut_factory():
    """A segmenter factory for RISNetWidget: the network-free graph cut baseline."""
    from napari_risnet.evaluation.baselines import GraphCutBaseline

    def factory(**settings):
        return GraphCutBaseline()

    return factory


@pytest.fixture
def risnet_widget(make_napari_viewer, graphcut_factory):
    """``make(image, show=False, **image_layer_kwargs) -> (viewer, widget)``: a viewer with the
    image as layer "img" and a docked RISNetWidget using the graph cut baseline."""
    from napari_risnet._napari.widget import RISNetWidget

    def make(image, show=False, **layer_kwargs):
        viewer = make_napari_viewer(show=show)
        viewer.add_image(image, name="img", **layer_kwargs)
        widget = RISNetWidget(viewer, segmenter_factory=graphcut_factory)
        viewer.window.add_dock_widget(widget, name="RIS-Net")
        return viewer, widget

    return make
