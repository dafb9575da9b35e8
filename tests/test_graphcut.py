import numpy as np

from napari_risnet.clicks import Click
from napari_risnet.inference.graphcut import GraphCutParams, click_seeds, graph_cut

from conftest import disc_image


def test_graph_cut_snaps_blurry_probabilities_to_the_image_edge():
    img, gt = disc_image()
    yy, xx = np.mgrid[: gt.shape[0], : gt.shape[1]]
    # probabilities of a disc 4 px too large with a soft edge
    r = np.hypot(yy - 48, xx - 60)
    probs = (1 / (1 + np.exp((r - 26) / 3))).astype(np.float32)
    before = np.logical_xor(probs >= 0.5, gt).sum()
    mask = graph_cut(probs, img.astype(np.float32), [Click(48, 60)],
                     GraphCutParams(pairwise_weight=3.0, band=0.001))
    after = np.logical_xor(mask, gt).sum()
    assert after < 0.7 * before  # the contrast term pulls the boundary onto the edge


def test_clicks_are_hard_constraints():
    img, _ = disc_image()
    probs = np.zeros(img.shape, np.float32)  # the network says "background" everywhere
    mask = graph_cut(probs, img, [Click(10, 10, True)], GraphCutParams(click_radius=2))
    assert mask[10, 10] and mask[8, 10]
    probs = np.ones(img.shape, np.float32)
    mask = graph_cut(probs, img, [Click(10, 10, False)])
    assert not mask[10, 10]


def test_certain_probabilities_skip_the_graph():
    img, gt = disc_image()
    mask = graph_cut(gt.astype(np.float32), img)
    np.testing.assert_array_equal(mask, gt)


def test_later_click_wins_in_seeds():
    fg, bg = click_seeds((20, 20), [Click(5, 5, True), Click(5, 6, False)], 2)
    assert bg[5, 6] and not fg[5, 6]
    assert not (fg & bg).any()
