"""The classic baselines (the seed's Table 1 rows) on small synthetic images."""
import json

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from napari_risnet.evaluation.baselines import (BASELINES, EuclideanStarConvexityBaseline,
                                     GeodesicMattingBaseline, GeodesicStarConvexityBaseline,
                                     GraphCutBaseline, GrowCutBaseline)
from napari_risnet.evaluation.baselines.star_convexity import geodesic_star_parents
from napari_risnet.cli import METHODS, build_method, main
from napari_risnet.clicks import Click
from napari_risnet.inference.graphcut import graph_cut

from conftest import disc_image

NEW = ("geodesic_matting", "esc", "gsc", "growcut")


def _iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


def two_discs(noise=6.0, seed=0):
    """Two discs of the same colour on a dark background; only the left one is the object."""
    shape = (80, 120)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    left = (yy - 40) ** 2 + (xx - 30) ** 2 < 15 ** 2
    right = (yy - 40) ** 2 + (xx - 92) ** 2 < 15 ** 2
    rng = np.random.default_rng(seed)
    grey = np.where(left | right, 200, 50) + rng.normal(0, noise, shape)
    img = np.clip(np.stack([grey, grey * 0.8, grey * 0.5], -1), 0, 255).astype(np.uint8)
    return img, left, right


def test_every_method_is_registered_for_the_cli():
    assert set(BASELINES) | {"risnet"} == set(METHODS)
    for name in NEW:
        assert isinstance(build_method(name), BASELINES[name])


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_obvious_object_from_one_positive_and_one_negative_click(name):
    img, gt = disc_image(rgb=True, seed=1)
    img = np.clip(np.where(gt[..., None], 190, 60) + (img.astype(float) - img.mean()) * 0.2,
                  0, 255).astype(np.uint8)  # the fixture's disc with less noise
    m = BASELINES[name]()
    m.set_image(img)
    pred = m.predict([Click(48, 60, True), Click(8, 10, False)])
    assert pred.mask.dtype == bool and pred.mask.shape == gt.shape
    assert pred.probabilities.dtype == np.float32
    assert 0 <= pred.probabilities.min() and pred.probabilities.max() <= 1
    assert _iou(pred.mask, gt) > 0.9, name


@pytest.mark.parametrize("cls", [EuclideanStarConvexityBaseline, GeodesicStarConvexityBaseline])
def test_star_convexity_keeps_only_the_star_around_the_click(cls):
    img, left, right = two_discs()
    clicks = [Click(40, 30, True), Click(10, 60, False)]
    plain = GraphCutBaseline()
    plain.set_image(img)
    assert plain.predict(clicks).mask[right].mean() > 0.9  # the colour model takes both discs
    m = cls()
    m.set_image(img)
    mask = m.predict(clicks).mask
    assert not mask[right].any()
    assert _iou(mask, left) > 0.9


@pytest.mark.parametrize("cls", [EuclideanStarConvexityBaseline, GeodesicStarConvexityBaseline])
def test_star_convexity_on_an_image_larger_than_max_side(cls):
    """Cut on a downscaled copy, answered at full size with the clicks held."""
    img, left, right = two_discs()
    big = lambda a: np.repeat(np.repeat(a, 4, 0), 4, 1)  # 320x480 > max_side=200
    img, left, right = big(img), big(left), big(right)
    m = cls(max_side=200)
    m.set_image(img)
    clicks = [Click(160, 120, True), Click(40, 240, False), Click(160, 184, False)]
    pred = m.predict(clicks)
    assert pred.mask.shape == left.shape and pred.probabilities.shape == left.shape
    assert not pred.mask[right].any() and _iou(pred.mask, left) > 0.85
    assert pred.mask[160, 120] and not pred.mask[160, 184]


