import dataclasses

import numpy as np
import pytest
import torch

from napari_risnet.clicks import Click
from napari_risnet.inference.predictor import Prediction, Predictor, resolve_device
from napari_risnet.inference.rules import Answer
from napari_risnet.inference.settings import FLIP_AVERAGE, PredictorSettings
from napari_risnet.inference.preprocess import CropTransform, ImageNormalizer

from conftest import disc_image


def make(model, **settings) -> Predictor:
    """A CPU predictor with these settings (the rest: this release's defaults)."""
    return Predictor(model, PredictorSettings(**settings), device="cpu")


def as_look(fake):
    """A stand-in network pass ``fake(t, clicks, timings, prev_crop) -> (probs, mask)`` as the
    predictor's ``_look``."""
    def look(t, clicks, timings, prev_crop=None):
        return Answer(t, *fake(t, clicks, timings, prev_crop))
    return look


@pytest.fixture
def predictor(tiny_model):
    return make(tiny_model, input_size=64)


def test_predict_returns_probabilities_and_mask_over_the_image(predictor):
    img, _ = disc_image()
    predictor.set_image(img)
    pred = predictor.predict([Click(48, 60), Click(5, 5, False)])
    assert pred.probabilities.shape == img.shape and pred.probabilities.dtype == np.float32
    assert pred.mask.shape == img.shape and pred.mask.dtype == bool
    assert 0 <= pred.probabilities.min() and pred.probabilities.max() <= 1
    assert pred.mask[48, 60]  # the positive click is a hard constraint of the graph cut
    assert not pred.mask[5, 5]
    assert {"preprocess", "backbone", "local", "fusion", "graphcut", "total"} <= set(pred.timings)


@pytest.mark.parametrize("image", [
    np.zeros((64, 64, 3), np.uint8) + 7,
    (np.random.default_rng(0).random((50, 40)) * 4000).astype(np.uint16),
    np.random.default_rng(0).random((50, 40)).astype(np.float32),
    np.random.default_rng(0).random((40, 50, 5)).astype(np.float32),
])
def test_accepts_dtypes_and_channels(predictor, image):
    if image.std() == 0:
        with pytest.raises(ValueError, match="constant"):
            predictor.set_image(image)
        return
    channels = [0, 2, 4] if image.ndim == 3 and image.shape[-1] == 5 else None
    predictor.set_image(image, channels)
    pred = predictor.predict([Click(20, 20)])
    assert pred.mask.shape == image.shape[:2]


@pytest.mark.parametrize("image, message", [
    (np.zeros((1, 1)), "too small"),
    (np.full((20, 20), np.nan, np.float32), "NaN"),
    (np.array([[np.inf, 1.0], [2.0, 3.0]] * 10, np.float32).repeat(10, 1), "NaN or infinite"),
    (np.zeros((2, 3, 20, 20)), "2D image"),
    (np.zeros((20, 20, 7)), "pick 1 or 3"),
    ("not an image", "array-like"),
])
def test_bad_images_are_refused_clearly(predictor, image, message):
    with pytest.raises((ValueError, TypeError), match=message):
        predictor.set_image(image)


def test_bad_clicks_and_order(predictor):
    with pytest.raises(RuntimeError, match="set_image"):
        predictor.predict([Click(1, 1)])
    predictor.set_image(disc_image()[0])
    with pytest.raises(ValueError, match="at least one click"):
        predictor.predict([])
    with pytest.raises(ValueError, match="outside"):
        predictor.predict([Click(500, 5)])
    with pytest.raises(ValueError, match="prev_mask"):
        predictor.predict([Click(5, 5)], prev_mask=np.zeros((3, 3), bool))


def test_zoom_in_window_follows_clicks_and_previous_mask(predictor):
    img = np.random.default_rng(0).integers(0, 255, (600, 800), dtype=np.uint8)
    predictor.set_image(img)
    prev = np.zeros(img.shape, bool)
    prev[100:140, 200:260] = True
    pred = predictor.predict([Click(120, 230), Click(150, 230, False)], prev_mask=prev)
    r0, c0, r1, c1 = pred.window
    assert r0 <= 100 and r1 >= 150 and c0 <= 200 and c1 >= 260
    assert (r1 - r0) < 300 and (c1 - c0) < 300  # cost does not grow with the image
    assert not pred.mask[:r0].any() and not pred.mask[r1:].any()


