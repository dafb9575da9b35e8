"""Focus crops: training samples as the predictor's focus pass sees a large object."""
import numpy as np
import pytest
from scipy import ndimage

from napari_risnet.clicks import Click
from napari_risnet.training.config import TrainConfig
from napari_risnet.training.datasets import ObjectPool, Sample
from napari_risnet.training.loader import CropClickStream
from napari_risnet.training.rollouts import add_focus_clicks


def _pool() -> ObjectPool:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (400, 400), dtype=np.uint8)
    labels = np.zeros((400, 400), np.int32)
    yy, xx = np.mgrid[:400, :400]
    labels[(yy - 200) ** 2 + (xx - 200) ** 2 < 150 ** 2] = 1  # large: seen coarsely
    labels[10:30, 10:30] = 2  # small: no focus pass would look at it
    image[labels == 1] //= 3
    return ObjectPool.from_arrays([image], [labels])


def test_focus_crops_cut_a_large_objects_boundary_with_a_coarse_previous_mask():
    pool, rng = _pool(), np.random.default_rng(1)
    focus, plain = [], []
    for _ in range(40):
        s = pool.sample(rng, 64, focus_prob=1.0, augment=False)
        (plain if s.prev is None else focus).append(s)
    assert focus and plain  # the small object never gets a focus crop
    for s in plain:  # the square, not a part of the disc
        rows, cols = np.nonzero(s.gt)
        assert s.gt.sum() == (rows.max() - rows.min() + 1) * (
            cols.max() - cols.min() + 1)
    for s in focus:
        assert s.prev.shape == s.gt.shape == (64, 64)
        # at image resolution: a 64-pixel window of a 300-pixel disc shows part of it
        assert s.gt.sum() < 64 * 64
        wrong = s.prev ^ s.gt
        if wrong.any():  # nearly right: wrong only near the true boundary
            edge = s.gt ^ ndimage.binary_erosion(s.gt)
            assert ndimage.distance_transform_edt(~edge)[wrong].max() < 20
    assert np.mean([0 < s.gt.mean() < 1 for s in focus]) > 0.7  # mostly straddles the boundary
    assert all(pool.sample(rng, 64, focus_prob=0.0).prev is None for _ in range(5))


def test_focus_clicks_land_on_the_coarse_masks_error():
    gt = np.zeros((32, 32), bool)
    gt[:, :20] = True
    prev = np.zeros((32, 32), bool)
    prev[:, :12] = True  # misses columns 12..19
    ignore = np.zeros((32, 32), bool)
    focus = Sample(np.zeros((32, 32, 3), np.float32), gt, ignore, ~gt, prev)
    plain = Sample(np.zeros((32, 32, 3), np.float32), gt, ignore, ~gt)
    clicks = [[Click(5, 5)], [Click(5, 5)]]
    new_clicks, new_prev = add_focus_clicks([focus, plain], clicks, [None, None])
    assert new_prev[0] is prev and new_prev[1] is None
    assert len(new_clicks[0]) == 2 and new_clicks[1] == clicks[1]
    last = new_clicks[0][-1]
    assert last.positive and 12 <= last.col < 20
    assert len(clicks[0]) == 1  # the caller's lists are not changed


def test_loader_stream_carries_the_previous_masks():
    cfg = TrainConfig(crop_size=64, batch_size=6, focus_prob=1.0)
    batch = next(iter(CropClickStream(_pool(), cfg, seed=0)))
    has = batch["has_prev"].numpy()
    assert batch["prev"].shape == (6, 64, 64) and has.dtype == bool
    assert has.any()


@pytest.mark.parametrize("value", [-0.1, 1.5])
def test_focus_prob_is_a_probability(value):
    with pytest.raises(ValueError, match="focus_prob"):
        TrainConfig(focus_prob=value)
