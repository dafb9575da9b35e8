"""Progressive merge: a later click edits only the region of change under it."""
import numpy as np
import pytest

from napari_risnet.clicks import Click
from napari_risnet.inference.merge import progressive_merge


def _boxes(*boxes, shape=(40, 40)):
    m = np.zeros(shape, bool)
    for r0, c0, r1, c1 in boxes:
        m[r0:r1, c0:c1] = True
    return m


def test_positive_click_adds_only_its_region():
    prev = _boxes((5, 5, 15, 15))
    # the new answer adds a part under the click but also drops an unrelated part of prev
    new = _boxes((5, 5, 15, 10), (25, 25, 35, 35))
    out = progressive_merge(new, prev, Click(30, 30, True))
    np.testing.assert_array_equal(out, _boxes((5, 5, 15, 15), (25, 25, 35, 35)))


def test_negative_click_removes_only_its_region():
    prev = _boxes((5, 5, 15, 15), (25, 25, 35, 35))
    new = _boxes((0, 0, 20, 20))  # grows the first part, drops the second
    out = progressive_merge(new, prev, Click(30, 30, False))
    np.testing.assert_array_equal(out, _boxes((5, 5, 15, 15)))


def test_no_change_under_the_click_keeps_the_new_answer():
    prev = _boxes((5, 5, 15, 15))
    new = _boxes((5, 5, 20, 20))
    np.testing.assert_array_equal(progressive_merge(new, prev, Click(10, 10, True)), new)
    np.testing.assert_array_equal(progressive_merge(new, prev, Click(-3, 10, True)), new)


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="shape"):
        progressive_merge(np.zeros((4, 4), bool), np.zeros((4, 5), bool), Click(1, 1, True))


def test_min_elsewhere_keeps_small_refinements_and_guards_against_collapse():
    prev = _boxes((5, 5, 25, 25))  # 400 px
    # a click adds a lobe; elsewhere the answer moves one boundary row (20 px: a refinement)
    refined = _boxes((6, 5, 25, 25), (25, 10, 32, 20))
    out = progressive_merge(refined, prev, Click(30, 15, True), min_elsewhere=0.1)
    np.testing.assert_array_equal(out, refined)  # 20 px <= 10 % of 400: the whole answer
    # the same lobe, but half the object vanishes beside it: only the lobe is taken
    collapsed = _boxes((5, 5, 15, 25), (25, 10, 32, 20))
    out = progressive_merge(collapsed, prev, Click(30, 15, True), min_elsewhere=0.1)
    np.testing.assert_array_equal(out, _boxes((5, 5, 25, 25), (25, 10, 32, 20)))