def _straight_segments_inside(mask, centre):
    """Every point of the segment from each mask pixel to ``centre`` lies in the mask (up to
    the one-pixel rounding of digital rays)."""
    inside = ndimage.binary_dilation(mask, np.ones((3, 3), bool))
    rows, cols = np.nonzero(mask)
    for t in np.linspace(0, 1, 60):
        r = np.rint(rows + t * (centre[0] - rows)).astype(int)
        c = np.rint(cols + t * (centre[1] - cols)).astype(int)
        if not inside[r, c].all():
            return False
    return True


def _crescent(noise=4.0):
    """A crescent: a disc minus an offset disc; no point of it sees all of it in straight
    lines, so a star-convex mask must cut off its horns."""
    yy, xx = np.mgrid[:96, :96]
    gt = ((yy - 48) ** 2 + (xx - 48) ** 2 < 34 ** 2) & ((yy - 48) ** 2 + (xx - 70) ** 2 >= 26 ** 2)
    grey = np.where(gt, 200, 50) + np.random.default_rng(0).normal(0, noise, gt.shape)
    return np.clip(grey, 0, 255).astype(np.uint8), gt


def test_esc_mask_is_star_convex_around_its_centre_and_the_plain_cut_is_not():
    img, gt = _crescent()
    clicks = [Click(48, 20, True), Click(90, 90, False)]
    plain = GraphCutBaseline()
    plain.set_image(img)
    plain_mask = plain.predict(clicks).mask
    assert _iou(plain_mask, gt) > 0.9 and not _straight_segments_inside(plain_mask, (48, 20))
    m = EuclideanStarConvexityBaseline()
    m.set_image(img)
    mask = m.predict(clicks).mask
    assert mask[48, 20] and _straight_segments_inside(mask, (48, 20))
    assert mask.sum() < plain_mask.sum()


def test_gsc_mask_is_geodesically_star_convex():
    img, gt = _crescent()
    clicks = [Click(48, 20, True), Click(90, 90, False)]
    m = GeodesicStarConvexityBaseline()
    m.set_image(img)
    mask = m.predict(clicks).mask
    # a geodesic star may bend with the crescent: most of it survives, in one piece
    assert _iou(mask, gt) > 0.8
    assert ndimage.label(mask)[1] == 1
    # and every object pixel's geodesic parent (towards the click) is an object pixel too
    centres = np.zeros(mask.shape, bool)
    centres[48, 20] = True
    pr, pc = geodesic_star_parents(centres, m.rgb, m.gamma)
    assert mask[pr[mask], pc[mask]].all()


def test_star_convexity_without_a_positive_click_is_empty():
    img, _, _ = two_discs()
    for cls in (EuclideanStarConvexityBaseline, GeodesicStarConvexityBaseline):
        m = cls()
        m.set_image(img)
        assert not m.predict([Click(40, 30, False)]).mask.any()


def test_hard_edges_need_a_full_graph():
    img, gt = disc_image()
    with pytest.raises(ValueError, match="unary_costs"):
        graph_cut(gt.astype(np.float32), img, hard_edges=np.zeros((1, 2), np.int64))


def test_growcut_is_deterministic_and_its_solvers_agree():
    img, gt = disc_image(rgb=True, seed=3)
    clicks = [Click(48, 60, True), Click(8, 10, False), Click(90, 120, False)]
    masks, probs = [], []
    for _ in range(2):
        m = GrowCutBaseline()
        m.set_image(img)
        for _ in range(2):
            pred = m.predict(clicks)
            masks.append(pred.mask)
            probs.append(pred.probabilities)
    for mask, prob in zip(masks[1:], probs[1:]):
        np.testing.assert_array_equal(mask, masks[0])
        np.testing.assert_array_equal(prob, probs[0])
    auto = GrowCutBaseline(solver="automaton")
    auto.set_image(img)
    pred = auto.predict(clicks)
    assert 0 < auto.iterations < auto.max_iterations  # converged, not capped
    assert (pred.mask == masks[0]).mean() > 0.999
    np.testing.assert_allclose(pred.probabilities, probs[0], atol=1e-4)


