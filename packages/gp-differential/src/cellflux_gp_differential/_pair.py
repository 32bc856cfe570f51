"""Both conditions' expression GPs evaluated together when they share one landmark design.

Two :class:`~cellflux_gp_differential._regression.RegressionPredictor` fitted on the same
:class:`~cellflux_gp_differential._regression.Design` share the cross-kernel ``K = k(landmarks, x)`` and
its whitening ``a = Lp^{-1} K``. Evaluating them together:

* means and smoothed observation variances of both conditions come from ONE matrix product
  ``K^T [w_1, w_2, v_1, v_2]`` (double precision: single precision would be twice as fast but moves
  fold changes by ~1e-5, and parity with kompot is kept at 1e-8);
* the posterior variances ``1 - |a|^2 + |L_{B,c}^{-1} a|^2`` need three triangular products, not four;
* the summed posterior covariance at a few points (the Mahalanobis step) is
  ``2 (K_xx - a^T a) + c_1^T c_1 + c_2^T c_2`` with ``c_c = L_{B,c}^{-1} a``: three ``trmm`` and three
  ``syrk`` instead of four of each, and the fold changes at those points one product with ``w_2 - w_1``.

Same formulas as the one-condition code, so the results agree to rounding.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._batching import map_batches
from ._jax import as_f64, matern52
from ._regression import RegressionPredictor, _gram_upper, _lower_times, _symmetric_from_upper

__all__ = ["shared_design", "predict_pair", "covariance_pair", "difference_pair"]


def shared_design(p1: Any, p2: Any) -> bool:
    """Whether ``p1`` and ``p2`` are our predictors fitted on the same landmark design."""
    return (
        isinstance(p1, RegressionPredictor)
        and isinstance(p2, RegressionPredictor)
        and p1.design is p2.design
        and p1._LBinv is not None
        and p2._LBinv is not None
    )


def predict_pair(
    p1: RegressionPredictor,
    p2: RegressionPredictor,
    x: np.ndarray,
    *,
    obs_variance: bool,
    batch_size: int | None = None,
    progress: bool = False,
) -> tuple[np.ndarray, ...]:
    """Means, posterior variances and (optionally) observation variances of both conditions at ``x``.

    Parameters
    ----------
    p1, p2
        Predictors on one design (:func:`shared_design`).
    x
        ``(n, n_features)`` points.
    obs_variance
        Also return the smoothed observation variances (both predictors need ``variance_weights``).
    batch_size
        Points per batch.
    progress
        Progress bar over batches.

    Returns
    -------
    ``(mean1, mean2, var1, var2)`` and, with ``obs_variance``, ``(obs1, obs2)`` after them: means and
    observation variances ``(n, n_genes)`` (observation variances unclipped), posterior variances ``(n,)``.
    """
    d = p1.design
    u, ls, Linv = d.landmarks, d.ls, d.Linv
    parts = [p1.weights, p2.weights]
    if obs_variance:
        parts += [p1.variance_weights, p2.variance_weights]
    W = np.hstack(parts)
    LB1, LB2 = p1._LBinv, p2._LBinv

    def batch(xb: np.ndarray) -> tuple[np.ndarray, ...]:
        K = np.asarray(matern52(u, xb, ls))
        a = _lower_times(Linv, K)
        prior = 1.0 - np.einsum("ij,ij->j", a, a)
        c1, c2 = _lower_times(LB1, a), _lower_times(LB2, a)
        return K.T @ W, prior + np.einsum("ij,ij->j", c1, c1), prior + np.einsum("ij,ij->j", c2, c2)

    values, var1, var2 = map_batches(
        batch, p1._check(x), batch_size=batch_size or p1.batch_size, progress=progress, desc="expression"
    )
    g = p1.weights.shape[1]
    out = (values[:, :g], values[:, g : 2 * g], var1, var2)
    if obs_variance:
        out += (values[:, 2 * g : 3 * g], values[:, 3 * g :])
    return out


def covariance_pair(p1: RegressionPredictor, p2: RegressionPredictor, x: np.ndarray) -> np.ndarray:
    """Sum of both conditions' posterior covariance matrices ``(n, n)`` at the (few) points ``x``."""
    d = p1.design
    x = as_f64(x)
    K = np.asarray(matern52(d.landmarks, x, d.ls))
    a = _lower_times(d.Linv, K)
    c = np.vstack([_lower_times(p1._LBinv, a), _lower_times(p2._LBinv, a)])
    upper = 2.0 * np.asarray(matern52(x, x, d.ls)) - _gram_upper(a, transpose=True, alpha=2.0)
    upper += _gram_upper(c, transpose=True)
    return _symmetric_from_upper(upper)


def difference_pair(
    p1: RegressionPredictor, p2: RegressionPredictor, x: np.ndarray, *, obs_variance: bool
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Mean difference (condition 2 - condition 1) and both observation variances at the few points ``x``.

    Returns
    -------
    ``(diff, obs1, obs2)``, the variances ``None`` without ``obs_variance`` (unclipped otherwise).
    """
    d = p1.design
    K = np.asarray(matern52(as_f64(x), d.landmarks, d.ls))
    g = p1.weights.shape[1]
    parts = [p2.weights - p1.weights]
    if obs_variance:
        parts += [p1.variance_weights, p2.variance_weights]
    values = K @ np.hstack(parts)
    if not obs_variance:
        return values, None, None
    return values[:, :g], values[:, g : 2 * g], values[:, 2 * g :]
