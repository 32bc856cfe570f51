"""The steady-state (deterministic) velocity fit used to pick genes for veloVI (engine, arrays only).

Per gene, ``u ≈ gamma * s`` is fit by least squares through the origin on the extreme cells
(``s / max s + u / max u`` at or above its ``percentile``-th percentile), as scVelo's deterministic
model does; R² is that of this fit over all cells.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

__all__ = ["fit_steady_state"]


def _dense(x: np.ndarray | sparse.spmatrix) -> np.ndarray:
    return np.asarray(x.toarray() if sparse.issparse(x) else x, dtype=np.float64)


def fit_steady_state(
    spliced: np.ndarray | sparse.spmatrix,
    unspliced: np.ndarray | sparse.spmatrix,
    percentile: float = 95,
    min_r2: float = 0.01,
    min_ratio: float = 0.01,
    r2_adjusted: bool = False,
) -> dict[str, np.ndarray]:
    """Fit the steady-state ratio per gene.

    Parameters
    ----------
    spliced, unspliced
        Cells x genes abundances (usually moments).
    percentile
        Cells whose normalised ``s + u`` is at or above this percentile enter the fit.
    min_r2, min_ratio
        Thresholds on R² and on ``gamma`` for ``velocity_genes``.
    r2_adjusted
        Compute R² from a fit on all cells instead of the extreme-cell fit (``scvelo.tl.velocity``
        passes ``r2_adjusted=None``, i.e. the extreme-cell fit, which is the default here).

    Returns
    -------
    ``gamma`` (the steady-state ratio), ``r2`` and ``velocity_genes`` (bool) per gene.
    """
    s, u = _dense(spliced), _dense(unspliced)
    norm = s / np.clip(s.max(axis=0), 1e-3, None) + u / np.clip(u.max(axis=0), 1e-3, None)
    extreme = norm >= np.percentile(norm, percentile, axis=0)
    se, ue = s * extreme, u * extreme
    with np.errstate(divide="ignore", invalid="ignore"):
        gamma = (se * ue).sum(axis=0) / (se * se).sum(axis=0)
        gamma_fit = (s * u).sum(axis=0) / (s * s).sum(axis=0) if r2_adjusted else np.nan_to_num(gamma)
        residual = u - gamma_fit * s
        total = u - u.mean(axis=0)
        r2 = 1 - (residual * residual).sum(axis=0) / (total * total).sum(axis=0)
    gamma = np.nan_to_num(gamma)
    r2 = np.where(np.isnan(r2), 0.0, r2)
    genes = (r2 > min_r2) & (gamma > min_ratio) & (s.max(axis=0) > 0) & (u.max(axis=0) > 0)
    if genes.sum() < 2:
        genes = r2 > np.percentile(r2, 80)
    return {"gamma": gamma, "r2": r2, "velocity_genes": genes}
