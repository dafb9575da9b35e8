"""The 3D robot-user benchmark: metric, protocol (click, propagate, correct) and the CLI."""
from __future__ import annotations

import json

import numpy as np
import tifffile

from napari_risnet.cli import main
from napari_risnet.evaluation.stacks import (StackObject, dice3d, evaluate_stack,
                                            evaluate_stack_object, slice_errors)
from test_propagation import SplitSegmenter, disc


def test_dice_and_slice_errors() -> None:
    gt = np.zeros((6, 8, 8), bool)
    gt[1:4, 2:6, 2:6] = True  # 3 slices of 16 pixels
    pred = gt.copy()
    assert dice3d(pred, gt) == 1.0 and dice3d(np.zeros_like(gt), np.zeros_like(gt)) == 1.0
    pred[3] = False       # one slice missed
    pred[5, 0, 0] = True  # one pixel on a slice beyond the object
    assert np.isclose(dice3d(pred, gt), 2 * 32 / (33 + 48))
    wrong, extra, missed, beyond = slice_errors(pred, gt)
    assert wrong.tolist() == [0, 0, 0, 16, 0, 1]
    assert (extra, missed, beyond) == (1, 1, 1)


def cone_with_a_dim_slice() -> tuple[np.ndarray, np.ndarray]:
    """A cone (radius 6 + z / 2 on slices 2..13) whose slice 8 is too dim to be found."""
    img = np.full((16, 64, 64), 0.05, np.float32)
    gt = np.zeros(img.shape, bool)
    for z in range(2, 14):
        gt[z] = disc((64, 64), (32, 32), 6 + z / 2)
        img[z][gt[z]] = 0.3 if z == 8 else 1.0
    return img, gt


def test_protocol_corrects_what_propagation_missed() -> None:
    img, gt = cone_with_a_dim_slice()
    r = evaluate_stack_object(SplitSegmenter(threshold=0.2), StackObject("cone", img, gt),
                              max_clicks=3, rounds=3)
    # round 0: one click on the largest slice (13); propagation stops at the dim slice 8
    # (the segmenter finds it, the stop rule sees it faded)
    assert r.missed_slices == 7 and r.extra_slices == 0 and r.beyond_extent == 0
    assert r.dice[0] < 0.8
    # round 1: the robot clicks on the largest missed slice (8), propagation goes on from there
    assert r.dice[1] == 1.0
    assert len(r.dice) == 4 and r.dice[-1] == 1.0 and r.clicks == 2
    assert r.gt_slices == 12 and r.seconds > 0


def test_protocol_erases_slices_added_beyond_the_object() -> None:
    img, gt = cone_with_a_dim_slice()
    img[8] = np.where(gt[8], 1.0, img[8])
    gt[11:] = False  # the reference says the object ends at 10; the image goes on
    r = evaluate_stack_object(SplitSegmenter(), StackObject("cone", img, gt), max_clicks=3,
                              rounds=3)
    assert r.extra_slices == 3 and r.beyond_extent == 3
    # the robot erases the slice with the most wrong pixels first: 13, then 12, then 11
    assert r.dice[0] < r.dice[1] < r.dice[2] < r.dice[3] == 1.0 and r.clicks == 4


def test_evaluate_stack_summary() -> None:
    img, gt = cone_with_a_dim_slice()
    objs = [StackObject("a", img, gt), StackObject("b", img, gt)]
    summary, results = evaluate_stack(SplitSegmenter(0.2), objs, max_clicks=2, rounds=1)
    assert summary.n_objects == 2 and len(summary.dice3d) == 2
    assert summary.dice3d[1] > summary.dice3d[0]
    d = summary.to_json()
    for key in ("dice3d", "clicks", "extra_slices", "missed_slices", "seconds_per_object",
                "n_objects", "no_slice_beyond_extent"):
        assert key in d


def test_evaluate_stack_cli(tmp_path) -> None:
    root = tmp_path / "stacks"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    rng = np.random.default_rng(0)
    for k in range(3):
        img = (20 + 10 * rng.random((8, 40, 40))).astype(np.uint8)
        lab = np.zeros(img.shape, np.uint16)
        for z in range(1, 7):
            lab[z][disc((40, 40), (16 + k, 18), 7 + z % 2)] = k + 1
        img[lab > 0] = 200
        tifffile.imwrite(root / "images" / f"v{k}.tif", img)
        tifffile.imwrite(root / "labels" / f"v{k}.tif", lab)
    out, plot = tmp_path / "r.json", tmp_path / "curve.png"
    assert main(["evaluate-stack", str(root), "--method", "graphcut", "--max-clicks", "2",
                 "--rounds", "1", "--limit", "2", "--out", str(out), "--plot", str(plot)]) == 0
    d = json.loads(out.read_text())
    assert d["n_objects"] == 2 and len(d["dice3d"]) == 2 and d["dice3d"][-1] > 0.8
    assert {"clicks", "extra_slices", "missed_slices", "seconds_per_object"} <= set(d)
    assert plot.stat().st_size > 0
    assert main(["evaluate-stack", str(tmp_path / "nothing")]) == 2