def test_growcut_iteration_cap_stops_early():
    img, _ = disc_image(rgb=True)
    m = GrowCutBaseline(solver="automaton", max_iterations=3)
    m.set_image(img)
    mask = m.predict([Click(48, 60, True)]).mask
    assert m.iterations == 3
    assert mask[48, 60] and not mask[48, 60 + 10]  # the front moved 3 pixels only


def test_geodesic_matting_respects_the_click_labels():
    img, left, right = two_discs()
    # a positive click on the background and a negative one inside the object: the colour
    # model disagrees with both, the clicks still win
    clicks = [Click(40, 30, True), Click(40, 92, False), Click(70, 60, True), Click(40, 25, False)]
    m = GeodesicMattingBaseline()
    m.set_image(img)
    pred = m.predict(clicks)
    for c in clicks:
        assert pred.mask[int(c.row), int(c.col)] == c.positive
    assert not pred.mask[right].mean() > 0.1  # the unclicked disc is nearer the negative click


def test_geodesic_matting_follows_likelihood_edges_not_distance():
    img, left, right = two_discs()
    # the negative click is nearer (in pixels) to most of the left disc's rim than the positive
    # one is, but reaching it from there crosses the disc's edge
    m = GeodesicMattingBaseline()
    m.set_image(img)
    mask = m.predict([Click(40, 18, True), Click(40, 50, False)]).mask
    assert _iou(mask, left) > 0.9


BAD = [
    ("no clicks", lambda: np.zeros((20, 20), np.uint8) + np.eye(20, dtype=np.uint8), [],
     ValueError, "at least one click"),
    ("outside", lambda: np.eye(20, dtype=np.uint8), [Click(25, 3)], ValueError, "outside"),
    ("constant", lambda: np.full((20, 20), 7, np.uint8), None, ValueError, "constant"),
    ("nan", lambda: np.full((20, 20), np.nan, np.float32), None, ValueError, "NaN"),
    ("1x1", lambda: np.ones((1, 1), np.uint8), None, ValueError, "too small"),
    ("not a click", lambda: np.eye(20, dtype=np.uint8), [(3, 3)], TypeError, "Click"),
]


@pytest.mark.parametrize("name", NEW)
@pytest.mark.parametrize("case", BAD, ids=[b[0] for b in BAD])
def test_bad_input_gives_the_shared_clear_errors(name, case):
    _, make_image, clicks, error, message = case
    m = BASELINES[name]()
    with pytest.raises(error, match=message):
        m.set_image(make_image())
        m.predict(clicks)


@pytest.mark.parametrize("name", NEW)
def test_predict_before_set_image(name):
    with pytest.raises(RuntimeError, match="set_image"):
        BASELINES[name]().predict([Click(1, 1)])


@pytest.mark.parametrize("kwargs, cls", [({"gamma": 1.5}, GeodesicStarConvexityBaseline),
                                         ({"eps": 0}, GeodesicMattingBaseline),
                                         ({"solver": "magic"}, GrowCutBaseline),
                                         ({"max_iterations": 0}, GrowCutBaseline)])
def test_bad_parameters(kwargs, cls):
    with pytest.raises(ValueError):
        cls(**kwargs)


@pytest.mark.parametrize("name", NEW)
def test_evaluate_cli_writes_the_json(tmp_path, name):
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    img, gt = disc_image(shape=(64, 80), centre=(30, 40), radius=14, rgb=True)
    Image.fromarray(img).save(root / "images" / "a.png")
    Image.fromarray(np.where(gt, 255, 0).astype(np.uint8)).save(root / "masks" / "a.png")
    out = tmp_path / "r.json"
    assert main(["evaluate", str(root), "--method", name, "--max-clicks", "3",
                 "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    for key in ("noc85", "noc90", "nof85", "nof90", "miou", "spc", "n_objects"):
        assert key in data
    assert data["n_objects"] == 1 and len(data["miou"]) == 3 and data["method"] == name
