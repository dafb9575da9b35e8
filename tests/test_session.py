"""AnnotationSession without napari: commit ids, no overwrite, undo / redo exactness,
propagation, replay, bad inputs."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy import ndimage

from napari_risnet.clicks import Click
from napari_risnet.inference.predictor import Prediction
from napari_risnet.annotation import AnnotationSession, derive_clicks


class ThresholdSegmenter:
    """Deterministic fake: the bright component under the positive clicks, minus the
    components under negative clicks; records the calls."""

    def __init__(self, threshold: float = 0.5) -> None:
        self.threshold = threshold
        self.image: np.ndarray | None = None
        self.set_calls = 0
        self.predict_calls = 0
        self.prev_masks: list = []

    def set_image(self, image, channels=None) -> None:
        image = np.asarray(image, dtype=float)
        if image.ndim != 2 or min(image.shape) < 8:
            raise ValueError(f"image of shape {image.shape} is too small")
        self.image = image
        self.set_calls += 1

    def predict(self, clicks, prev_mask=None) -> Prediction:
        self.predict_calls += 1
        self.prev_masks.append(prev_mask)
        comp, _ = ndimage.label(self.image > self.threshold)
        mask = np.zeros(self.image.shape, bool)
        for c in clicks:
            lab = comp[int(round(c.row)), int(round(c.col))]
            if lab:
                if c.positive:
                    mask |= comp == lab
                else:
                    mask &= comp != lab
        probs = mask.astype(np.float32)
        return Prediction(probs, mask, {"total": 0.0})


def disc(shape, center, radius) -> np.ndarray:
    rr, cc = np.mgrid[:shape[0], :shape[1]]
    return (rr - center[0]) ** 2 + (cc - center[1]) ** 2 <= radius ** 2


@pytest.fixture
def image2d() -> np.ndarray:
    img = np.zeros((64, 64), np.float32)
    img[disc(img.shape, (20, 20), 8)] = 1.0
    img[disc(img.shape, (44, 44), 8)] = 1.0
    return img


@pytest.fixture
def stack() -> np.ndarray:
    """A cylinder of discs through slices 4..11 of a 16-slice stack."""
    img = np.zeros((16, 64, 64), np.float32)
    for z in range(4, 12):
        img[z][disc((64, 64), (32, 30), 10)] = 1.0
    return img


def test_click_commit_ids_and_no_overwrite(image2d) -> None:
    s = AnnotationSession(image2d, ThresholdSegmenter())
    mask = s.add_click(Click(20, 20))
    assert mask is not None and mask.sum() == disc((64, 64), (20, 20), 8).sum()
    assert s.commit() == 1
    assert (s.labels == 1).sum() == mask.sum()
    s.add_click(Click(44, 44))
    assert s.commit() == 2
    # an object covering object 1 does not take its pixels
    s.add_click(Click(20, 20))
    with pytest.raises(ValueError, match="under other objects"):
        s.commit()
    assert s.n_current_clicks == 1
    assert set(np.unique(s.labels)) == {0, 1, 2}
    assert s.commit(overwrite=True) == 3
    assert not (s.labels == 1).any()


def test_negative_click_removes_a_region(image2d) -> None:
    img = image2d.copy()
    img[20:22, 28:40] = 1.0   # bridge the two discs
    img[20:45, 36:38] = 1.0
    s = AnnotationSession(img, ThresholdSegmenter())
    both = s.add_click(Click(20, 20))
    assert both[44, 44]
    after = s.add_click(Click(44, 44, positive=False))
    assert not after.any()  # the fake removes the whole component under the negative click
    assert s.undo() == "click"
    np.testing.assert_array_equal(s.current_mask(), both)


def test_undo_redo_restore_exactly(image2d) -> None:
    labels = np.zeros((64, 64), np.int32)
    labels[:3, :3] = 7  # a pre-existing object of the caller
    s = AnnotationSession(image2d, ThresholdSegmenter(), labels=labels)
    snapshots = [labels.copy()]
    s.add_click(Click(20, 20))
    assert s.commit() == 8  # next free id is above the existing labels
    snapshots.append(labels.copy())
    s.add_click(Click(44, 44))
    s.commit()
    snapshots.append(labels.copy())
    assert s.undo() == "commit"
    np.testing.assert_array_equal(s.labels, snapshots[1])
    assert s.n_current_clicks == 1  # the undone commit's clicks come back
    assert s.undo() == "click"
    assert s.undo() == "commit"
    np.testing.assert_array_equal(s.labels, snapshots[0])
    assert s.labels is labels  # the caller's array was used in place
    assert s.redo() == "commit"
    np.testing.assert_array_equal(s.labels, snapshots[1])
    s.redo()
    s.redo()
    np.testing.assert_array_equal(s.labels, snapshots[2])
    assert s.redo() is None
    s.add_click(Click(20, 20))
    assert s.clear()
    assert s.n_current_clicks == 0
    assert s.undo() == "clear"
    assert s.n_current_clicks == 1


def test_patches_keep_only_changed_pixels_and_restore_exactly() -> None:
    """History patches store the changed pixels only (a bit mask and their values), yet
    overlapping patches undone in reverse and redone in order give the labels back exactly."""
    from napari_risnet.annotation.history import write_patch

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, (40, 50)).astype(np.int32)
    states, patches = [labels.copy()], []
    for _ in range(6):
        r, c = rng.integers(0, 20, 2)
        index = (slice(r, r + 20), slice(c, c + 30))
        block = labels[index].copy()
        block[rng.random(block.shape) < 0.1] = rng.integers(0, 9)
        patches.append(write_patch(labels, index, block))
        states.append(labels.copy())
    assert patches[0].nbytes < 20 * 30 * 4 / 2  # vs 2 x 2400 bytes for both blocks
    for k in range(len(patches) - 1, -1, -1):
        patches[k].undo(labels)
        np.testing.assert_array_equal(labels, states[k])
    for k, p in enumerate(patches):
        p.redo(labels)
        np.testing.assert_array_equal(labels, states[k + 1])


def test_undo_and_redo_do_not_predict_again(image2d) -> None:
    seg = ThresholdSegmenter()
    s = AnnotationSession(image2d, seg)
    s.add_click(Click(20, 20))
    s.add_click(Click(44, 44))
    calls = seg.predict_calls
    s.undo()
    s.redo()
    s.predict_pending()
    assert seg.predict_calls == calls
    # sequential semantics: the second click got the first mask as prev_mask
    assert seg.prev_masks[0] is None and seg.prev_masks[1] is not None


def test_bad_inputs_keep_the_annotation(image2d) -> None:
    s = AnnotationSession(image2d, ThresholdSegmenter())
    s.add_click(Click(20, 20))
    s.commit()
    before = s.labels.copy()
    with pytest.raises(ValueError, match="outside"):
        s.add_click(Click(70, 10))
    with pytest.raises(ValueError, match="leading axes"):
        s.add_click(Click(10, 10), slice_key=(0,))
    with pytest.raises(TypeError):
        s.add_click((10, 10))
    with pytest.raises(ValueError, match="first click"):
        s.add_click(Click(10, 10, positive=False))
    with pytest.raises(ValueError, match="nothing to commit"):
        s.commit()
    with pytest.raises(ValueError, match="propagation needs a stack"):
        s.propagate(1)
    np.testing.assert_array_equal(s.labels, before)
    assert s.n_current_clicks == 0
    with pytest.raises(ValueError, match="do not match"):
        AnnotationSession(image2d, ThresholdSegmenter(), labels=np.zeros((3, 3), np.int32))
    with pytest.raises(ValueError, match="spatial"):
        AnnotationSession(np.zeros(10), ThresholdSegmenter())


def test_failed_prediction_drops_the_click(image2d) -> None:
    s = AnnotationSession(np.zeros((4, 4), np.float32), ThresholdSegmenter())
    with pytest.raises(ValueError, match="too small"):
        s.add_click(Click(1, 1))
    assert s.n_current_clicks == 0 and not s.can_undo


def test_stack_clicks_and_set_image_cache(stack) -> None:
    seg = ThresholdSegmenter()
    s = AnnotationSession(stack, seg)
    s.add_click(Click(32, 30), slice_key=(6,))
    s.add_click(Click(32, 30), slice_key=(6,))
    assert seg.set_calls == 1
    with pytest.raises(ValueError, match="outside the stack"):
        s.add_click(Click(32, 30), slice_key=(16,))
    s.add_click(Click(32, 30), slice_key=(7,))
    assert seg.set_calls == 2
    oid = s.commit()
    assert set(np.flatnonzero((s.labels == oid).any(axis=(1, 2)))) == {6, 7}


def test_propagation_stops_where_the_object_vanishes(stack) -> None:
    s = AnnotationSession(stack, ThresholdSegmenter())
    s.add_click(Click(32, 30), slice_key=(7,))
    oid = s.commit()
    before = s.labels.copy()
    calls: list[tuple[int, int, str]] = []
    result = s.propagate(oid, progress=lambda d, t, m: calls.append((d, t, m)))
    filled = set(np.flatnonzero((s.labels == oid).any(axis=(1, 2))))
    assert filled == set(range(4, 12))
    assert sorted(result.slices) == [(z,) for z in range(4, 12) if z != 7]
    assert "vanished" in result.stopped[1] and "vanished" in result.stopped[-1]
    assert calls and calls[-1][0] == calls[-1][1]
    # one undo step, exact
    assert s.undo() == "propagate"
    np.testing.assert_array_equal(s.labels, before)
    assert s.redo() == "propagate"
    assert set(np.flatnonzero((s.labels == oid).any(axis=(1, 2)))) == set(range(4, 12))


def test_propagation_can_be_stopped_and_respects_others(stack) -> None:
    s = AnnotationSession(stack, ThresholdSegmenter())
    s.add_click(Click(32, 30), slice_key=(7,))
    oid = s.commit()
    result = s.propagate(oid, should_stop=lambda: True)
    assert result.cancelled and not result.slices
    assert not s.can_redo and s.undo() == "commit"  # a no-op propagation is no undo step
    s.redo()
    s.labels[9][disc((64, 64), (32, 30), 12)] = 99  # another object covers slice 9
    result = s.propagate(oid)
    assert (s.labels[9] == 99).sum() == disc((64, 64), (32, 30), 12).sum()
    assert "cover" in result.stopped[1]


def test_propagation_is_inconsistent_when_the_area_jumps(stack) -> None:
    img = stack.copy()
    img[8] = 0.0
    img[8][disc((64, 64), (32, 30), 28)] = 1.0  # a much larger blob on slice 8
    s = AnnotationSession(img, ThresholdSegmenter())
    s.add_click(Click(32, 30), slice_key=(7,))
    oid = s.commit()
    result = s.propagate(oid, negatives=False)
    assert "area" in result.stopped[1]
    assert not (s.labels[8] == oid).any()


def test_recompute_from_records_gives_the_same_labels(stack) -> None:
    s = AnnotationSession(stack, ThresholdSegmenter())
    s.add_click(Click(32, 30), slice_key=(7,))
    oid = s.commit()
    s.propagate(oid)
    s.add_click(Click(2, 2), slice_key=(0,))  # an uncommitted click on the background
    records = s.click_records()
    expected = s.labels.copy()
    fresh = AnnotationSession(stack, ThresholdSegmenter())
    assert fresh.recompute(records) == [oid]
    np.testing.assert_array_equal(fresh.labels, expected)
    assert fresh.n_current_clicks == 1
    assert fresh.undo() == "recompute"
    assert not fresh.labels.any()


def test_rgb_and_multi_leading_axes() -> None:
    rgb = np.zeros((2, 3, 32, 32, 3), np.uint8)
    rgb[1, 2][disc((32, 32), (16, 16), 6)] = 255

    class Grey(ThresholdSegmenter):
        def set_image(self, image, channels=None):
            super().set_image(np.asarray(image)[..., 0] / 255.0)

    s = AnnotationSession(rgb, Grey())
    assert s.rgb and s.leading_shape == (2, 3) and s.labels.shape == (2, 3, 32, 32)
    s.add_click(Click(16, 16), slice_key=(1, 2))
    assert s.commit() == 1
    assert (s.labels[1, 2] == 1).sum() == disc((32, 32), (16, 16), 6).sum()


def test_derive_clicks_inside_and_around() -> None:
    mask = disc((64, 64), (30, 30), 8)
    clicks = derive_clicks(mask)
    assert clicks[0].positive and mask[int(clicks[0].row), int(clicks[0].col)]
    negs = [c for c in clicks[1:]]
    assert len(negs) == 4 and not any(c.positive for c in negs)
    assert not any(mask[int(c.row), int(c.col)] for c in negs)


def test_session_imports_neither_napari_nor_torch() -> None:
    code = ("import sys, napari_risnet.annotation; "
            "print(sorted({'napari', 'qtpy', 'magicgui', 'torch'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"
