"""Length scale (and prior scale) of the log density ratio by type-II maximum likelihood.

The log ratio of :mod:`._ratio` is a logistic Gaussian-process classifier of the condition labels; its
length scale sets which density differences it resolves. A fixed multiple of a data-driven density
length scale is too rough where sampling noise alone makes the realised ratio dip (e.g. on a progenitor
trunk) and too smooth where the planted change is sharp, and no single multiple suits every data set.
Here the length scale is chosen per data set by the Laplace approximation of the log marginal
likelihood of the labels,

    ``log Z ~= log p(y | g_hat) - |z_hat|^2 / 2 - log det(A) / 2``,  ``A = I + s^2 L^T W L``,

which :func:`~._ratio.fit_log_ratio` returns with every fit. The grid is searched in increasing length
scale, each fit warm-started at the previous one's mode, and the predictor with the largest evidence is
returned as fitted (no refit).

Measured on the simulator (``benchmarks/da_accuracy.py --evidence``): the evidence chooses 2-4 times the
density length scale and ranks the planted depletion slightly worse than the fixed factor 4 on average
(the smoother fits that rank it best explain almost nothing of the labels: their evidence is within a
few nats of the model without any ratio), so it is an option (``ratio_ls="evidence"``), not the default.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ._jax import DEFAULT_JITTER
from ._ratio import RatioPredictor, fit_log_ratio

__all__ = ["DEFAULT_EVIDENCE_LS_FACTORS", "EvidenceSelection", "check_grid", "select_ratio_length_scale"]

logger = logging.getLogger(__name__)

#: Length-scale grid of the evidence search, in multiples of the density length scale.
DEFAULT_EVIDENCE_LS_FACTORS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0)


@dataclass
class EvidenceSelection:
    """The evidence search over length scales (and prior scales) of the log ratio.

    Attributes
    ----------
    predictor
        The fit with the largest log evidence.
    ls
        ``(n_ls,)`` length scales searched (increasing).
    scales
        ``(n_scales,)`` prior standard deviations searched.
    log_evidence
        ``(n_ls, n_scales)`` Laplace log evidence of every fit.
    """

    predictor: RatioPredictor
    ls: np.ndarray
    scales: np.ndarray
    log_evidence: np.ndarray

    @property
    def best_ls(self) -> float:
        """The chosen length scale."""
        return self.predictor.ls

    @property
    def best_scale(self) -> float:
        """The chosen prior standard deviation."""
        return self.predictor.scale


def check_grid(values: Sequence[float], name: str) -> np.ndarray:
    """``values`` as a sorted, duplicate-free float array; a clear ``ValueError`` unless finite and positive.

    Parameters
    ----------
    values
        Grid values (e.g. length-scale factors).
    name
        Name of the option, for the error message.

    Returns
    -------
    The sorted unique grid.
    """
    try:
        grid = np.asarray(values, dtype=np.float64).ravel()
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a sequence of positive numbers, got {values!r}.") from err
    if grid.size == 0 or not np.all(np.isfinite(grid)) or not np.all(grid > 0):
        raise ValueError(f"{name} must be a non-empty sequence of finite positive numbers, got {values!r}.")
    return np.unique(grid)


def select_ratio_length_scale(
    x1: np.ndarray,
    x2: np.ndarray,
    landmarks: np.ndarray,
    *,
    ls: Sequence[float],
    scales: Sequence[float],
    jitter: float = DEFAULT_JITTER,
    batch_size: int | None = None,
    max_iter: int = 5000,
) -> EvidenceSelection:
    """Fit the log ratio on a grid of length scales and prior scales; keep the fit of largest evidence.

    Parameters
    ----------
    x1, x2
        ``(n1, n_features)`` and ``(n2, n_features)`` cell states of the two conditions.
    landmarks
        ``(m, n_features)`` inducing points.
    ls
        Length scales to search (absolute; e.g. factors times the density length scale).
    scales
        Prior standard deviations of the log ratio to search.
    jitter, batch_size, max_iter
        As for :func:`~cellflux_gp_differential._ratio.fit_log_ratio`.

    Returns
    -------
    The :class:`EvidenceSelection`; its ``predictor`` is the chosen fit.

    Raises
    ------
    ValueError
        An empty grid or a non-positive or non-finite value in it.
    """
    ls_grid, scale_grid = check_grid(ls, "ls"), check_grid(scales, "scales")
    evidence = np.full((ls_grid.size, scale_grid.size), -np.inf)
    best: RatioPredictor | None = None
    for j, scale in enumerate(scale_grid):
        z0 = None
        for i, length in enumerate(ls_grid):
            fit = fit_log_ratio(
                x1,
                x2,
                landmarks,
                ls=float(length),
                scale=float(scale),
                jitter=jitter,
                batch_size=batch_size,
                max_iter=max_iter,
                z0=z0,
            )
            z0 = fit.z
            if np.isfinite(fit.log_evidence):
                evidence[i, j] = fit.log_evidence
                if best is None or fit.log_evidence > best.log_evidence:
                    best = fit
            logger.debug("log ratio: ls %.4g, scale %.4g, log evidence %.4f", length, scale, fit.log_evidence)
    if best is None:
        raise ValueError("The log evidence of the log ratio is not finite at any point of the grid.")
    return EvidenceSelection(predictor=best, ls=ls_grid, scales=scale_grid, log_evidence=evidence)
