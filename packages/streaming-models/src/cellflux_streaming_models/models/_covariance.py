"""Exact streamed covariance: shifted sums and Gram matrices in float64, merged exactly, top eigenpairs.

Rows are accumulated around a per-stream shift ``c`` (the first rows' mean): ``s = sum(x - c)`` and
``G = sum((x - c)^T (x - c))``. The centred second moment is ``M2 = G - s s^T / n`` and the mean is
``c + s / n``; two streams merge exactly as ``M2 = M2_a + M2_b + n_a n_b / n (m_a - m_b)(m_a - m_b)^T``
(Chan et al.). The Gram matrix of a batch is a symmetric rank-k update (BLAS ``syrk``, which NumPy
uses for ``a.T @ a``) in the batch's dtype, accumulated in float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ._isvd import flip_signs

__all__ = ["CovarianceState", "add_rows", "merge_covariance", "top_eigenpairs"]


@dataclass
class CovarianceState:
    """Row count ``n``, mean ``mean_g`` and centred second moment ``m2_gg`` (float64)."""

    n: float
    mean_g: torch.Tensor
    m2_gg: torch.Tensor


def gram(x_ng: torch.Tensor) -> torch.Tensor:
    """``x^T x`` in float64 (a symmetric BLAS product on the CPU)."""
    if x_ng.device.type == "cpu":
        x = x_ng.detach().numpy()
        return torch.from_numpy(np.asarray(x.T @ x, dtype=np.float64))
    return (x_ng.T @ x_ng).to(torch.float64)


def add_rows(
    shift_g: torch.Tensor, sums_g: torch.Tensor, gram_gg: torch.Tensor, x_ng: torch.Tensor, *, set_shift: bool
) -> None:
    """Add rows to the shifted sums in place (``set_shift``: first rows, set the shift to their mean)."""
    if set_shift:
        shift_g.copy_(x_ng.mean(dim=0, dtype=torch.float64))
    xs_ng = x_ng - shift_g.to(x_ng.dtype)
    sums_g += x_ng.sum(dim=0, dtype=torch.float64) - x_ng.shape[0] * shift_g  # exact, unlike xs_ng's sum
    gram_gg += gram(xs_ng).to(gram_gg.device)


def state_from_sums(n: float, shift_g: torch.Tensor, sums_g: torch.Tensor, gram_gg: torch.Tensor) -> CovarianceState:
    """The mean and centred second moment of shifted sums."""
    if n == 0:
        return CovarianceState(0.0, torch.zeros_like(shift_g), torch.zeros_like(gram_gg))
    delta_g = sums_g / n
    m2 = gram_gg - n * torch.outer(delta_g, delta_g)
    return CovarianceState(float(n), shift_g + delta_g, (m2 + m2.T) / 2)


def merge_covariance(a: CovarianceState, b: CovarianceState) -> CovarianceState:
    """Merge two streams' states exactly."""
    if a.n == 0:
        return b
    if b.n == 0:
        return a
    n = a.n + b.n
    d_g = b.mean_g - a.mean_g
    mean = a.mean_g + d_g * (b.n / n)
    return CovarianceState(n, mean, a.m2_gg + b.m2_gg + (a.n * b.n / n) * torch.outer(d_g, d_g))


def top_eigenpairs(cov_gg: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` largest eigenvalues (decreasing) and eigenvectors (rows, deterministic signs) of ``cov_gg``."""
    from scipy.linalg import eigh

    g = cov_gg.shape[0]
    values, vectors = eigh(cov_gg.cpu().numpy(), subset_by_index=[g - k, g - 1], driver="evr")
    values = torch.from_numpy(values[::-1].copy()).clamp(min=0)
    V_kg = flip_signs(torch.from_numpy(vectors[:, ::-1].T.copy()))
    return values, V_kg
