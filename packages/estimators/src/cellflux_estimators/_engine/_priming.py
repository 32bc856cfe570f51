"""Lineage priming: how committed each cell is, from its fate probabilities."""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy import special, stats

__all__ = ["priming_degree"]


def priming_degree(
    probs: np.ndarray, *, method: Literal["kl_divergence", "entropy"] = "kl_divergence", early: np.ndarray | None = None
) -> np.ndarray:
    """Priming degree of each cell, scaled to ``[0, 1]`` (1 = most committed).

    ``kl_divergence``: ``KL(p_i || mean of early cells)`` in bits (with ``0 log 0 = 0``); ``entropy``:
    ``max_i H(p_i) - H(p_i)``.

    Parameters
    ----------
    probs
        Fate probabilities, cells x lineages.
    method
        ``"kl_divergence"`` or ``"entropy"``.
    early
        Boolean mask of early (naive) cells, the reference of the divergence (all cells if ``None``).

    Returns
    -------
    Array of length ``n_cells``.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if method == "kl_divergence":
        mask = np.ones(len(probs), dtype=bool) if early is None else np.asarray(early, dtype=bool)
        if not mask.any():
            raise ValueError("No early cells were given for the priming degree.")
        ref = probs[mask].mean(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            values = np.sum(special.xlogy(probs, probs) - special.xlogy(probs, ref), axis=1) / np.log(2)
    elif method == "entropy":
        ent = stats.entropy(probs.T)
        values = ent.max() - ent
    else:
        raise ValueError(f"method={method!r} is not supported; use 'kl_divergence' or 'entropy'.")
    lo, hi = values.min(), values.max()
    return np.zeros_like(values) if hi == lo else (values - lo) / (hi - lo)
