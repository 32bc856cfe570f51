"""Both conditions' expression GPs evaluated together when they share one landmark design.

Two :class:`~cellflux_gp_differential._regression.RegressionPredictor` fitted on the same
:class:`~cellflux_gp_differential._regression.Design` share the whitened cross-kernel
``a = Lp^{-1} k(landmarks, x)``. Evaluating them together:

* means and smoothed observation variances of both conditions come from products ``a^T c_1``,
  ``a^T c_2`` (``a^T v_1``, ``a^T v_2``) of one whitened cross-kernel, written straight into the outputs
  (single precision with ``precision="mixed"``: ``|a| <= 1`` keeps it well conditioned, see
  :mod:`~cellflux_gp_differential._regression`);
* the posterior variances ``1 - |a|^2 + |L_{B,c}^{-1} a|^2`` need three triangular products, not four;
* the summed posterior covariance at a few points (the Mahalanobis step) is
  ``2 (K_xx - a^T a) + c_1^T c_1 + c_2^T c_2`` with ``c_c = L_{B,c}^{-1} a``: three ``trmm`` and three
  ``syrk`` instead of four of each, and the fold changes at those points one product with
  ``coef_2 - coef_1``, in double precision (the distance weighs directions of small posterior variance).

Same formulas as the one-condition code, so the results agree to rounding.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _blas
from ._batching import iter_batches
from ._jax import as_f64, matern52
from ._regression import (
    RegressionPredictor,
    _column_sq,
    _gram_upper,
    _lower_times,
    _symmetric_from_upper,
    posterior_variance,
    times_genes,
    whiten,
)
from ._threads import thread_map

__all__ = ["shared_design", "stacked_coefficients", "evaluate_pair", "covariance_pair", "difference_pair"]


def shared_design(p1: Any, p2: Any) -> bool:
    """Whether ``p1`` and ``p2`` are our predictors fitted on the same landmark design and precision."""
    return (
        isinstance(p1, RegressionPredictor)
        and isinstance(p2, RegressionPredictor)
        and p1.design is p2.design
        and p1.precision == p2.precision
    )


def stacked_coefficients(p1: RegressionPredictor, p2: RegressionPredictor, *, obs_variance: bool) -> list[np.ndarray]:
    """``[coef_1, coef_2]`` (and the observation-variance coefficients after them), in the precision of the products.

    Parameters
    ----------
    p1, p2
        Predictors on one design (:func:`shared_design`).
    obs_variance
        Also the smoothed observation variances' coefficients (both predictors need ``variance_coef``).

    Returns
    -------
    Two or four ``(m, n_genes)`` arrays, float32 with ``precision="mixed"``.
    """
    parts = [p1.coef, p2.coef]
    if obs_variance:
        parts += [p1.variance_coef, p2.variance_coef]
    dtype = np.float32 if p1.single else np.float64
    return [np.ascontiguousarray(part, dtype=dtype) for part in parts]


def evaluate_pair(
    p1: RegressionPredictor,
    p2: RegressionPredictor,
    C: list[np.ndarray],
    xb: np.ndarray | None,
    out: list[np.ndarray],
    a: np.ndarray | None = None,
    a_sq: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Both conditions at the points ``xb``: ``a^T C[j]`` written into ``out[j]``, and both posterior variances.

    Parameters
    ----------
    p1, p2
        Predictors on one design (:func:`shared_design`).
    C
        From :func:`stacked_coefficients`.
    xb
        ``(n, n_features)`` points, possibly padded with rows beyond ``len(out[0])`` (ignored).
    out
        One ``(k, n_genes)`` array per coefficient block, ``k <= n``, in ``C``'s precision (the means of
        condition 1 and 2 then, if stacked, their observation variances, unclipped); written in place, so
        the products go straight into the caller's outputs.
    a
        The points' whitened cross-kernel ``(m, k)``, if already known (``xb`` is then not used); float64,
        or float32 with ``C`` in single precision and ``a_sq`` given.
    a_sq
        Squared norms of the columns of ``a`` in double precision (computed from ``a`` if not given).

    Returns
    -------
    ``(var1, var2)``: posterior variances ``(k,)`` in double precision.
    """
    k = out[0].shape[0]
    a = whiten(p1.design, xb)[:, :k] if a is None else a
    if a_sq is None:
        if a.dtype != np.float64:
            raise ValueError("Single-precision whitened columns need their squared norms (a_sq).")
        a_sq = _column_sq(a)
    single = C[0].dtype == np.float32
    low = a.astype(np.float32, copy=False) if single else a
    for block, target in zip(C, out, strict=True):
        _blas.matmul(low.T, block, out=target)
    if single:
        return tuple(posterior_variance(low, p.LBinv_single, True, low, a_sq) for p in (p1, p2))
    return tuple(posterior_variance(a, p.LBinv, False, a_sq=a_sq) for p in (p1, p2))


def covariance_pair(
    p1: RegressionPredictor,
    p2: RegressionPredictor,
    x: np.ndarray,
    a: np.ndarray | None = None,
    *,
    upper: bool = False,
    n_jobs: int = 1,
) -> np.ndarray:
    """Sum of both conditions' posterior covariance matrices ``(n, n)`` at the (few) points ``x``.

    ``a``: their whitened cross-kernel ``whiten(design, x)``, if already computed. ``upper``: return
    only the upper triangle, column-major (what an upper Cholesky factorisation reads), without the
    copies of symmetrising it. ``n_jobs``: threads for the three independent terms.
    """
    d = p1.design
    x = as_f64(x)
    a = whiten(d, x) if a is None else a

    def term(i: int) -> np.ndarray:
        if i == 0:  # 2 (K - a^T a); the kernel matrix is symmetric: its transpose is a column-major copy
            out = np.array(np.asarray(matern52(x, x, d.ls)).T, order="F")
            _gram_upper(a, transpose=True, alpha=-1.0, out=out)
            out *= 2.0
            return out
        return _gram_upper(_lower_times((p1, p2)[i - 1].LBinv, a), transpose=True)  # c_c^T c_c

    out, gram1, gram2 = thread_map(term, range(3), n_jobs)
    out += gram1  # the upper triangles are what counts; the grams' strictly lower parts are zero
    out += gram2
    return out if upper else _symmetric_from_upper(out)


def difference_pair(
    p1: RegressionPredictor,
    p2: RegressionPredictor,
    x: np.ndarray,
    *,
    obs_variance: bool,
    a: np.ndarray | None = None,
    n_jobs: int = 1,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Mean difference (condition 2 - condition 1) and both observation variances at the few points ``x``.

    ``a``: their whitened cross-kernel ``whiten(design, x)``, if already computed. ``n_jobs``: threads,
    each taking a block of genes.

    Returns
    -------
    ``(diff, obs1, obs2)``, ``diff`` column-major; the variances ``None`` without ``obs_variance``
    (unclipped otherwise).
    """
    a = whiten(p1.design, as_f64(x)) if a is None else a
    g = p1.coef.shape[1]
    coef = np.asfortranarray(p2.coef - p1.coef)  # column blocks of it are contiguous
    diff = np.empty((a.shape[1], g), order="F")
    blocks = list(iter_batches(g, -(-g // max(1, n_jobs)))) if g else []
    thread_map(lambda b: _blas.matmul(a.T, coef[:, b[0] : b[1]], out=diff[:, b[0] : b[1]]), blocks, n_jobs)
    if not obs_variance:
        return diff, None, None
    obs = times_genes(a, np.hstack([p1.variance_coef, p2.variance_coef]), p1.single, transpose=True)
    return diff, obs[:, :g], obs[:, g:]
