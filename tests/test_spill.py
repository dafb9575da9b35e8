"""The spill limit: a click's edit reaching far beyond the error it points at is cut back."""
import numpy as np
import pytest

from napari_risnet.clicks import Click
from napari_risnet.inference.spill import limit_spill


def _boxes(*boxes, shape=(100, 100)):
    m = np.zeros(shape, bool)
    for r0, c0, r1, c1 in boxes:
        m[r0:r1, c0:c1] = True
    return m


def _disc(center, radius, shape=(100, 100)):
    rows, cols = np.ogrid[:shape[0], :shape[1]]
    return (rows - center[0]) ** 2 + (cols - center[1]) ** 2 <= radius ** 2


def test_a_flooding_positive_click_is_cut_to_a_disc_around_it():
    prev = _boxes((40, 10, 60, 30))
    # the click sits 4 px right of the mask (d = 4: a missed strip); the answer floods the
    # whole right of the image (60 x 70 = 4,200 px > 20 d^2 = 320) and trims one row elsewhere
    new = _boxes((41, 10, 60, 30), (20, 30, 80, 100))
    click = Click(50, 33, True)
    out = limit_spill(new, prev, click, max_ratio=20, radius=3)
    depth = 33 - 29  # to the nearest pixel of prev
    expected = _boxes((41, 10, 60, 30)) | (_boxes((20, 30, 80, 100)) & _disc((50, 33), 3 * depth))
    np.testing.assert_array_equal(out, expected)
    assert out[50, 33] and not out[50, 60]  # the click is answered, the far flood is not kept
    assert not out[40, 20]  # a change away from the click's edit is left as answered


def test_an_edit_in_proportion_to_the_error_is_kept_whole():
    prev = _boxes((40, 10, 60, 30))
    new = _boxes((40, 10, 60, 40))  # a 20 x 10 missed part, clicked 4 px from the mask
    out = limit_spill(new, prev, Click(50, 33, True), max_ratio=20, radius=3)
    np.testing.assert_array_equal(out, new)  # 200 px <= 20 x 16
    # the same edit under a tighter limit is cut: the setting is what decides
    cut = limit_spill(new, prev, Click(50, 33, True), max_ratio=5, radius=1)
    assert cut.sum() < new.sum() and cut[50, 33] and not cut[40, 39]


def test_a_negative_click_that_erases_far_beyond_its_error_is_cut_back():
    prev = _boxes((10, 10, 90, 90))
    new = _boxes((10, 10, 90, 20))  # a click 3 px inside the right edge erases nearly all
    out = limit_spill(new, prev, Click(50, 86, False), max_ratio=20, radius=3)
    assert not out[50, 86] and not out[50, 80]  # within 3 d = 12 px of the click: removed
    assert out[50, 50] and out[20, 60]  # far from it: the object stays
    assert out.sum() > 0.8 * prev.sum()


def test_no_edit_under_the_click_leaves_the_answer_alone():
    prev = _boxes((40, 10, 60, 30))
    new = _boxes((20, 10, 80, 100))
    np.testing.assert_array_equal(limit_spill(new, prev, Click(50, 20, True), 1, 1), new)
    np.testing.assert_array_equal(limit_spill(new, prev, Click(-5, 20, True), 1, 1), new)


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="shape"):
        limit_spill(np.zeros((4, 4), bool), np.zeros((4, 5), bool), Click(1, 1, True), 1, 1)

