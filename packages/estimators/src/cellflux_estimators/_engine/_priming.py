"""Lineage priming: how committed each cell is, from its fate probabilities."""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy import special, stats

__all__ = ["REFERENCE_EPS", "priming_degree", "reference_distribution"]

#: Floor of the reference (mean fate of the early cells) in the KL divergence: a lineage the early cells never
#: reach would make the divergence infinite for every cell that can reach it.
REFERENCE_EPS = 1e-6


def priming_degree(
    probs: np.ndarray,
    *,
    method: Literal["kl_divergence", "entropy"] = "kl_divergence",
    early: np.ndarray | None = None,
    eps: float = REFERENCE_EPS,
) -> np.ndarray:
    """Priming degree of each cell, scaled to ``[0, 1]`` (1 = most committed).

    ``kl_divergence``: ``KL(p_i || r)`` in bits (with ``0 log 0 = 0``), ``r`` the mean fate of the early cells
    with every entry raised to at least ``eps`` and renormalised to sum to 1. Without the floor a lineage that the
    early cells have probability 0 for would give an infinite divergence (and NaN after scaling) to every cell
    that can reach it; with it such cells get a large finite divergence (about ``p log2(p / eps)``), and a
    reference without zeros is unchanged. ``entropy``: ``max_i H(p_i) - H(p_i)``.

    Parameters
    ----------
    probs
        Fate probabilities, cells x lineages.
    method
        ``"kl_divergence"`` or ``"entropy"``.
    early
        Boolean mask of early (naive) cells, the reference of the divergence (all cells if ``None``).
    eps
        Floor of the reference probabilities (``kl_divergence``), in ``(0, 1 / n_lineages)``.

    Returns
    -------
    Array of length ``n_cells``, finite, in ``[0, 1]``.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if method == "kl_divergence":
        mask = np.ones(len(probs), dtype=bool) if early is None else np.asarray(early, dtype=bool)
        if not mask.any():
            raise ValueError("No early cells were given for the priming degree.")
        if not 0 < eps < 1.0 / max(probs.shape[1], 1):
            raise ValueError(f"eps must be in (0, 1 / n_lineages), got {eps!r}.")
        ref = reference_distribution(probs[mask], eps)
        values = np.sum(special.xlogy(probs, probs) - special.xlogy(probs, ref), axis=1) / np.log(2)
    elif method == "entropy":
        ent = stats.entropy(probs.T)
        values = ent.max() - ent
    else:
        raise ValueError(f"method={method!r} is not supported; use 'kl_divergence' or 'entropy'.")
    lo, hi = values.min(), values.max()
    return np.zeros_like(values) if hi == lo else (values - lo) / (hi - lo)


def reference_distribution(early_probs: np.ndarray, eps: float = REFERENCE_EPS) -> np.ndarray:
    """Mean fate of the early cells, each entry at least ``eps`` (then renormalised); see :func:`priming_degree`."""
    ref = np.asarray(early_probs, dtype=np.float64).mean(axis=0)
    if np.all(ref >= eps):
        return ref
    ref = np.maximum(ref, eps)
    return ref / ref.sum()
