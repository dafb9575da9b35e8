"""What a click does beyond the network's input: a local decision threshold on the logits
around it, a prior on the probabilities and a hard seed in the graph cut. All make a click
change the result where it lands, which an under-trained network's soft answer may not (the
robot, or a user, would click the same spot again and again).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import torch

from napari_risnet.clicks import Click
from napari_risnet.inference.graphcut import GraphCutParams


def click_prior(probs: torch.Tensor, dist: torch.Tensor, sigma: float) -> torch.Tensor:
    """p + (1 - p) g near positive clicks, p (1 - g) near negative ones, with
    g = exp(-d^2 / 2 sigma^2) and d the (2, H, W) distances to the nearest click of each sign."""
    g = torch.exp(-dist.float() ** 2 / (2 * sigma ** 2))
    probs = probs + (1 - probs) * g[0]
    return probs * (1 - g[1])


def local_threshold(logits: torch.Tensor, clicks: Sequence[Click], sigma: float,
                    margin: float = 0.5) -> torch.Tensor:
    """Shift the logits near each click the network answered wrongly, so that the clicked point
    lands ``margin`` on the click's side, fading as exp(-d^2 / 2 sigma^2) with the distance d
    from the click.

    Why: a click says "this point is (not) the object"; read as a decision threshold lowered
    (raised) around it, it also flips the neighbours the network found as likely as the clicked
    point, while clear background (foreground) stays. A Gaussian prior on the probabilities
    (:func:`click_prior`) flips every pixel within its width whatever the image says, which is
    why it has to stay narrow, and then flips only a pixel or two per click on faint objects.

    Args:
        logits: (..., H, W) network logits of the window.
        clicks: clicks in the window's network-pixel frame (row, col).
        sigma: width of the shift in network pixels.
        margin: the logit the clicked point gets on its side.
    """
    h, w = logits.shape[-2:]
    rows = torch.arange(h, dtype=torch.float32, device=logits.device)[:, None]
    cols = torch.arange(w, dtype=torch.float32, device=logits.device)[None, :]
    shift = torch.zeros((h, w), dtype=torch.float32, device=logits.device)
    for c in clicks:
        r, k = min(max(int(round(c.row)), 0), h - 1), min(max(int(round(c.col)), 0), w - 1)
        at = float(logits[..., r, k].reshape(-1)[0])
        amount = max(0.0, margin - at) if c.positive else min(0.0, -margin - at)
        if amount:
            shift += amount * torch.exp(-((rows - c.row) ** 2 + (cols - c.col) ** 2)
                                        / (2 * sigma ** 2))
    return logits + shift.to(logits.dtype)


def seed_params(params: GraphCutParams, magnification: float) -> GraphCutParams:
    """Graph-cut parameters for a window magnified this much: the click's hard-seed disc keeps
    its size in network pixels, so that on a tiny object (seen 4x enlarged) a click near the
    boundary does not force a disc of image pixels across it."""
    if magnification <= 1:
        return params
    return replace(params, click_radius=int(params.click_radius / magnification))


__all__ = ["click_prior", "local_threshold", "seed_params"]