def test_crop_transform_round_trip():
    t = CropTransform.around((10, 20, 30, 60), (100, 200), input_size=64)
    assert t.out_shape[0] % 16 == 0 and max(t.out_shape) == 64
    c = t.clicks([Click(20, 40)])[0]
    back_r = (c.row + 0.5) / t.scale[0] - 0.5 + t.r0
    assert back_r == pytest.approx(20)
    probs = torch.zeros(t.out_shape)
    assert t.probabilities_back(probs).shape == t.crop_shape


def test_lazy_large_image_reads_only_windows(monkeypatch, predictor):
    import napari_risnet.inference.preprocess as pre

    monkeypatch.setattr(pre, "LAZY_PIXELS", 100 * 100)
    monkeypatch.setattr(pre, "PERCENTILE_SAMPLE", 50 * 50)
    predictor.settings = dataclasses.replace(predictor.settings, first_window=128)
    reads = []

    class Lazy:
        shape, dtype, ndim = (400, 500), np.dtype(np.uint16), 2

        def __getitem__(self, key):
            rs, cs = key
            r = range(*rs.indices(400))
            c = range(*cs.indices(500))
            reads.append(len(r) * len(c))
            return (np.add.outer(np.array(r), np.array(c)) % 997).astype(np.uint16)

    predictor.set_image(Lazy())
    pred = predictor.predict([Click(200, 250)])
    assert isinstance(pred, Prediction) and pred.window is not None
    assert pred.mask.shape == (pred.window[2] - pred.window[0], pred.window[3] - pred.window[1])
    assert max(reads) < 400 * 500  # never the whole image at once
    predictor.predict([Click(200, 250), Click(150, 250, False)], prev_mask=pred)


def test_normalizer_percentiles_for_uint16():
    img = np.linspace(0, 60000, 100 * 100).reshape(100, 100).astype(np.uint16)
    win = ImageNormalizer(img).window()
    assert win.shape == (100, 100, 3) and win.min() == 0 and win.max() == 1


def test_device_resolution():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("toaster")


def test_first_click_zooms_in_on_a_small_or_unseen_object(predictor, monkeypatch):
    predictor.set_image(np.random.default_rng(0).integers(0, 255, (400, 400), dtype=np.uint8))
    windows = []

    def fake(t, clicks, timings, prev_crop=None):
        windows.append(t)
        return np.zeros(t.crop_shape, np.float32), np.zeros(t.crop_shape, bool)

    monkeypatch.setattr(predictor, "_look", as_look(fake))
    predictor.predict([Click(200, 150)])
    assert len(windows) == 2
    first, second = windows
    assert first.crop_shape == (400, 400)
    assert max(second.crop_shape) < 200 and second.r0 <= 200 < second.r1


