import json

import numpy as np
import pytest
from scipy import ndimage

from napari_risnet.clicks import Click
from napari_risnet.evaluation.images import ObjectResult, evaluate, summarize
from napari_risnet.inference.predictor import Prediction
from napari_risnet.evaluation.robot import RobotUser, _interior_distance, iou


def test_first_click_is_most_interior_point():
    gt = np.zeros((20, 30), bool)
    gt[2:13, 5:16] = True  # 11x11 square, centre (7, 10)
    robot = RobotUser(gt)
    assert robot.first_click() == Click(7, 10, True)


def test_border_counts_as_boundary():
    gt = np.zeros((10, 40), bool)
    gt[:, :20] = True  # touches the top, bottom and left borders
    c = RobotUser(gt).first_click()
    assert 4 <= c.row <= 5 and 4 <= c.col <= 15


def test_interior_distance_on_the_box_equals_the_whole_image():
    """The distances are computed on the region's bounding box only; they must be the whole
    image's, bit for bit, or the robot would click elsewhere."""
    rng = np.random.default_rng(1)
    for _ in range(20):
        region = np.zeros((45, 60), bool)
        for _ in range(2):  # two blobs: the box holds non-region pixels between them
            r0, c0 = rng.integers(0, 40), rng.integers(0, 55)
            region[r0:r0 + rng.integers(1, 30), c0:c0 + rng.integers(1, 30)] = True
        region &= rng.random(region.shape) < 0.9  # holes: the nearest boundary is inside
        whole = ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
        np.testing.assert_array_equal(_interior_distance(region), whole)
    np.testing.assert_array_equal(_interior_distance(np.zeros((5, 6), bool)), np.zeros((5, 6)))


def test_next_click_goes_to_larger_error_with_its_sign():
    gt = np.zeros((40, 40), bool)
    gt[5:35, 5:35] = True
    robot = RobotUser(gt)
    robot.first_click()
    pred = gt.copy()
    pred[10:14, 10:14] = False  # small false negative
    pred[0:5, 0:40] = True  # bigger false positive band... 5 rows thick
    click = robot.next_click(pred)
    assert click.positive is False and click.row <= 4
    pred[0:5] = False
    click = robot.next_click(pred)
    assert click.positive is True and 10 <= click.row < 14


def test_deterministic_and_ignore_respected():
    gt = np.zeros((30, 30), bool)
    gt[10:20, 10:20] = True
    ignore = np.zeros_like(gt)
    ignore[:, :5] = True
    pred = np.zeros_like(gt)
    pred[:, :5] = True  # all false positives are ignored
    a, b = RobotUser(gt, ignore), RobotUser(gt, ignore)
    a.first_click(), b.first_click()
    ca, cb = a.next_click(pred), b.next_click(pred)
    assert ca == cb and ca.positive
    assert iou(pred | gt, gt, ignore) == 1.0


def test_empty_object_is_refused():
    with pytest.raises(ValueError, match="empty"):
        RobotUser(np.zeros((5, 5), bool))


class Oracle:
    """Fake method: each click reveals a quarter more of the object."""

    def set_image(self, image, channels=None):
        self.shape = image.shape[:2]

    def predict(self, clicks, prev_mask=None):
        gt = self.gt
        rows = np.nonzero(gt.any(1))[0]
        cut = rows[0] + int(len(rows) * min(1.0, 0.25 * len(clicks)))
        mask = gt.copy()
        mask[cut:] = False
        return Prediction(mask.astype(np.float32), mask)


def test_noc_nof_and_curves():
    from napari_risnet.data import ObjectSample

    gt = np.zeros((40, 40), bool)
    gt[0:40, 10:30] = True
    oracle = Oracle()
    oracle.gt = gt
    sample = ObjectSample("toy", np.zeros((40, 40), np.uint8) + np.arange(40, dtype=np.uint8),
                          gt, np.zeros_like(gt))
    summary, results = evaluate(oracle, [sample], max_clicks=6)
    r = results[0]
    assert r.ious[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert summary.noc85 == 4 and summary.noc90 == 4 and summary.nof90 == 0
    assert len(summary.miou) == 6 and summary.miou[-1] == 1.0
    assert json.loads(json.dumps(summary.to_json()))["n_objects"] == 1


def test_never_reached_counts_as_max_clicks():
    s = summarize([ObjectResult("a", ious=[0.5] * 20, hamming=[1] * 20, coverage=[1] * 20,
                                seconds=[0.1])])
    assert s.noc85 == 20 and s.nof85 == 1 and s.nof90 == 1
