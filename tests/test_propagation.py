"""Stack propagation on small synthetic stacks: a sphere, two touching blobs, an object that
fades out; the stop rule, corrections on any slice, erasing a slice, and replay."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from napari_risnet.annotation import AnnotationSession, StopRule
from napari_risnet.clicks import Click
from napari_risnet.inference.predictor import Prediction


class SplitSegmenter:
    """Deterministic fake: the bright component under the positive clicks, from which a
    negative click removes the pixels whose intensity is closer to the one under it than to
    the one under the positive click (a colour model, as a graph cut would), so touching blobs
    of different brightness can be told apart. ``confidence`` maps a slice to the probability
    it reports inside the mask (default 1)."""

    def __init__(self, threshold: float = 0.5, confidence=None) -> None:
        self.threshold = threshold
        self.confidence = confidence
        self.image: np.ndarray | None = None
        self.calls = 0

    def set_image(self, image, channels=None) -> None:
        self.image = np.asarray(image, dtype=float)

    def predict(self, clicks, prev_mask=None) -> Prediction:
        self.calls += 1
        img = self.image
        comp, _ = ndimage.label(img > self.threshold)
        mask = np.zeros(img.shape, bool)
        pos = [c for c in clicks if c.positive]
        for c in pos:
            lab = comp[int(round(c.row)), int(round(c.col))]
            if lab:
                mask |= comp == lab
        if pos:
            v_pos = img[int(round(pos[0].row)), int(round(pos[0].col))]
            for c in clicks:
                r, q = int(round(c.row)), int(round(c.col))
                if not c.positive and mask[r, q]:
                    mask &= np.abs(img - img[r, q]) >= np.abs(img - v_pos)
        p = 1.0 if self.confidence is None else self.confidence(img)
        return Prediction(mask.astype(np.float32) * p, mask, {"total": 0.0})


def disc(shape, center, radius) -> np.ndarray:
    rr, cc = np.mgrid[:shape[0], :shape[1]]
    return (rr - center[0]) ** 2 + (cc - center[1]) ** 2 <= radius ** 2


def filled(labels: np.ndarray, oid: int) -> set[int]:
    return set(np.flatnonzero((labels == oid).any(axis=(1, 2))).tolist())


@pytest.fixture
def sphere() -> tuple[np.ndarray, np.ndarray]:
    """A ball of radius 9 around (z, y, x) = (12, 32, 32) in a (24, 64, 64) stack."""
    zz, yy, xx = np.mgrid[:24, :64, :64]
    ball = (zz - 12) ** 2 + (yy - 32) ** 2 + (xx - 32) ** 2 <= 9 ** 2
    return 0.05 + 0.9 * ball.astype(np.float32), ball


def test_sphere_is_followed_to_both_ends(sphere) -> None:
    image, ball = sphere
    s = AnnotationSession(image, SplitSegmenter())
    s.add_click(Click(32, 32), slice_key=(12,))
    oid = s.commit()
    result = s.propagate(oid)
    # the poles hold a single pixel (< min_area): the object ends there
    expected = {z for z in range(24) if ball[z].sum() >= 4}
    assert filled(s.labels, oid) == expected
    assert "vanished" in result.stopped[1] and "vanished" in result.stopped[-1]
    np.testing.assert_array_equal(s.labels[sorted(expected)] == oid, ball[sorted(expected)])


def fading_stack() -> np.ndarray:
    """A cylinder of radius 8 at full brightness on slices 2..9 that then fades out (the dim
    end of a nucleus): 0.6, 0.4, 0.25, 0.15, 0.1 on slices 10..14, on a dark noisy background."""
    rng = np.random.default_rng(0)
    img = 0.02 + 0.01 * rng.random((18, 64, 64))
    levels = {z: 1.0 for z in range(2, 10)} | {10: 0.6, 11: 0.4, 12: 0.25, 13: 0.15, 14: 0.1}
    for z, v in levels.items():
        img[z][disc((64, 64), (32, 32), 8)] = v
    return img.astype(np.float32)


def test_a_dim_end_stops_the_propagation() -> None:
    img = fading_stack()
    # a segmenter that still finds the faint object: only the image can tell it faded
    s = AnnotationSession(img, SplitSegmenter(threshold=0.05))
    s.add_click(Click(32, 32), slice_key=(5,))
    oid = s.commit()
    result = s.propagate(oid)
    assert filled(s.labels, oid) == set(range(2, 11))  # 0.6 of the brightness is kept, 0.4 not
    assert "faded" in result.stopped[1]
    stop = [m for m in result.measures if m["reason"] and m["direction"] == 1]
    assert stop and stop[0]["slice"] == (11,) and stop[0]["brightness"] < 0.5
    # the same stack without the image test runs to the last faint slice
    s2 = AnnotationSession(img, SplitSegmenter(threshold=0.05))
    s2.stop_rule = StopRule(min_brightness=0.0)
    s2.add_click(Click(32, 32), slice_key=(5,))
    s2.propagate(s2.commit())
    assert max(filled(s2.labels, 1)) == 14


def test_hold_contrast_keeps_a_fading_end_from_spreading() -> None:
    img = fading_stack()
    for z in range(10, 15):  # the dim end sits in a faint halo the segmenter takes too
        halo = disc((64, 64), (32, 32), 11) & ~disc((64, 64), (32, 32), 8)
        img[z][halo] = 0.3 * img[z, 32, 32]
    grown = {}
    for hold in (0.0, 0.7):
        s = AnnotationSession(img, SplitSegmenter(threshold=0.05))
        s.stop_rule = StopRule(min_brightness=0.0, hold_contrast=hold)
        s.add_click(Click(32, 32), slice_key=(5,))
        oid = s.commit()
        s.propagate(oid)
        grown[hold] = int((s.labels[12] == oid).sum())
    core = int(disc((64, 64), (32, 32), 8).sum())
    assert grown[0.0] > 1.5 * core  # without the brake the halo joins the object
    assert grown[0.7] == core     # with it the outline of the bright slices is kept


def test_low_model_confidence_stops_the_propagation() -> None:
    img = fading_stack()
    # the fake is sure of bright slices only (probability = slice maximum)
    seg = SplitSegmenter(threshold=0.05, confidence=lambda im: float(min(1.0, im.max())))
    s = AnnotationSession(img, seg)
    s.stop_rule = StopRule(min_confidence=0.5, min_brightness=0.0)
    s.add_click(Click(32, 32), slice_key=(5,))
    oid = s.commit()
    result = s.propagate(oid)
    assert filled(s.labels, oid) == set(range(2, 11))
    assert "confidence" in result.stopped[1]


def touching_blobs(apart_below: int = 8) -> np.ndarray:
    """Blob A (radius 8 at column 20, brightness 1) on slices 2..13; blob B (radius 7,
    brightness 0.9) beside it, apart on slices below ``apart_below`` (column 40) and touching
    A from there on (column 34)."""
    img = np.full((16, 64, 64), 0.05, np.float32)
    for z in range(2, 14):
        img[z][disc((64, 64), (32, 20), 8)] = 1.0
        img[z][disc((64, 64), (32, 40 if z < apart_below else 34), 7)] = 0.9
    return img


def test_correction_on_a_slice_repropagates_the_neighbours_only() -> None:
    img = touching_blobs()
    s = AnnotationSession(img, SplitSegmenter())
    s.add_click(Click(32, 20), slice_key=(4,))
    oid = s.commit()
    s.propagate(oid, negatives=False)  # no negative clicks: A swallows B where they touch
    merged = {z for z in range(16) if s.labels[z, 32, 34] == oid}
    assert merged == set(range(8, 14))
    seed_before = s.labels[:8].copy()

    s.correct(oid, Click(32, 36, False), slice_key=(8,))  # cut B off on slice 8
    assert s.labels[8, 32, 34] == 0 and s.labels[8, 32, 20] == oid
    assert s.objects[oid].slices[(8,)].fixed
    result = s.propagate(oid, from_slice=(8,))
    assert all(s.labels[z, 32, 34] == 0 for z in range(8, 14))  # B is out everywhere now
    assert all(s.labels[z, 32, 20] == oid for z in range(2, 14))
    np.testing.assert_array_equal(s.labels[:8], seed_before)  # slices below did not change
    assert (7,) in result.slices and not any(k[0] < 7 for k in result.slices)
    assert "did not change" in result.stopped[-1]
    # one undo step each, exact
    assert s.undo() == "propagate" and s.undo() == "correct"
    assert {z for z in range(16) if s.labels[z, 32, 34] == oid} == merged


def test_propagation_keeps_every_clicked_slice_fixed() -> None:
    img = touching_blobs()
    s = AnnotationSession(img, SplitSegmenter())
    s.add_click(Click(32, 20), slice_key=(4,))
    oid = s.commit()
    s.propagate(oid, negatives=False)
    s.correct(oid, Click(32, 36, False), slice_key=(11,))  # fixed, on the far side
    fixed_11 = s.labels[11].copy()
    s.correct(oid, Click(32, 36, False), slice_key=(8,))
    result = s.propagate(oid, from_slice=(8,))
    np.testing.assert_array_equal(s.labels[11], fixed_11)
    # slice 9 is nearer to 8, slice 10 nearer to 11: a correction rewrites its own side only
    assert result.slices[0] == (9,) and s.labels[9, 32, 34] == 0
    assert s.labels[10, 32, 34] == oid and "another clicked slice" in result.stopped[1]
    result = s.propagate(oid, from_slice=(11,))
    assert (10,) in result.slices and s.labels[10, 32, 34] == 0
    assert (12,) in result.slices and "clicked" in result.stopped[-1]
    np.testing.assert_array_equal(s.labels[11], fixed_11)
    # a full propagation starts from every clicked slice and still keeps them
    s.propagate(oid)
    np.testing.assert_array_equal(s.labels[11], fixed_11)
    assert s.objects[oid].slices[(4,)].fixed and not s.objects[oid].slices[(5,)].fixed


def test_propagating_a_neighbour_never_takes_a_committed_object() -> None:
    img = touching_blobs(apart_below=0)  # touching on every slice
    s = AnnotationSession(img, SplitSegmenter())
    s.add_click(Click(32, 38), slice_key=(4,))
    s.add_click(Click(32, 20, False), slice_key=(4,))
    b = s.commit()
    s.propagate(b)  # its derived negative click on A keeps A out
    assert filled(s.labels, b) == set(range(2, 14)) and not (s.labels[:, 32, 20] == b).any()
    s.add_click(Click(32, 20), slice_key=(4,))
    a = s.commit()
    s.propagate(a, negatives=False)  # A's prediction swallows B: B's pixels stay B's
    assert filled(s.labels, a) == set(range(2, 14)) and filled(s.labels, b) == set(range(2, 14))
    assert all(s.labels[z, 32, 34] == b for z in range(2, 14))


def test_erasing_a_slice_ends_the_object_there(sphere) -> None:
    image, ball = sphere
    s = AnnotationSession(image, SplitSegmenter())
    s.add_click(Click(32, 32), slice_key=(12,))
    oid = s.commit()
    s.propagate(oid)
    lost = s.erase_slice(oid, (17,))
    assert lost == 4  # slices 17..20 (20 is the last with >= 4 pixels)
    assert filled(s.labels, oid) == set(range(4, 17))
    assert s.objects[oid].slices[(17,)].erased
    result = s.propagate(oid)  # from every clicked slice: the erased one is a wall
    assert filled(s.labels, oid) == set(range(4, 17)) and not result.removed
    assert s.undo() == "propagate" and s.undo() == "erase"
    assert filled(s.labels, oid) == set(range(4, 21))


def test_corrections_replay_to_the_same_labels() -> None:
    img = touching_blobs()
    s = AnnotationSession(img, SplitSegmenter())
    s.add_click(Click(32, 20), slice_key=(4,))
    oid = s.commit()
    s.propagate(oid, negatives=False)
    s.correct(oid, Click(32, 36, False), slice_key=(9,))
    s.propagate(oid, from_slice=(9,))
    s.erase_slice(oid, (13,))
    records = s.click_records()
    assert any(r.slice == (9,) and not r.is_derived for r in records)
    assert any(r.slice == (9,) and r.is_derived for r in records)
    fresh = AnnotationSession(img, SplitSegmenter())
    assert fresh.recompute(records) == [oid]
    np.testing.assert_array_equal(fresh.labels, s.labels)
    assert {k for k, r in fresh.objects[oid].slices.items() if r.fixed} == {(4,), (9,), (13,)}


def test_corrections_survive_the_points_round_trip() -> None:
    from napari_risnet._napari.layers import points_from_records, records_from_points

    img = touching_blobs()
    s = AnnotationSession(img, SplitSegmenter())
    s.add_click(Click(32, 20), slice_key=(4,))
    oid = s.commit()
    s.propagate(oid, negatives=False)
    s.correct(oid, Click(32, 36, False), slice_key=(9,))
    data, features, _ = points_from_records(s.click_records(), 1)
    # as a CSV gives them back: plain columns, slice keys mangled to numbers
    table = {k: features[k].to_numpy() for k in features}
    records = records_from_points(data, table, 1)
    assert records == s.click_records()
    fresh = AnnotationSession(img, SplitSegmenter())
    fresh.recompute(records)
    np.testing.assert_array_equal(fresh.labels, s.labels)
    assert fresh.objects[oid].slices[(9,)].fixed and not fresh.objects[oid].slices[(8,)].fixed
    # files written before the derived column: propagated rows count as derived
    del table["derived"]
    old = records_from_points(data, table, 1)
    assert all(r.is_derived == (r.source is not None) for r in old)


def test_correction_inputs_are_checked(sphere) -> None:
    image, _ = sphere
    s = AnnotationSession(image, SplitSegmenter())
    s.add_click(Click(32, 32), slice_key=(12,))
    oid = s.commit()
    with pytest.raises(ValueError, match="not committed"):
        s.correct(oid + 1, Click(32, 32), (12,))
    with pytest.raises(ValueError, match="must be positive"):
        s.correct(oid, Click(32, 32, False), (3,))
    with pytest.raises(ValueError, match="no slice"):
        s.propagate(oid, from_slice=(3,))
    with pytest.raises(ValueError, match="invalid stop rule"):
        StopRule(min_iou=2.0)
    # a positive click where the object is missing starts it there
    mask = s.correct(oid, Click(32, 32), (13,))
    assert mask.any() and s.objects[oid].slices[(13,)].fixed
    assert s.object_at((13,), 32, 32) == oid and s.object_at((13,), 0, 0) == 0
