r"""Numerical engine of the simulator: exact transcription-splicing-degradation kinetics and count noise.

Arrays only (no AnnData). For every gene the unspliced (``u``) and spliced (``s``) abundances follow

.. math::

    \frac{du}{dt} = \alpha(t) - \beta u, \qquad \frac{ds}{dt} = \beta u - \gamma s,

with a piecewise-constant transcription rate :math:`\alpha(t)`. On a segment with constant
:math:`\alpha`, starting at time :math:`t_0` from :math:`(u_0, s_0)` and writing
:math:`\tau = t - t_0`, :math:`\delta u = u - \alpha/\beta`, :math:`\delta s = s - \alpha/\gamma`:

.. math::

    \delta u(\tau) = \delta u_0 e^{-\beta\tau}, \qquad
    \delta s(\tau) = \delta s_0 e^{-\gamma\tau} + \beta\,\delta u_0\,\varphi(\tau),
    \qquad \varphi(\tau) = \frac{e^{-\beta\tau} - e^{-\gamma\tau}}{\gamma - \beta},

and :math:`\varphi(\tau) = \tau e^{-\beta\tau}` in the limit :math:`\gamma = \beta`. :math:`\varphi` is
evaluated as :math:`e^{-\min(\beta,\gamma)\tau}\,\tau\,h(|\gamma-\beta|\tau)` with
:math:`h(x) = (1 - e^{-x})/x` (``-expm1(-x)/x``, :math:`h(0) = 1`), which is exact for every
:math:`|\gamma - \beta|` including zero and never overflows. The velocities are computed from the
deviations, :math:`v_u = \alpha - \beta u = -\beta\,\delta u` and
:math:`v_s = \beta u - \gamma s = \beta\,\delta u - \gamma\,\delta s`, so a gene sitting at its steady
state has a velocity of exactly zero.

A schedule holds, per path ``p`` (a lineage in a condition) and gene ``g``, sorted breakpoints
``B[p, g, k]`` (``k < K``, ``inf`` for unused ones) and the ``K + 1`` segment rates ``A[p, g, k]``.
The state at ``t = 0`` is the steady state of the first segment; :func:`prepare_schedule` propagates
the state to every breakpoint (``K`` vectorised steps) and :func:`solve` evaluates any set of cells
``(path_i, t_i)`` for all genes at once by gathering each gene's segment start state.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "KineticSchedule",
    "KineticState",
    "evolve",
    "prepare_schedule",
    "sample_negative_binomial",
    "segment_index",
    "solve",
    "steady_state",
]


@dataclass(frozen=True)
class KineticSchedule:
    """Piecewise-constant transcription schedules with the state precomputed at every breakpoint.

    Build it with :func:`prepare_schedule`.

    Attributes
    ----------
    breakpoints
        ``(n_paths, n_genes, K)`` float64, sorted along the last axis; ``inf`` marks an unused breakpoint.
    alpha
        ``(n_paths, n_genes, K + 1)`` float64 transcription rate of every segment.
    beta
        ``(n_genes,)`` float64 splicing rates.
    gamma
        ``(n_genes,)`` float64 degradation rates.
    start_time
        ``(n_paths, n_genes, K + 1)`` float64 time at which each segment starts (``0`` for the first).
    du0
        ``(n_paths, n_genes, K + 1)`` float64 ``u - alpha / beta`` at the start of each segment.
    ds0
        ``(n_paths, n_genes, K + 1)`` float64 ``s - alpha / gamma`` at the start of each segment.
    """

    breakpoints: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    gamma: np.ndarray
    start_time: np.ndarray
    du0: np.ndarray
    ds0: np.ndarray

    @property
    def n_paths(self) -> int:
        """Number of paths."""
        return self.alpha.shape[0]

    @property
    def n_genes(self) -> int:
        """Number of genes."""
        return self.alpha.shape[1]


@dataclass(frozen=True)
class KineticState:
    """Noise-free abundances and velocities of a set of cells, all ``(n_cells, n_genes)`` float64.

    Attributes
    ----------
    u
        Unspliced abundance.
    s
        Spliced abundance.
    velocity_u
        ``du/dt = alpha(t) - beta * u``.
    velocity_s
        ``ds/dt = beta * u - gamma * s`` (the RNA velocity).
    alpha
        Transcription rate in force at each cell's time.
    """

    u: np.ndarray
    s: np.ndarray
    velocity_u: np.ndarray
    velocity_s: np.ndarray
    alpha: np.ndarray


def steady_state(alpha: np.ndarray, beta: np.ndarray, gamma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Steady state of the kinetics for a constant transcription rate.

    Parameters
    ----------
    alpha
        Transcription rate(s).
    beta
        Splicing rate(s), broadcastable against ``alpha``.
    gamma
        Degradation rate(s), broadcastable against ``alpha``.

    Returns
    -------
    u, s
        ``alpha / beta`` and ``alpha / gamma`` as float64 arrays.
    """
    alpha = np.asarray(alpha, dtype=np.float64)
    return alpha / beta, alpha / gamma


