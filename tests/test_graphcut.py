import numpy as np

from napari_risnet.clicks import Click
from napari_risnet.inference.graphcut import (GraphCutParams, _squared_norm, click_seeds,
                                              contrast_weights, graph_cut)

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


def _energy(labels: np.ndarray, probs: np.ndarray, image: np.ndarray, p: GraphCutParams
            ) -> float:
    """The cut's energy written out: -log p / -log(1 - p) per pixel, plus the contrast weight
    of every 4-neighbour pair with different labels."""
    pr = np.clip(probs.astype(np.float64), p.eps, 1 - p.eps)
    unary = np.where(labels, -np.log(pr), -np.log(1 - pr)).sum() * p.unary_weight
    wr, wd = contrast_weights(image)
    pair = (wr[:, :-1] * (labels[:, 1:] != labels[:, :-1])).sum() \
        + (wd[:-1] * (labels[1:] != labels[:-1])).sum()
    return float(unary + p.pairwise_weight * pair)


def test_band_graph_finds_the_lowest_energy_of_every_labelling():
    """Only the uncertain band becomes graph nodes, with its fixed neighbours folded into the
    terminal edges: the result must still be the minimum over every labelling of the band."""
    rng = np.random.default_rng(3)
    params = GraphCutParams(pairwise_weight=0.8, band=0.05, band_margin=0)
    for _ in range(5):
        probs = rng.uniform(0.2, 0.8, (4, 5)).astype(np.float32)
        fixed = rng.random((4, 5)) < 0.4  # certain pixels keep their thresholded label
        probs[fixed] = np.where(rng.random(fixed.sum()) < 0.5, 0.01, 0.99)
        image = rng.random((4, 5, 3)).astype(np.float32)
        mask = graph_cut(probs, image, (), params)
        band = ~fixed
        n = int(band.sum())
        best = np.inf
        for code in range(2 ** n):
            labels = probs >= 0.5
            labels[band] = [(code >> i) & 1 for i in range(n)]
            best = min(best, _energy(labels, probs, image, params))
        np.testing.assert_array_equal(mask[fixed], probs[fixed] >= 0.5)
        assert _energy(mask, probs, image, params) <= best + 1e-6


def test_contrast_term_sums_the_channels_as_numpy_does():
    """The per-channel sum of squares gives the same float32 numbers as ``(d ** 2).sum(-1)``,
    so the faster contrast term cannot move a boundary."""
    rng = np.random.default_rng(0)
    for channels in (1, 3, 4):
        diff = (rng.standard_normal((37, 53, channels)) * 10 ** rng.uniform(-3, 3)
                ).astype(np.float32)
        np.testing.assert_array_equal(_squared_norm(diff), (diff ** 2).sum(-1))
