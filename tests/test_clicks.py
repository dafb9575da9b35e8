import numpy as np
import pytest

from napari_risnet.clicks import (Click, distance_maps, pad_rois, pair_rois, propose_rois,
                                  square_box, validate_clicks)


def test_distance_maps_match_euclid_and_truncate():
    d = distance_maps((20, 300), [Click(5, 10, True), Click(15, 290, False)])
    assert d.shape == (2, 20, 300) and d.dtype == np.float32
    assert d[0, 5, 10] == 0 and d[1, 15, 290] == 0
    assert d[0, 8, 14] == pytest.approx(5.0)
    assert d[0, 5, 299] == 255.0  # 289 px away, truncated
    assert d[1].max() <= 255.0


def test_distance_maps_without_negative_are_all_truncated():
    d = distance_maps((10, 10), [Click(2, 2, True)])
    assert np.all(d[1] == 255.0)


def test_square_box_grows_shorter_side_and_clips():
    b = square_box(Click(50, 50), Click(50, 90, False), (200, 200))
    r0, c0, r1, c1 = b
    assert (c1 - c0) == pytest.approx(r1 - r0)
    assert c0 <= 50 and c1 >= 90
    clipped = square_box(Click(2, 2), Click(40, 40, False), (30, 30))
    assert clipped[0] == pytest.approx(2.0) and clipped[2] == 30  # clipped at the border


def test_no_negative_click_gives_the_whole_image():
    boxes = propose_rois([Click(5, 5), Click(7, 7)], (40, 60))
    np.testing.assert_array_equal(boxes, [[0, 0, 40, 60]])


def test_one_pair_gives_one_box_and_padding_repeats_it():
    boxes = propose_rois([Click(10, 10), Click(10, 30, False)], (100, 100))
    assert len(boxes) == 1
    padded = pad_rois(boxes, 5)
    assert len(padded) == 5 and np.all(padded == boxes[0])


def test_sliding_rois_fill_up_to_n_roi_between_neighbours():
    clicks = [Click(20, 20), Click(20, 5, False), Click(80, 80), Click(95, 80, False)]
    pairs = pair_rois(clicks, (100, 100))
    boxes = propose_rois(clicks, (100, 100), n_roi=5)
    assert len(pairs) == 2 and len(boxes) == 5
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    a, b = (pairs[:, :2] + pairs[:, 2:]) / 2
    for c in centres[2:]:  # extra ROIs lie on the segment between the two pair boxes
        t = np.dot(c - a, b - a) / np.dot(b - a, b - a)
        assert 0 < t < 1
        assert np.linalg.norm(a + t * (b - a) - c) < 1.5


def test_more_pairs_than_cap_keeps_latest_deterministically():
    clicks = [Click(10 * i + 5, 10, True) for i in range(7)] + [Click(5, 90, False)]
    boxes1 = propose_rois(clicks, (100, 100), n_roi=3)
    boxes2 = propose_rois(clicks, (100, 100), n_roi=3)
    assert len(boxes1) == 3
    np.testing.assert_array_equal(boxes1, boxes2)
    np.testing.assert_array_equal(boxes1, pair_rois(clicks, (100, 100))[-3:])


@pytest.mark.parametrize("clicks, message", [
    ([], "at least one click"),
    ([Click(50, 5)], "outside"),
    ([Click(float("nan"), 5)], "non-finite"),
])
def test_bad_clicks(clicks, message):
    with pytest.raises(ValueError, match=message):
        validate_clicks(clicks, (10, 10))


def test_non_click_is_type_error():
    with pytest.raises(TypeError):
        validate_clicks([(1, 2, True)], (10, 10))