@pytest.mark.parametrize("wide_answer, chosen", [(26, "wide"), (40, "tight")])
def test_first_click_zoom_in_prefers_context_unless_it_finds_a_larger_object(
        tiny_model, monkeypatch, wide_answer, chosen):
    """The first click's second look uses the wider window (``refine_expand``) unless its answer
    is more than ``refine_max_growth`` times the tighter window's (a cell around the clicked
    nucleus): then the tighter one wins."""
    predictor = make(tiny_model, input_size=64, expand=1.6,
                          refine_expand=2.5, refine_max_growth=3.0)
    image = np.random.default_rng(0).integers(0, 255, (400, 400), dtype=np.uint8)
    predictor.set_image(image)
    windows = []

    def fake(t, clicks, timings, prev_crop=None):
        windows.append(t)
        mask = np.zeros(t.crop_shape, bool)
        side = 20 if len(windows) != 2 else wide_answer  # look 2 = the wide window
        r, c = 200 - t.r0, 150 - t.c0
        mask[r - side // 2:r + side // 2, c - side // 2:c + side // 2] = True
        return mask.astype(np.float32), mask

    monkeypatch.setattr(predictor, "_look", as_look(fake))
    pred = predictor.predict([Click(200, 150)])
    first, wide, tight = windows
    assert first.crop_shape == (400, 400)
    assert min(wide.crop_shape) > max(tight.crop_shape) > 20  # 2.5x and 1.6x the 20-px box
    kept = wide if chosen == "wide" else tight
    assert pred.window == (kept.r0, kept.c0, kept.r1, kept.c1)
    assert pred.mask.sum() == (wide_answer if chosen == "wide" else 20) ** 2

    same = make(tiny_model, input_size=64, expand=1.6,
                     refine_expand=1.6)  # as before the split: one look
    same.set_image(image)
    windows.clear()
    monkeypatch.setattr(same, "_look", as_look(fake))
    same.predict([Click(200, 150)])
    assert len(windows) == 2 and windows[1] == tight
    for bad in ({"refine_expand": 0.9}, {"expand": 0.5}, {"refine_max_growth": 0.5}):
        with pytest.raises(ValueError, match="refine_expand|refine_max_growth"):
            make(tiny_model, **bad)


def test_bundled_default_model_segments_a_disc():
    """The shipped weights load strictly and find an obvious object from one click."""
    for rgb in (False, True):
        img, gt = disc_image(rgb=rgb)
        predictor = Predictor(checkpoint="default", device="cpu")
        predictor.set_image(img)
        mask = predictor.predict([Click(48, 60)]).mask
        assert (mask & gt).sum() / (mask | gt).sum() > 0.9


def test_click_prior_pulls_towards_each_clicks_sign():
    from napari_risnet.clicks import distance_maps
    from napari_risnet.inference.click_effects import click_prior

    dist = torch.from_numpy(distance_maps((20, 40), [Click(5, 5, True), Click(5, 35, False)]))
    probs = click_prior(torch.full((20, 40), 0.5), dist, sigma=2.0)
    assert probs[5, 5] == pytest.approx(1.0) and probs[5, 35] == pytest.approx(0.0)
    assert probs[5, 20] == pytest.approx(0.5, abs=1e-3)  # far from both: unchanged


def test_local_threshold_flips_what_is_as_likely_as_the_clicked_point():
    """A positive click on a point the network put at logit -2 lowers the threshold around it:
    the point and its equally likely neighbours become the object, a clear background pixel
    next to it (logit -8) and everything far away stay; a click already answered rightly and
    a negative click do the same with their own sign."""
    from napari_risnet.inference.click_effects import local_threshold

    logits = torch.full((1, 1, 40, 60), -2.0)
    logits[..., 10, 12] = -8.0
    logits[..., :, 40:] = 3.0
    out = local_threshold(logits, [Click(10, 10, True)], sigma=3.0, margin=0.5)[0, 0]
    assert out[10, 10] == pytest.approx(0.5)
    assert out[10, 11] > 0 and out[11, 10] > 0  # as likely as the clicked point: flipped
    assert out[10, 12] < -5  # clearly background: stays
    assert torch.equal(out[30:, 20:], logits[0, 0, 30:, 20:])  # far away: untouched
    unchanged = local_threshold(logits, [Click(20, 50, True)], sigma=3.0)
    assert torch.equal(unchanged, logits)  # already the object there
    out = local_threshold(logits, [Click(20, 50, False)], sigma=3.0, margin=0.5)[0, 0]
    assert out[20, 50] == pytest.approx(-0.5) and out[20, 51] < 0 and out[20, 30] == -2.0


def test_local_threshold_width_depends_on_the_window(tiny_model):
    """The local threshold uses ``click_threshold`` on windows that do not show a small object
    and ``click_threshold_small`` on those that do (magnified at least ``small_object_from``)."""
    rng = np.random.default_rng(1)
    # a negative click where the tiny model answers ~0.6: answered wrongly, so it shifts
    images = {"small": (rng.integers(0, 255, (16, 16), dtype=np.uint8),  # 4x
                        [Click(8, 8), Click(3, 3, False)]),
              "large": (rng.integers(0, 255, (128, 128), dtype=np.uint8),
                        [Click(60, 60), Click(20, 20, False)])}
    answers = {}
    for widths in ((0.0, 0.0), (0.1, 0.0), (0.0, 0.1)):
        p = make(tiny_model, input_size=64, use_graphcut=False,
                      click_sigma=0, click_sigma_magnified=0, click_threshold=widths[0],
                      click_threshold_small=widths[1])
        for name, (image, clicks) in images.items():
            p.set_image(image)
            answers[name, widths] = p.predict(clicks).probabilities
    off = (0.0, 0.0)
    np.testing.assert_array_equal(answers["small", (0.1, 0.0)], answers["small", off])
    np.testing.assert_array_equal(answers["large", (0.0, 0.1)], answers["large", off])
    assert not np.array_equal(answers["large", (0.1, 0.0)], answers["large", off])
    assert not np.array_equal(answers["small", (0.0, 0.1)], answers["small", off])
    with pytest.raises(ValueError, match="click_threshold"):
        make(tiny_model, click_threshold=-1)


def test_click_seed_disc_shrinks_with_the_magnification(predictor, monkeypatch):
    """A click's hard-seed disc keeps its size in network pixels: on a tiny object seen
    magnified, a click near the boundary must not force image pixels across it."""
    import napari_risnet.inference.predictor as mod

    radii = []
    real = mod.graph_cut

    def spy(probs, image, clicks, params):
        radii.append(params.click_radius)
        return real(probs, image, clicks, params)

    monkeypatch.setattr(mod, "graph_cut", spy)
    rng = np.random.default_rng(0)
    predictor.set_image(rng.integers(0, 255, (16, 16), dtype=np.uint8))  # shown 4x enlarged
    predictor.predict([Click(8, 8)])
    predictor.set_image(rng.integers(0, 255, (128, 128), dtype=np.uint8))  # shown halved
    predictor.predict([Click(60, 60)])
    assert radii[0] == 0
    assert radii[-1] == predictor.settings.graphcut_params.click_radius == 2


def test_click_prior_is_narrower_on_a_magnified_window(predictor, monkeypatch):
    """Small objects seen enlarged get the narrower click prior (click_sigma_magnified), the
    others the usual one; both in network pixels."""
    import napari_risnet.inference.rules as mod

    sigmas = []
    real = mod.click_prior

    def spy(probs, dist, sigma):
        sigmas.append(sigma)
        return real(probs, dist, sigma)

    monkeypatch.setattr(mod, "click_prior", spy)
    rng = np.random.default_rng(0)
    predictor.set_image(rng.integers(0, 255, (16, 16), dtype=np.uint8))  # shown 4x enlarged
    predictor.predict([Click(8, 8)])
    assert sigmas[-1] == pytest.approx(predictor.settings.click_sigma_magnified * 64)
    predictor.set_image(rng.integers(0, 255, (128, 128), dtype=np.uint8))  # shown halved
    predictor.predict([Click(60, 60)])
    assert sigmas[-1] == pytest.approx(predictor.settings.click_sigma * 64)
    assert predictor.settings.click_sigma_magnified < predictor.settings.click_sigma


def _window_pass(answer):
    """A stand-in for the network pass whose answer, ``answer(clicks)``, is a
    whole-image mask (cut to the window here): the tests write it in image coordinates."""
    def fake(t, clicks, timings, prev_crop=None):
        new = answer(clicks)[t.r0:t.r1, t.c0:t.c1]
        return new.astype(np.float32), new
    return fake


def _square(shape, row, col, half):
    mask = np.zeros(shape, bool)
    mask[row - half:row + half, col - half:col + half] = True
    return mask


def test_progressive_merge_edits_only_the_clicked_region(tiny_model, monkeypatch):
    image = np.random.default_rng(0).integers(0, 255, (200, 200), dtype=np.uint8)
    prev = np.zeros((200, 200), bool)
    prev[40:160, 40:160] = True
    # forgets prev, finds a blob under the last click
    fake = _window_pass(lambda clicks: _square((200, 200), int(clicks[-1].row),
                                               int(clicks[-1].col), 5))
    results = {}
    for merge_from in (0, 2):
        p = make(tiny_model, input_size=64, merge_from=merge_from)
        p.set_image(image)
        monkeypatch.setattr(p, "_look", as_look(fake))
        results[merge_from] = p.predict([Click(100, 100), Click(20, 20)], prev_mask=prev).mask
    assert results[0].sum() == 100  # the fresh answer alone
    assert results[2][40:160, 40:160].all() and results[2][15:25, 15:25].all()
    assert results[2].sum() == 120 * 120 + 100  # prev kept + the new blob


def test_a_late_click_changes_only_its_own_edit(tiny_model, monkeypatch):
    """A click whose answer also trims the mask elsewhere, by 5 % of its area: before
    ``merge_always_from`` the guard (``merge_min_elsewhere`` 0.1) takes that for a refinement and
    keeps the fresh answer; from it on, only the click's own edit is taken."""
    image = np.random.default_rng(0).integers(0, 255, (200, 200), dtype=np.uint8)
    prev = np.zeros((200, 200), bool)
    prev[40:160, 40:160] = True

    trimmed = prev.copy()
    trimmed[40:46] = False  # 720 px, far from the click
    blob = _square((200, 200), 170, 100, 5)  # added under the click
    p = make(tiny_model, input_size=64, merge_from=2, merge_always_from=4,
             focus_from=0, spill_ratio=0)
    p.set_image(image)
    monkeypatch.setattr(p, "_look", as_look(_window_pass(lambda clicks: trimmed | blob)))
    masks = {n: p.predict([Click(100, 100)] * (n - 1) + [Click(170, 100)], prev_mask=prev).mask
             for n in (3, 4)}
    np.testing.assert_array_equal(masks[3], trimmed | blob)
    np.testing.assert_array_equal(masks[4], prev | blob)
    # the late merge alone (0.25.0's default): the guard starts where the late merge does, so it
    # has no click of its own and is no rule of the pipeline
    late = make(tiny_model, input_size=64, merge_from=4, merge_always_from=4, focus_from=0,
                spill_ratio=0)
    assert "late_merge" in late.settings.rules and "guarded_merge" not in late.settings.rules
    late.set_image(image)
    monkeypatch.setattr(late, "_look", as_look(_window_pass(lambda clicks: trimmed | blob)))
    for n, expected in ((3, trimmed | blob), (4, prev | blob)):
        mask = late.predict([Click(100, 100)] * (n - 1) + [Click(170, 100)], prev_mask=prev).mask
        np.testing.assert_array_equal(mask, expected)
    with pytest.raises(ValueError, match="merge_always_from must be >= 0"):
        make(tiny_model, merge_always_from=-1)


def test_a_click_that_floods_beyond_its_error_is_cut_back(tiny_model, monkeypatch):
    """The network's answer to a positive click 4 px right of the mask floods everything right
    of it: with the spill limit on, only a disc of 4 d around the click is added — except on a
    window that shows a small object (magnified at least ``small_object_from``)."""
    image = np.random.default_rng(0).integers(0, 255, (200, 200), dtype=np.uint8)
    prev = np.zeros((200, 200), bool)
    prev[80:120, 60:100] = True
    answer = prev.copy()
    answer[:, 100:] = True  # everything right of the mask
    flood = _window_pass(lambda clicks: answer)
    results = {}
    for spill_ratio, small_object_from in ((0.0, 4.0), (20.0, 4.0), (20.0, 2.0)):
        # the window (~70 px) is seen ~3.7x enlarged: a small object only from 2x
        p = make(tiny_model, input_size=256, spill_ratio=spill_ratio,
                      spill_radius=4.0, merge_from=0, focus_from=0,
                      small_object_from=small_object_from)
        p.set_image(image)
        monkeypatch.setattr(p, "_look", as_look(flood))
        mask = p.predict([Click(100, 80), Click(100, 103)], prev_mask=prev).mask
        results[spill_ratio, small_object_from] = mask
    flooded = results[0.0, 4.0]
    assert flooded[:, 100:].sum() > 1000  # the flood (as far as the window reaches)
    kept = results[20.0, 4.0] & ~prev
    rows, cols = np.nonzero(kept)
    assert kept[100, 103] and kept.sum() > 100  # the click is answered...
    assert np.hypot(rows - 100, cols - 103).max() <= 4 * 4  # ...within 4 d = 16 px of it
    assert results[20.0, 4.0][prev].all()
    np.testing.assert_array_equal(results[20.0, 2.0], flooded)  # a small object: left alone
    for bad in ({"spill_ratio": -1.0}, {"spill_radius": 0.0}, {"spill_ratio": float("nan")}):
        with pytest.raises(ValueError, match="spill_ratio must be >= 0"):
            make(tiny_model, **bad)


def test_focus_window_is_a_sharper_square_around_the_click():
    from napari_risnet.inference.focus import focus_window

    coarse = CropTransform.around((0, 0, 480, 640), (480, 640), 64, expand=1.0)  # shown at 1/10
    focus = focus_window(Click(470, 10), coarse, 64, ratio=0.4)
    assert focus.crop_shape == (256, 256) and focus.magnification == pytest.approx(0.25)
    assert (focus.r1, focus.c0) == (480, 0)  # shifted to stay inside the coarse window
    # capped at the image's own resolution: a small window gets a 64-pixel focus, not smaller
    small = CropTransform.around((0, 0, 120, 160), (480, 640), 64, expand=1.0)
    assert focus_window(Click(60, 80), small, 64, ratio=0.1).crop_shape == (64, 64)
    # a window already seen at full resolution (or magnified) gets no second look
    native = CropTransform.around((0, 0, 64, 64), (480, 640), 64, expand=1.0)
    assert focus_window(Click(30, 30), native, 64, ratio=0.4) is None


def test_focus_pass_moves_only_the_coarse_boundary_near_the_last_click(tiny_model,
                                                                       monkeypatch):
    image = np.random.default_rng(0).integers(0, 255, (400, 400), dtype=np.uint8)
    prev = np.zeros((400, 400), bool)
    prev[100:300, 100:300] = True
    windows = []

    def fake(t, clicks, timings, prev_crop=None):
        windows.append((t, None if prev_crop is None else prev_crop.copy()))
        # the coarse pass keeps the square, the focus pass says "no object here"
        answer = prev[t.r0:t.r1, t.c0:t.c1] if len(windows) == 1 else np.zeros(t.crop_shape, bool)
        return answer.astype(np.float32), answer

    masks = {}
    for focus_from in (0, 2):
        windows.clear()
        p = make(tiny_model, input_size=64, focus_from=focus_from)
        p.set_image(image)
        monkeypatch.setattr(p, "_look", as_look(fake))
        masks[focus_from] = p.predict([Click(200, 200), Click(290, 290, False)],
                                      prev_mask=prev).mask
    assert len(windows) == 2  # coarse + focus
    coarse, focus = windows[0][0], windows[1][0]
    assert focus.r0 <= 290 < focus.r1 and focus.magnification > coarse.magnification
    # the focus pass sees the coarse answer as its previous mask
    assert (windows[1][1] == prev[focus.r0:focus.r1, focus.c0:focus.c1]).all()
    assert (masks[0] == prev).all()
    changed = masks[0] ^ masks[2]
    rows, cols = np.nonzero(changed)
    band = p.settings.focus_band / coarse.magnification
    assert changed.any() and not masks[2][changed].any()  # only object pixels removed...
    assert rows.min() >= focus.r0 and cols.max() < focus.c1  # ...inside the focus window...
    assert ((rows >= 300 - band - 1) | (cols >= 300 - band - 1)).all()  # ...near the boundary
    assert masks[2][focus.r0 + 2, focus.c0 + 2]  # the coarse interior is kept
    for bad in ({"focus_ratio": 0}, {"focus_band": 0}, {"focus_from": -1}):
        with pytest.raises(ValueError, match="focus_ratio"):
            make(tiny_model, **bad)


def test_magnified_bias_acts_on_windows_magnified_at_least_its_floor(tiny_model):
    """The logit bias applies on windows magnified at least ``magnified_bias_from`` (default:
    every magnified window, a mid-sized object seen 1.33x enlarged included); with a floor of 2
    only on small objects seen 4x; never on a window shown at or below the image's resolution.
    ``small_object_from`` (the threshold's floor) does not move it."""
    rng = np.random.default_rng(0)
    images = {"small": (rng.integers(0, 255, (16, 16), dtype=np.uint8), Click(8, 8)),  # 4x
              "medium": (rng.integers(0, 255, (48, 48), dtype=np.uint8), Click(24, 24)),  # 1.33x
              "large": (rng.integers(0, 255, (128, 128), dtype=np.uint8), Click(60, 60))}  # 0.5x
    answers = {}
    for bias, floor in ((0.0, 1.0), (3.0, 1.0), (3.0, 2.0)):
        p = make(tiny_model, input_size=64, use_graphcut=False,
                      click_sigma=0, click_sigma_magnified=0, click_threshold=0,
                      click_threshold_small=0, magnified_bias=bias, magnified_bias_from=floor,
                      small_object_from=5.0)
        for name, (image, click) in images.items():
            p.set_image(image)
            answers[name, bias, floor] = p.predict([click]).probabilities
    logit = lambda q: np.log(q / (1 - q))  # noqa: E731
    for name, floor in (("small", 2.0), ("small", 1.0), ("medium", 1.0)):
        inside = answers[name, 0.0, 1.0] > 0  # the window: zero outside it
        np.testing.assert_allclose(logit(answers[name, 3.0, floor][inside]),
                                   logit(answers[name, 0.0, 1.0][inside]) + 3.0, atol=1e-3)
    for name, floor in (("medium", 2.0), ("large", 2.0), ("large", 1.0)):
        np.testing.assert_array_equal(answers[name, 3.0, floor], answers[name, 0.0, 1.0])
    assert make(tiny_model).settings.magnified_bias_from == 1.0
    with pytest.raises(ValueError, match="magnified_bias"):
        make(tiny_model, magnified_bias=float("nan"))
    for bad in ({"small_object_from": 0.5}, {"magnified_bias_from": 0.5}):
        with pytest.raises(ValueError, match="magnified_bias_from and small_object_from"):
            make(tiny_model, **bad)


def test_flip_average_is_mirror_symmetric(tiny_model):
    """Averaging over the window and its mirror image: the answer to a mirrored image and
    mirrored clicks is the mirrored answer (without it, an untrained network's is not)."""
    img, _ = disc_image(shape=(64, 64), centre=(30, 24), radius=12)  # the window = the image
    clicks = [Click(30, 24), Click(30, 50, False)]
    mirrored = [Click(c.row, 63 - c.col, c.positive) for c in clicks]
    results = {}
    for flip in ("none", "all"):
        p = make(tiny_model, input_size=64, use_graphcut=False,
                      refine_ratio=0, flip_average=flip)
        p.set_image(img)
        a = p.predict(clicks).probabilities
        p.set_image(img[:, ::-1].copy())
        b = p.predict(mirrored).probabilities
        results[flip] = np.abs(a - b[:, ::-1]).max()
    assert results["all"] < 1e-4 < results["none"]
    # "magnified": only windows shown enlarged (here the 16 px image) take the second pass
    rng = np.random.default_rng(0)
    small = rng.integers(0, 255, (16, 16), dtype=np.uint8)
    large = rng.integers(0, 255, (128, 128), dtype=np.uint8)
    answers = {}
    for flip in FLIP_AVERAGE:
        p = make(tiny_model, input_size=64, use_graphcut=False,
                      flip_average=flip)
        for name, image, clicks in (("small", small, [Click(8, 8)]),
                                    ("large", large, [Click(60, 30), Click(60, 100, False)])):
            p.set_image(image)
            answers[name, flip] = p.predict(clicks).probabilities
    np.testing.assert_array_equal(answers["small", "magnified"], answers["small", "all"])
    assert not np.array_equal(answers["small", "magnified"], answers["small", "none"])
    np.testing.assert_array_equal(answers["large", "magnified"], answers["large", "none"])
    assert not np.array_equal(answers["large", "magnified"], answers["large", "all"])
    with pytest.raises(ValueError, match="flip_average"):
        make(tiny_model, flip_average="yes")

