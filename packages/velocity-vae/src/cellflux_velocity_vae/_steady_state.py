"""Steady-state velocity models: deterministic and stochastic (engine, arrays only, no scVelo).

Deterministic (used to pick genes for veloVI): per gene, ``u ≈ gamma * s`` is fit by least squares
through the origin on the extreme cells (``s / max s + u / max u`` at or above its
``percentile``-th percentile), as scVelo's deterministic model does; R² is that of this fit over
all cells. Stochastic (:func:`fit_stochastic`): scVelo's default ``mode="stochastic"`` written
out in closed form (scVelo 0.3.4's own implementation fails under numpy >= 2.3).
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from ._validate import dense

__all__ = ["fit_steady_state", "fit_stochastic"]


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
    s, u = dense(spliced, np.float64), dense(unspliced, np.float64)
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


def _extreme(x: np.ndarray, percentile: float) -> np.ndarray:
    """Cells at or above the ``percentile``-th percentile of ``x``, per gene."""
    return x >= np.percentile(x, percentile, axis=0)


def fit_stochastic(
    spliced: np.ndarray | sparse.spmatrix,
    unspliced: np.ndarray | sparse.spmatrix,
    second_spliced: np.ndarray | sparse.spmatrix,
    second_cross: np.ndarray | sparse.spmatrix,
    percentile: float = 95,
    min_r2: float = 0.01,
    min_ratio: float = 0.01,
) -> dict[str, np.ndarray]:
    """The stochastic steady-state model (Bergen et al. 2020), as scVelo's ``mode="stochastic"``.

    First the deterministic fit (:func:`fit_steady_state`) picks the velocity genes. For those,
    the ratio ``gamma`` is the generalised least-squares solution of two stacked regressions
    through the origin: ``u ≈ gamma s`` on the extreme cells (``s / max s + u / max u`` or ``s``
    at or above its ``percentile``-th percentile) and ``2 <us> + u ≈ gamma (2 <ss> - s)`` on all
    cells, each weighted by the inverse variance of its residual (of the deterministic fit, and of
    a plain fit of the second regression). Other genes keep the deterministic ratio. A regression
    that fits a gene exactly (residual variance 0, where the weights are infinite) gives its own
    solution, the limit of the weighted one (instead of ``inf / inf``).

    Parameters
    ----------
    spliced, unspliced
        First-order moments ``<s>``, ``<u>`` (cells x genes).
    second_spliced, second_cross
        Second-order moments ``<s s>`` and ``<u s>`` (see :func:`second_order_moments`).
    percentile, min_r2, min_ratio
        As in :func:`fit_steady_state`.

    Returns
    -------
    ``gamma`` (stochastic ratio, float32 as scVelo), ``gamma_deterministic``, ``r2`` and
    ``velocity_genes`` of the deterministic fit, and ``velocity`` (``u - gamma s``, cells x genes).
    """
    s, u = dense(spliced, np.float64), dense(unspliced, np.float64)
    mss, mus = dense(second_spliced, np.float64), dense(second_cross, np.float64)
    if not (s.shape == u.shape == mss.shape == mus.shape):
        raise ValueError(
            f"first- and second-order moments must have the same shape, got {s.shape}, {u.shape}, "
            f"{mss.shape} and {mus.shape}."
        )
    det = fit_steady_state(s, u, percentile=percentile, min_r2=min_r2, min_ratio=min_ratio)
    gamma_det = det["gamma"]
    genes = det["velocity_genes"] if det["velocity_genes"].any() else np.ones(s.shape[1], dtype=bool)
    s_g, u_g = s[:, genes], u[:, genes]
    var_ss = 2 * mss[:, genes] - s_g
    cov_us = 2 * mus[:, genes] + u_g
    with np.errstate(divide="ignore", invalid="ignore"):
        gamma2 = np.nan_to_num((var_ss * cov_us).sum(0) / (var_ss * var_ss).sum(0))
        res_var = (u_g - gamma_det[genes] * s_g).var(0)
        res2_var = (cov_us - gamma2 * var_ss).var(0)
        norm = s_g / np.clip(s_g.max(0), 1e-3, None) + u_g / np.clip(u_g.max(0), 1e-3, None)
        weights = _extreme(norm, percentile) | _extreme(s_g, percentile)
        sw, uw = s_g * weights, u_g * weights
        numerator = (sw * uw).sum(0) / res_var + (var_ss * cov_us).sum(0) / res2_var
        denominator = (sw * sw).sum(0) / res_var + (var_ss * var_ss).sum(0) / res2_var
        gamma_sto = numerator / denominator
        # a regression that fits exactly (residual variance 0) has infinite weight: the limit is its own
        # solution (the first one's if both do) instead of inf / inf
        first = (sw * uw).sum(0) / (sw * sw).sum(0)
        gamma_sto = np.where(res2_var == 0, gamma2, gamma_sto)
        gamma_sto = np.where(res_var == 0, first, gamma_sto)
        denominator = np.where((res_var == 0) | (res2_var == 0), 1.0, denominator)
    gamma = gamma_det.astype(np.float32)
    gamma[genes] = np.nan_to_num(np.where(denominator > 0, gamma_sto, 0.0))
    return {
        "gamma": gamma,
        "gamma_deterministic": gamma_det,
        "r2": det["r2"],
        "velocity_genes": det["velocity_genes"],
        "velocity": (u - gamma.astype(np.float64) * s).astype(np.float32),
    }
