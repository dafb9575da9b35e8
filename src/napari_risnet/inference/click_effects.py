"""What a click does beyond the network's input: a prior on the probabilities around it and a
hard seed in the graph cut. Both make a click change the result where it lands, which an
under-trained network's soft answer may not (the robot, or a user, would click the same spot
again and again).
"""
from __future__ import annotations

from dataclasses import replace

import torch

from napari_risnet.inference.graphcut import GraphCutParams


def click_prior(probs: torch.Tensor, dist: torch.Tensor, sigma: float) -> torch.Tensor:
    """p + (1 - p) g near positive clicks, p (1 - g) near negative ones, with
    g = exp(-d^2 / 2 sigma^2) and d the (2, H, W) distances to the nearest click of each sign."""
    g = torch.exp(-dist.float() ** 2 / (2 * sigma ** 2))
    probs = probs + (1 - probs) * g[0]
    return probs * (1 - g[1])


def seed_params(params: GraphCutParams, magnification: float) -> GraphCutParams:
    """Graph-cut parameters for a window magnified this much: the click's hard-seed disc keeps
    its size in network pixels, so that on a tiny object (seen 4x enlarged) a click near the
    boundary does not force a disc of image pixels across it."""
    if magnification <= 1:
        return params
    return replace(params, click_radius=int(params.click_radius / magnification))


__all__ = ["click_prior", "seed_params"]