def _exp_neg(rate: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """Return ``exp(-rate * tau)`` with a single temporary.

    Parameters
    ----------
    rate
        Rates, broadcastable against ``tau``.
    tau
        Elapsed times.

    Returns
    -------
    numpy.ndarray
        Float64 array of the broadcast shape.
    """
    out = np.multiply(rate, tau)
    np.negative(out, out=out)
    return np.exp(out, out=out)


def _phi(
    beta: np.ndarray, gamma: np.ndarray, tau: np.ndarray, exp_beta: np.ndarray, exp_gamma: np.ndarray
) -> np.ndarray:
    """Return ``(exp(-beta tau) - exp(-gamma tau)) / (gamma - beta)``, exact for any ``gamma - beta``.

    Evaluated as ``exp(-min(beta, gamma) tau) * tau * h(|gamma - beta| tau)`` with
    ``h(x) = -expm1(-x) / x`` (``h(0) = 1``, reached through ``x = max(x, 1e-300)``), which is the
    exact limit ``tau * exp(-beta tau)`` when ``gamma == beta`` and never cancels or overflows.

    Parameters
    ----------
    beta, gamma
        Rates, broadcastable against ``tau``.
    tau
        Non-negative finite elapsed times.
    exp_beta, exp_gamma
        ``exp(-beta tau)`` and ``exp(-gamma tau)``.

    Returns
    -------
    numpy.ndarray
        Float64 array of the broadcast shape.
    """
    x = np.multiply(np.abs(gamma - beta), tau)
    np.maximum(x, 1e-300, out=x)
    h = np.negative(x)
    np.expm1(h, out=h)
    np.negative(h, out=h)
    h /= x
    phi = np.where(beta <= gamma, exp_beta, exp_gamma)
    phi *= tau
    phi *= h
    return phi


def evolve(
    du0: np.ndarray,
    ds0: np.ndarray,
    alpha: np.ndarray,
    beta: np.ndarray,
    gamma: np.ndarray,
    tau: np.ndarray,
) -> KineticState:
    """Evolve the kinetics analytically over one constant-``alpha`` segment.

    Parameters
    ----------
    du0
        ``u0 - alpha / beta`` at the start of the segment.
    ds0
        ``s0 - alpha / gamma`` at the start of the segment.
    alpha
        Transcription rate on the segment.
    beta
        Splicing rate (``> 0``).
    gamma
        Degradation rate (``> 0``); ``gamma == beta`` is handled by the exact limit.
    tau
        Time elapsed since the segment start; negative values are treated as ``0``. Must be finite.

    Returns
    -------
    KineticState
        ``u``, ``s``, both velocities and ``alpha`` after ``tau``. All inputs are broadcast together.
    """
    du0, ds0, alpha, beta, gamma, tau = (np.asarray(a, dtype=np.float64) for a in (du0, ds0, alpha, beta, gamma, tau))
    shape = np.broadcast_shapes(du0.shape, ds0.shape, alpha.shape, beta.shape, gamma.shape, tau.shape)
    tau = np.maximum(np.broadcast_to(tau, shape), 0.0)
    exp_beta = _exp_neg(beta, tau)
    exp_gamma = _exp_neg(gamma, tau)
    phi = _phi(beta, gamma, tau, exp_beta, exp_gamma)
    du = exp_beta
    du *= du0
    ds = exp_gamma
    ds *= ds0
    phi *= du0
    phi *= beta
    ds += phi
    velocity_u = np.multiply(du, -beta, out=phi)
    velocity_s = np.multiply(du, beta, out=tau)
    velocity_s -= gamma * ds
    du += alpha / beta
    ds += alpha / gamma
    return KineticState(u=du, s=ds, velocity_u=velocity_u, velocity_s=velocity_s, alpha=np.broadcast_to(alpha, shape))


def _check_schedule_inputs(
    breakpoints: np.ndarray, alpha: np.ndarray, beta: np.ndarray, gamma: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Validate and convert the inputs of :func:`prepare_schedule`.

    Parameters
    ----------
    breakpoints, alpha, beta, gamma
        See :func:`prepare_schedule`.

    Returns
    -------
    breakpoints, alpha, beta, gamma
        Float64 arrays.

    Raises
    ------
    ValueError
        On inconsistent shapes, unsorted or negative breakpoints, negative rates or non-positive
        ``beta``/``gamma``.
    """
    breakpoints = np.asarray(breakpoints, dtype=np.float64)
    alpha = np.asarray(alpha, dtype=np.float64)
    beta = np.asarray(beta, dtype=np.float64)
    gamma = np.asarray(gamma, dtype=np.float64)
    if breakpoints.ndim != 3:
        raise ValueError(f"`breakpoints` must be (n_paths, n_genes, K), got shape {breakpoints.shape}.")
    n_paths, n_genes, n_breaks = breakpoints.shape
    if alpha.shape != (n_paths, n_genes, n_breaks + 1):
        raise ValueError(f"`alpha` must have shape {(n_paths, n_genes, n_breaks + 1)}, got {alpha.shape}.")
    if beta.shape != (n_genes,) or gamma.shape != (n_genes,):
        raise ValueError(f"`beta` and `gamma` must have shape ({n_genes},).")
    if np.isnan(breakpoints).any() or (breakpoints < 0).any():
        raise ValueError("`breakpoints` must be non-negative (inf for unused ones).")
    if n_breaks > 1 and (breakpoints[..., 1:] < breakpoints[..., :-1]).any():
        raise ValueError("`breakpoints` must be sorted along the last axis.")
    if not np.isfinite(alpha).all() or (alpha < 0).any():
        raise ValueError("`alpha` must be finite and non-negative.")
    for name, rate in (("beta", beta), ("gamma", gamma)):
        if not np.isfinite(rate).all() or (rate <= 0).any():
            raise ValueError(f"`{name}` must be finite and positive.")
    return breakpoints, alpha, beta, gamma


def prepare_schedule(
    breakpoints: np.ndarray, alpha: np.ndarray, beta: np.ndarray, gamma: np.ndarray
) -> KineticSchedule:
    """Precompute the state at the start of every segment of piecewise-constant schedules.

    Parameters
    ----------
    breakpoints
        ``(n_paths, n_genes, K)`` switch times, non-negative and sorted along the last axis; ``inf``
        marks an unused breakpoint. ``K`` may be ``0``.
    alpha
        ``(n_paths, n_genes, K + 1)`` transcription rate of each segment; segment ``k`` runs from
        breakpoint ``k - 1`` (or ``t = 0``) to breakpoint ``k``.
    beta
        ``(n_genes,)`` splicing rates.
    gamma
        ``(n_genes,)`` degradation rates.

    Returns
    -------
    KineticSchedule
        The schedule with the start time and start state (as deviations from the segment's steady
        state) of every segment. At ``t = 0`` every gene is at the steady state of its first segment.
    """
    breakpoints, alpha, beta, gamma = _check_schedule_inputs(breakpoints, alpha, beta, gamma)
    n_breaks = breakpoints.shape[-1]
    start_time = np.zeros_like(alpha)
    du0 = np.zeros_like(alpha)
    ds0 = np.zeros_like(alpha)
    for k in range(n_breaks):
        finite = np.isfinite(breakpoints[..., k])
        start_time[..., k + 1] = breakpoints[..., k]
        tau = np.subtract(breakpoints[..., k], start_time[..., k], out=np.zeros_like(start_time[..., k]), where=finite)
        end = evolve(du0[..., k], ds0[..., k], alpha[..., k], beta, gamma, tau)
        du0[..., k + 1] = end.u - alpha[..., k + 1] / beta
        ds0[..., k + 1] = end.s - alpha[..., k + 1] / gamma
    return KineticSchedule(
        breakpoints=breakpoints,
        alpha=alpha,
        beta=beta,
        gamma=gamma,
        start_time=start_time,
        du0=du0,
        ds0=ds0,
    )


def segment_index(schedule: KineticSchedule, path: np.ndarray, time: np.ndarray) -> np.ndarray:
    """Index of the segment every gene is in for each cell.

    Parameters
    ----------
    schedule
        From :func:`prepare_schedule`.
    path
        ``(n_cells,)`` integer path of each cell.
    time
        ``(n_cells,)`` time of each cell.

    Returns
    -------
    numpy.ndarray
        ``(n_cells, n_genes)`` int64: the number of breakpoints ``<= time`` (a cell exactly at a
        breakpoint belongs to the segment that starts there).
    """
    n_breaks = schedule.breakpoints.shape[-1]
    segment = np.zeros((path.shape[0], schedule.n_genes), dtype=np.int64)
    time_col = time[:, None]
    for k in range(n_breaks):
        segment += schedule.breakpoints[path, :, k] <= time_col
    return segment


def solve(schedule: KineticSchedule, path: np.ndarray, time: np.ndarray) -> KineticState:
    """Evaluate the exact kinetics for cells on given paths at given times, for every gene.

    Parameters
    ----------
    schedule
        From :func:`prepare_schedule`.
    path
        ``(n_cells,)`` integer path index of each cell, in ``[0, n_paths)``.
    time
        ``(n_cells,)`` finite time of each cell; times before ``0`` give the initial steady state.

    Returns
    -------
    KineticState
        ``(n_cells, n_genes)`` float64 abundances, velocities and transcription rates.
    """
    path = np.asarray(path, dtype=np.intp)
    time = np.asarray(time, dtype=np.float64)
    if path.shape != time.shape or path.ndim != 1:
        raise ValueError("`path` and `time` must be 1-d arrays of the same length.")
    if not np.isfinite(time).all():
        raise ValueError("`time` must be finite.")
    if path.size and (path.min() < 0 or path.max() >= schedule.n_paths):
        raise ValueError(f"`path` must lie in [0, {schedule.n_paths}).")
    n_genes = schedule.n_genes
    n_segments = schedule.alpha.shape[-1]
    flat = segment_index(schedule, path, time)
    flat += (path[:, None] * n_genes + np.arange(n_genes)[None, :]) * n_segments
    tau = time[:, None] - schedule.start_time.ravel()[flat]
    return evolve(
        schedule.du0.ravel()[flat],
        schedule.ds0.ravel()[flat],
        schedule.alpha.ravel()[flat],
        schedule.beta,
        schedule.gamma,
        tau,
    )


def sample_negative_binomial(
    mu: np.ndarray,
    theta: np.ndarray,
    rng: np.random.Generator,
    poisson_rng: np.random.Generator | None = None,
    dtype: np.dtype | type = np.int32,
) -> np.ndarray:
    """Draw negative-binomial counts as a gamma-Poisson mixture.

    ``lam = mu * G / theta`` with ``G ~ Gamma(shape=theta, scale=1)``, then ``X ~ Poisson(lam)``, so
    ``E[X] = mu`` and ``Var[X] = mu + mu**2 / theta``.

    Parameters
    ----------
    mu
        Non-negative means, e.g. ``(n_cells, n_genes)``.
    theta
        Positive inverse dispersion (NB "size"), broadcastable against ``mu`` (e.g. per gene).
    rng
        Generator for the gamma draws (and the Poisson draws when ``poisson_rng`` is ``None``).
    poisson_rng
        Optional separate generator for the Poisson draws. With separate streams, the draws for the
        first rows of a C-ordered ``mu`` do not depend on how many rows follow.
    dtype
        Integer dtype of the result.

    Returns
    -------
    numpy.ndarray
        Counts with the shape of ``mu``.
    """
    mu = np.asarray(mu, dtype=np.float64)
    theta = np.asarray(theta, dtype=np.float64)
    shape = np.broadcast_to(theta.astype(np.float32), mu.shape)
    lam = rng.standard_gamma(shape, dtype=np.float32).astype(np.float64)
    lam *= mu
    lam /= theta
    counts = (rng if poisson_rng is None else poisson_rng).poisson(lam)
    return counts.astype(dtype, copy=False)
