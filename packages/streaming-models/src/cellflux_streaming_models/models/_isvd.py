"""Incremental truncated SVD: merging a partial SVD with new rows, and two partial SVDs with each other.

A partial SVD of centred rows is ``(S_q, V_qg, mean_g, n)``: the rows are approximated by
``U diag(S) V`` around ``mean``. New rows ``X`` (with mean ``m`` and ``n_x`` rows) are merged by
finding the top right singular subspace of the stacked matrix ``M = [diag(S) V; X - m; c]``, with
the mean correction row ``c = sqrt(n n_x / (n + n_x)) (mean - m)`` (Ross et al., 2008). The subspace
is found by subspace iteration warm-started at ``V`` plus a few random directions, followed by a
Rayleigh-Ritz step; two partial SVDs are merged exactly (their stack is small).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["PartialSVD", "flip_signs", "merge_partial", "update_with_rows"]


@dataclass
class PartialSVD:
    """Singular values ``S_q``, right singular vectors ``V_qg``, the mean and the row count."""

    S_q: torch.Tensor
    V_qg: torch.Tensor
    mean_g: torch.Tensor
    n: float


def flip_signs(V_qg: torch.Tensor) -> torch.Tensor:
    """Make each vector's largest-magnitude entry positive (deterministic signs, as scikit-learn)."""
    index = V_qg.abs().argmax(dim=1)
    signs = torch.sign(V_qg.gather(1, index[:, None]))
    signs[signs == 0] = 1
    return V_qg * signs


def update_with_rows(
    state: PartialSVD | None,
    x_ng: torch.Tensor,
    rank: int,
    *,
    n_oversamples: int,
    n_iter: int,
    generator: torch.Generator,
    mean_correction: bool = True,
) -> PartialSVD:
    """Merge rows ``x_ng`` into ``state`` (``None`` for the first rows), keeping ``rank`` components.

    Parameters
    ----------
    state
        The partial SVD so far.
    x_ng
        New rows (float32 or float64); products with them run in their dtype.
    rank
        Components kept.
    n_oversamples
        Random directions added to the warm start.
    n_iter
        Subspace iterations (more for a cold start).
    generator
        Random source of the extra directions.
    mean_correction
        Centre the rows (``False``: the data are taken as centred, the mean stays zero).
    """
    n_x, g = x_ng.shape
    dtype = x_ng.dtype
    m_g = x_ng.mean(dim=0, dtype=torch.float64) if mean_correction else torch.zeros(g, dtype=torch.float64)
    xc_ng = x_ng - m_g.to(dtype) if mean_correction else x_ng
    if state is None or state.n == 0:
        S_q = torch.zeros(0, dtype=torch.float64)
        V_qg = torch.zeros(0, g, dtype=torch.float64)
        mean_g, n = torch.zeros(g, dtype=torch.float64), 0.0
        n_iter = max(n_iter, 1) + 2
    else:
        S_q, V_qg, mean_g, n = state.S_q, state.V_qg, state.mean_g, float(state.n)
    total = n + n_x
    if mean_correction and n > 0:
        c_1g = (math.sqrt(n * n_x / total) * (mean_g - m_g))[None, :]
    else:
        c_1g = torch.zeros(0, g, dtype=torch.float64)
    width = min(g, rank + n_oversamples)
    n_random = max(width - V_qg.shape[0], n_oversamples if V_qg.shape[0] else width)
    n_random = min(n_random, g - V_qg.shape[0]) if V_qg.shape[0] < g else 0
    omega = torch.randn(g, n_random, generator=generator, dtype=torch.float64)
    Q_gq = torch.cat([V_qg.T, omega], dim=1)
    SV_qg = S_q[:, None] * V_qg

    def gram_times(Q: torch.Tensor) -> torch.Tensor:
        xq = (xc_ng @ Q.to(dtype)).to(torch.float64)
        out = (xc_ng.T @ xq.to(dtype)).to(torch.float64)
        out += SV_qg.T @ (SV_qg @ Q)
        if c_1g.shape[0]:
            out += c_1g.T @ (c_1g @ Q)
        return out

    for _ in range(n_iter):
        Q_gq, _ = torch.linalg.qr(gram_times(Q_gq))
    B = torch.cat([SV_qg @ Q_gq, (xc_ng @ Q_gq.to(dtype)).to(torch.float64), c_1g @ Q_gq], dim=0)
    _, S, Wt = torch.linalg.svd(B, full_matrices=False)
    keep = min(rank, S.shape[0])
    V_new = flip_signs((Q_gq @ Wt[:keep].T).T)
    new_mean = (mean_g * n + m_g * n_x) / total if mean_correction else mean_g
    return PartialSVD(S[:keep].contiguous(), V_new.contiguous(), new_mean, total)


def merge_partial(a: PartialSVD, b: PartialSVD, rank: int, *, mean_correction: bool = True) -> PartialSVD:
    """Merge two partial SVDs exactly (SVD of their small stack), keeping ``rank`` components."""
    if a.n == 0:
        return b
    if b.n == 0:
        return a
    total = a.n + b.n
    rows = [a.S_q[:, None] * a.V_qg, b.S_q[:, None] * b.V_qg]
    if mean_correction:
        rows.append((math.sqrt(a.n * b.n / total) * (a.mean_g - b.mean_g))[None, :])
    _, S, Vt = torch.linalg.svd(torch.cat(rows, dim=0), full_matrices=False)
    keep = min(rank, S.shape[0])
    mean = (a.mean_g * a.n + b.mean_g * b.n) / total if mean_correction else a.mean_g
    return PartialSVD(S[:keep].contiguous(), flip_signs(Vt[:keep]).contiguous(), mean, total)
