"""GrowCut (Vezhnevets & Konouchine, GraphiCon 2005): the seed's "GrowCut" row.

A cellular automaton: every pixel holds a label and a strength in [0, 1]; the seed discs start
with strength 1. At each step a pixel is taken over by the neighbour (8-neighbourhood) whose
attack ``g(|C_p - C_q|) * strength_q`` is the strongest and beats its own strength, with
``g(x) = 1 - x / sqrt(3)`` on RGB in [0, 1]. It stops when no pixel changes.

No maintained library ships GrowCut, so the automaton is written here (vectorised numpy): one
step updates every pixel at once from the previous state, the paper's synchronous rule. A front
moves one pixel per step and strengths keep creeping up along winding paths, so on 480x640
photos of natural/coco_mval it needed 600 to more than 1,000 steps (1.7 ms each): 1-3 s a click.

The converged state has a closed form: the strength of a pixel is the largest product of ``g``
along any path from a seed (step t holds the best product over paths of t steps, strict
improvements only), and its label is that seed's. That is a shortest path with edge lengths
``-log g``, so the default solver gets the fixed point in one multi-source Dijkstra
(``scipy.sparse.csgraph.dijkstra``, ~0.2 s at 480x640) instead of iterating. ``solver=
"automaton"`` runs the automaton itself, up to ``max_iterations`` steps (after the cap, pixels
never reached are background); the tests check that both give the same labels.
"""
from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import dijkstra

from napari_risnet.evaluation.baselines._base import _ClickBaseline
from napari_risnet.clicks import Click
from napari_risnet.inference.predictor import Prediction

# half of the 8-neighbourhood; the other half reuses the same similarities from the other side
_OFFSETS = ((0, 1), (1, 0), (1, 1), (1, -1))


def _slices(dr: int, dc: int, h: int, w: int) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """Index pairs (p, p + (dr, dc)) over the pixels where both lie inside the image."""
    r_p, r_q = (slice(0, h - dr), slice(dr, h)) if dr >= 0 else (slice(-dr, h), slice(0, h + dr))
    c_p, c_q = (slice(0, w - dc), slice(dc, w)) if dc >= 0 else (slice(-dc, w), slice(0, w + dc))
    return (r_p, c_p), (r_q, c_q)


class GrowCutBaseline(_ClickBaseline):
    """GrowCut seeded by the click discs (foreground label 1, background label 2).

    Args:
        solver: "dijkstra" (the converged state directly) or "automaton" (the steps).
        max_iterations: the cap on automaton steps (2,000: about 3.4 s on 480x640; on
            natural/coco_mval photos we saw 600 to more than 1,000 steps to converge).
        seed_radius: see ``_ClickBaseline``.
    """

    def __init__(self, solver: str = "dijkstra", max_iterations: int = 2000,
                 seed_radius: int | None = None) -> None:
        super().__init__(seed_radius)
        if solver not in ("dijkstra", "automaton"):
            raise ValueError(f"solver must be 'dijkstra' or 'automaton', got {solver!r}")
        if max_iterations < 1:
            raise ValueError(f"max_iterations must be >= 1, got {max_iterations}")
        self.solver = solver
        self.max_iterations = max_iterations
        self.iterations = 0  # automaton steps of the last predict (== cap: not converged)
        self._similarity: list[np.ndarray] = []
        self._graph: sparse.csr_matrix | None = None

    def set_image(self, image: Any, channels: Sequence[int] | None = None) -> None:
        super().set_image(image, channels)
        h, w = self.rgb.shape[:2]
        self._similarity = []
        for dr, dc in _OFFSETS:  # g(|C_p - C_q|) for p and its neighbour q = p + offset
            p, q = _slices(dr, dc, h, w)
            dist = np.sqrt(((self.rgb[p] - self.rgb[q]) ** 2).sum(-1))
            self._similarity.append((1.0 - dist / np.sqrt(3.0)).astype(np.float32))
        self._graph = None  # built on the first Dijkstra solve

    def _edge_graph(self) -> sparse.csr_matrix:
        """Sparse 8-neighbour graph with edge lengths -log g (a tiny floor keeps g = 1 an edge,
        g = 0 a very long one)."""
        if self._graph is None:
            h, w = self.rgb.shape[:2]
            index = np.arange(h * w).reshape(h, w)
            rows, cols, lengths = [], [], []
            for (dr, dc), g in zip(_OFFSETS, self._similarity):
                p, q = _slices(dr, dc, h, w)
                rows.append(index[p].ravel())
                cols.append(index[q].ravel())
                lengths.append(1e-9 - np.log(np.maximum(g.ravel().astype(np.float64), 1e-30)))
            self._graph = sparse.csr_matrix(
                (np.concatenate(lengths), (np.concatenate(rows), np.concatenate(cols))),
                shape=(h * w, h * w))
        return self._graph

    def predict(self, clicks: Sequence[Click], prev_mask: np.ndarray | None = None
                ) -> Prediction:
        tic = time.perf_counter()
        clicks, fg, bg = self._seeds(clicks)
        label = np.where(fg, 1, np.where(bg, 2, 0)).astype(np.uint8)
        strength = (fg | bg).astype(np.float32)
        if self.solver == "dijkstra":
            label, strength = self._converged(label)
        else:
            label, strength, self.iterations = self._evolve(label, strength)
        mask = label == 1
        probs = np.where(mask, 0.5 + 0.5 * strength, 0.5 - 0.5 * strength).astype(np.float32)
        return Prediction(probs, mask, {"total": time.perf_counter() - tic})

    def _converged(self, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The automaton's fixed point: each pixel takes the label of its strongest seed path."""
        seeds = np.flatnonzero(label)
        length, _, source = dijkstra(self._edge_graph(), directed=False, indices=seeds,
                                     min_only=True, return_predecessors=True)
        reached = source >= 0
        out = np.zeros(label.size, np.uint8)
        out[reached] = label.ravel()[source[reached]]
        strength = np.where(reached, np.exp(-np.where(reached, length, 0.0)), 0.0)
        return out.reshape(label.shape), strength.reshape(label.shape).astype(np.float32)

    def _evolve(self, label: np.ndarray, strength: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, int]:
        h, w = label.shape
        pairs = [(_slices(dr, dc, h, w), g) for (dr, dc), g in zip(_OFFSETS, self._similarity)]
        for step in range(1, self.max_iterations + 1):
            best, best_label = strength.copy(), label.copy()
            for (p, q), g in pairs:
                # q attacks p, then p attacks q, both from the previous state
                for defender, attacker in ((p, q), (q, p)):
                    attack = g * strength[attacker]
                    wins = attack > best[defender]
                    np.copyto(best[defender], attack, where=wins)
                    np.copyto(best_label[defender], label[attacker], where=wins)
            if np.array_equal(best, strength) and np.array_equal(best_label, label):
                return best_label, best, step
            label, strength = best_label, best
        return label, strength, self.max_iterations
