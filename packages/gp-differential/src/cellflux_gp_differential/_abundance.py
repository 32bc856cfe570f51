"""Differential abundance: where the cell density differs between two conditions."""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy.special import log_ndtr
from tqdm.auto import tqdm

from ._density import DensityPredictor, design_inverse, fit_density, predict_density_pair
from ._jax import DEFAULT_JITTER
from ._params import (
    default_length_scale,
    fractal_dimension,
    landmarks_kmeans,
    mellon_length_scale,
    nn_distances,
    prior_mean,
)
from ._ratio import fit_log_ratio
from ._ratio_evidence import DEFAULT_EVIDENCE_LS_FACTORS, check_grid, select_ratio_length_scale
from ._ratio_samples import fit_sample_ratio_variance
from ._sample_variance import SampleVarianceEstimator
from ._threads import resolve_n_jobs, thread_map
from ._validate import check_cells, check_groups, check_landmarks, check_n_landmarks, check_positive

__all__ = [
    "DEFAULT_LFC_THRESHOLD",
    "DEFAULT_N_LANDMARKS",
    "METHODS",
    "RATIO_LS_RULES",
    "DifferentialAbundance",
    "default_ratio_prior_std",
    "direction_calls",
]

logger = logging.getLogger(__name__)

#: Landmarks used when ``n_landmarks`` is ``None`` (capped at the number of cells).
DEFAULT_N_LANDMARKS = 1000
_DENSITY_KWARGS = {"ls", "d", "mu", "jitter", "d_method", "max_iter", "n_neighbors"}
#: Neighbour whose distance the density likelihood uses (1: mellon's nearest-neighbour likelihood).
DEFAULT_N_NEIGHBORS = 1
#: Estimators of the log fold change: the direct density ratio (default) or kompot's difference of densities.
METHODS = ("ratio", "density")
#: Length scale of the ratio estimator: this many times ``default_length_scale`` of the pooled cells.
RATIO_LS_FACTOR = 4.0
#: Rules for the ratio estimator's length scale: the fixed :data:`RATIO_LS_FACTOR` or type-II maximum
#: likelihood (the Laplace evidence) over a grid of factors (:mod:`._ratio_evidence`).
RATIO_LS_RULES = ("fixed", "evidence")
#: Prior standard deviation of the log fold change in the ratio estimator at :data:`RATIO_REFERENCE_CELLS`.
RATIO_PRIOR_STD = 0.1
#: Cells at which the ratio estimator's default prior standard deviation is :data:`RATIO_PRIOR_STD`.
RATIO_REFERENCE_CELLS = 2000
#: Default ``log_fold_change_threshold`` per method: kompot's 1 for its estimator; none (0) for the ratio
#: estimator, whose prior already shrinks small effects, so that cells are called on the posterior tail
#: probability alone (the local false sign rate of a shrinkage estimator).
DEFAULT_LFC_THRESHOLD = {"density": 1.0, "ratio": 0.0}


def default_ratio_prior_std(n_cells: int) -> float:
    """Default prior standard deviation of the log fold change for ``n_cells`` pooled cells.

    ``RATIO_PRIOR_STD * sqrt(RATIO_REFERENCE_CELLS / n_cells)``: the prior precision grows in proportion
    to the cells, so the shrinkage of the fitted log ratio -- and with it the scale of the structure it
    resolves -- stays the same at any number of cells. With a fixed prior, more cells let the
    classifier resolve ever finer density differences (e.g. the local displacement of cells whose genes
    change, which is differential expression, not abundance) and the ranking of the planted depletion
    fell from AUROC 0.96 at 2,000 cells to 0.87 at 20,000 and 0.81 at 100,000 cells (simulator, 20
    principal components); with this rule it stays near 0.95 at 20,000 cells.
    """
    return RATIO_PRIOR_STD * float(np.sqrt(RATIO_REFERENCE_CELLS / n_cells))


def direction_calls(
    lfc: np.ndarray, neg_log10_ptp: np.ndarray, lfc_threshold: float, ptp_threshold: float
) -> np.ndarray:
    """``"up"``/``"down"``/``"neutral"``: ``|lfc| > lfc_threshold`` and ``ptp < ptp_threshold``."""
    significant = (np.abs(lfc) > lfc_threshold) & (neg_log10_ptp > -np.log10(ptp_threshold))
    out = np.full(lfc.shape, "neutral", dtype=object)
    out[significant & (lfc > 0)] = "up"
    out[significant & (lfc < 0)] = "down"
    return out


class DifferentialAbundance:
    """Differential abundance between two conditions from Gaussian-process log densities (mellon's model).

    Parameters
    ----------
    log_fold_change_threshold
        ``|log fold change|`` above which a cell can be called up or down. ``None`` (default): kompot's 1
        with ``method="density"``; 0 with ``method="ratio"``, i.e. cells are called on ``ptp_threshold``
        alone (a deliberate difference: the ratio estimator shrinks the log fold change towards zero,
        so a fixed effect threshold on it would depend on the number of cells; its posterior tail
        probability is a local false sign rate).
    ptp_threshold
        Posterior tail probability below which a cell can be called.
    n_landmarks
        Landmarks shared by both conditions (k-means of the pooled cells); ``None``: ``min(1000, cells)``.
    use_sample_variance
        Add the between-sample variance (``None``: when sample indices or variance predictors are given).
        With ``method="density"`` it is kompot's: the variance between per-sample log densities of each
        condition. With ``method="ratio"`` it is the variance of the log *ratio* due to the samples of
        each condition, a delete-a-sample jackknife (the log ratio refitted without each sample; see
        :mod:`~cellflux_gp_differential._ratio_samples`) -- a
        deliberate difference: kompot's per-sample density variance carries each small sample's own
        density-estimation noise and level offsets, is 20-50 times the ratio's posterior variance on
        the simulator and left no cell called.
    eps
        Added to the variance before the z-score.
    jit_compile
        Kept for kompot compatibility; the engine is always compiled.
    density_predictor1, density_predictor2
        Pre-fitted log-density predictors (callable ``f(X, normalize=True)`` with ``.uncertainty(X)``,
        e.g. mellon predictors); then :meth:`fit` fits nothing but the sample variance.
    variance_predictor1, variance_predictor2
        Pre-fitted sample-variance predictors ``v(X, diag=True)``.
    random_state
        Seed of the landmark k-means.
    batch_size
        Cells per prediction batch.
    method
        ``"ratio"`` (default): the log fold change is fitted directly as a log density ratio (a
        Gaussian-process classifier of the condition labels with the offset ``log(n2 / n1)``);
        the two log densities are still fitted and reported, but the log fold change is not their
        difference. ``"density"``: kompot's estimator, the difference of the two fitted log densities
        and the sum of their variances (use it for parity with kompot).
    prior_std
        ``method="ratio"``: prior standard deviation of the log fold change (smaller shrinks more).
        ``None`` (default): 0.1 at 2,000 cells, scaled by ``sqrt(2000 / cells)`` (see
        :func:`~cellflux_gp_differential._abundance.default_ratio_prior_std`), so that the estimator
        smooths alike at any number of cells.
    ratio_ls
        ``method="ratio"``: how its length scale is chosen. ``"fixed"`` (default):
        :data:`RATIO_LS_FACTOR` times the density length scale of the pooled cells. ``"evidence"``: per
        data set, by the largest Laplace evidence (type-II maximum likelihood) of the log ratio over
        ``ratio_ls_factors`` times that length scale (and ``ratio_prior_std_factors`` times the prior
        standard deviation); see :mod:`~cellflux_gp_differential._ratio_evidence`. It costs one fit of
        the log ratio per grid point. ``ls`` or ``ls_factor`` given to :meth:`fit` set the ratio's length
        scale only with ``"fixed"``. On the simulator the evidence picks 2-4 times the density length
        scale and ranks the planted depletion slightly worse than ``"fixed"`` on average (mean AUROC
        0.943 vs 0.949 over 17 seeds x 2 representations), hence not the default.
    ratio_ls_factors
        ``ratio_ls="evidence"``: the length-scale grid, in multiples of the density length scale
        (default 1, 2, 4, 8, 16, 32).
    ratio_prior_std_factors
        ``ratio_ls="evidence"``: multiples of ``prior_std`` (or its default) searched as well (default
        ``(1,)``: the prior standard deviation is not searched).
    ratio_n_landmarks
        ``method="ratio"``: landmarks of the log ratio (a k-means of the pooled cells). ``None``
        (default): with the default length scale, ``ceil(landmarks / RATIO_LS_FACTOR)`` of their own --
        the log ratio is :data:`RATIO_LS_FACTOR` times smoother than the densities, and on the simulator
        (34 settings) 200-500 instead of 1,000 landmarks changed the AUROC of the planted depletion by at
        most 0.0004 -- otherwise (``landmarks``, ``ls`` or ``ls_factor`` given to :meth:`fit`, or
        ``ratio_ls="evidence"``, whose grid starts at the densities' length scale) the densities'
        landmarks. A number: that many k-means centres in every case.
    n_jobs
        Threads: the two log densities and the log ratio are fitted, and predicted, in parallel (BLAS on
        one thread in each). ``None`` (default) all available cores, ``-1`` too, ``1`` none. Results do
        not depend on it.

    Attributes
    ----------
    log_density_condition1, log_density_condition2, log_fold_change, log_fold_change_uncertainty,
    log_fold_change_zscore, neg_log10_fold_change_ptp, log_fold_change_direction
        The last :meth:`predict` results.
    landmarks, ls, d1, d2
        The fitted landmarks, length scale and intrinsic dimensions.
    ratio_ls, ratio_prior_std, ratio_landmarks
        ``method="ratio"``: the length scale, prior standard deviation and landmarks of the fitted log
        ratio.
    ratio_evidence
        ``ratio_ls="evidence"``: the :class:`~cellflux_gp_differential._ratio_evidence.EvidenceSelection`
        (grid and log evidence of every fit); ``None`` otherwise.
    """

    def __init__(
        self,
        log_fold_change_threshold: float | None = None,
        ptp_threshold: float = 0.05,
        n_landmarks: int | None = None,
        use_sample_variance: bool | None = None,
        eps: float = 1e-12,
        jit_compile: bool = False,
        density_predictor1: Any = None,
        density_predictor2: Any = None,
        variance_predictor1: Any = None,
        variance_predictor2: Any = None,
        random_state: int | None = None,
        batch_size: int | None = None,
        *,
        method: str = "ratio",
        prior_std: float | None = None,
        ratio_ls: str = "fixed",
        ratio_ls_factors: Sequence[float] = DEFAULT_EVIDENCE_LS_FACTORS,
        ratio_prior_std_factors: Sequence[float] = (1.0,),
        ratio_n_landmarks: int | None = None,
        n_jobs: int | None = None,
    ) -> None:
        resolve_n_jobs(n_jobs)
        check_n_landmarks(ratio_n_landmarks, None, "ratio_n_landmarks")  # against the cells in fit
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}.")
        if not isinstance(ratio_ls, str) or ratio_ls not in RATIO_LS_RULES:
            raise ValueError(f"ratio_ls must be one of {RATIO_LS_RULES}, got {ratio_ls!r}.")
        self.ratio_ls_factors = check_grid(ratio_ls_factors, "ratio_ls_factors")
        self.ratio_prior_std_factors = check_grid(ratio_prior_std_factors, "ratio_prior_std_factors")
        if prior_std is not None and not prior_std > 0:
            raise ValueError(f"prior_std must be positive, got {prior_std}.")
        if not 0 < ptp_threshold < 1:
            raise ValueError(f"ptp_threshold must be in (0, 1), got {ptp_threshold}.")
        if log_fold_change_threshold is None:
            log_fold_change_threshold = DEFAULT_LFC_THRESHOLD[method]
        if not log_fold_change_threshold >= 0:
            raise ValueError(f"log_fold_change_threshold must be >= 0, got {log_fold_change_threshold}.")
        self.log_fold_change_threshold = log_fold_change_threshold
        self.ptp_threshold = ptp_threshold
        self.n_landmarks = n_landmarks
        self.use_sample_variance_explicit = use_sample_variance is not None
        self.use_sample_variance = (
            use_sample_variance
            if use_sample_variance is not None
            else (variance_predictor1 is not None or variance_predictor2 is not None)
        )
        self.eps = eps
        self.jit_compile = jit_compile
        self.density_predictor1 = density_predictor1
        self.density_predictor2 = density_predictor2
        self.variance_predictor1 = variance_predictor1
        self.variance_predictor2 = variance_predictor2
        self.random_state = random_state
        self.batch_size = batch_size
        self.method = method
        self.prior_std = prior_std
        self.ratio_ls_rule = ratio_ls
        self.n_jobs = n_jobs
        self.ratio_n_landmarks = ratio_n_landmarks
        self.ratio_landmarks: np.ndarray | None = None
        self.ratio_evidence = None
        self.ratio_predictor = None
        self.ratio_ls: float | None = None
        self.ratio_prior_std: float | None = None
        self.landmarks: np.ndarray | None = None
        self.ls: float | None = None
        self.d1 = self.d2 = None
        for name in (
            "log_density_condition1",
            "log_density_condition2",
            "log_density_uncertainty_condition1",
            "log_density_uncertainty_condition2",
            "log_fold_change",
            "log_fold_change_uncertainty",
            "log_fold_change_zscore",
            "neg_log10_fold_change_ptp",
            "log_fold_change_direction",
        ):
            setattr(self, name, None)

    def fit(
        self,
        X_condition1: np.ndarray,
        X_condition2: np.ndarray,
        landmarks: np.ndarray | None = None,
        ls_factor: float | None = None,
        condition1_sample_indices: np.ndarray | None = None,
        condition2_sample_indices: np.ndarray | None = None,
        sample_estimator_ls: float | None = None,
        sync_parameters: bool = False,
        allow_single_condition_variance: bool = False,
        **density_kwargs: Any,
    ) -> DifferentialAbundance:
        """Fit the log density of each condition (and of each sample, for the sample variance).

        Parameters
        ----------
        X_condition1, X_condition2
            ``(n_cells, n_features)`` cell states of each condition (same representation).
        landmarks
            ``(m, n_features)`` inducing points shared by both conditions; default k-means of the pooled
            cells (``n_landmarks``).
        ls_factor
            ``None`` (default): the data-driven length scale of
            :func:`~cellflux_gp_differential._params.default_length_scale` on the pooled cells. A number:
            kompot's rule, mellon's length scale (``exp(mean log nn + 3)``) times ``ls_factor`` (kompot
            uses 10).
        condition1_sample_indices, condition2_sample_indices
            Sample label of every cell of each condition; turns on the sample variance.
        sample_estimator_ls
            Length scale of the per-sample densities (``method="ratio"``: of the per-sample log ratios);
            default: the conditions' (the ratio's) length scale.
        sync_parameters
            Compute the intrinsic dimension, prior mean and (with ``ls_factor``) length scale once on the
            pooled cells instead of per condition.
        allow_single_condition_variance
            If one condition has fewer than two samples, use the other condition's sample variance for
            both instead of raising.
        **density_kwargs
            ``ls``, ``d``, ``mu``, ``jitter`` (default ``1e-6``), ``d_method`` (``"fractal"``, default, or
            ``"embedding"``), ``max_iter``, ``n_neighbors`` (likelihood of the distance to the
            ``n_neighbors``-th neighbour; ``1``, the default, is mellon's nearest-neighbour likelihood).

        Returns
        -------
        ``self``.
        """
        unknown = set(density_kwargs) - _DENSITY_KWARGS
        if unknown:
            raise TypeError(f"Unknown density options {sorted(unknown)}; expected some of {sorted(_DENSITY_KWARGS)}.")
        x1 = check_cells(X_condition1, "X_condition1")
        x2 = check_cells(X_condition2, "X_condition2", n_features=x1.shape[1])
        ls_factor = check_positive(ls_factor, "ls_factor")
        for name in ("ls", "d"):
            check_positive(density_kwargs.get(name), name)
        pooled = np.vstack([x1, x2])
        have_samples = condition1_sample_indices is not None or condition2_sample_indices is not None
        if have_samples and not self.use_sample_variance_explicit:
            self.use_sample_variance = True
        if (
            self.use_sample_variance_explicit
            and self.use_sample_variance
            and not have_samples
            and self.variance_predictor1 is None
            and self.variance_predictor2 is None
        ):
            raise ValueError(
                "use_sample_variance=True but neither sample indices nor variance predictors were given; pass "
                "condition1_sample_indices/condition2_sample_indices."
            )
        jitter = density_kwargs.get("jitter", DEFAULT_JITTER)
        d_method = density_kwargs.get("d_method", "fractal")
        if d_method not in ("fractal", "embedding"):
            raise ValueError(f"d_method must be 'fractal' or 'embedding', got {d_method!r}.")

        k = int(density_kwargs.get("n_neighbors", DEFAULT_N_NEIGHBORS))
        if k < 1 or k >= min(len(x1), len(x2)):
            raise ValueError(f"n_neighbors must be between 1 and the cells of a condition minus one, got {k}.")
        if landmarks is not None:
            landmarks = check_landmarks(landmarks, x1.shape[1])
        else:
            check_n_landmarks(self.n_landmarks, pooled.shape[0])
        if self.method == "ratio":
            check_n_landmarks(self.ratio_n_landmarks, pooled.shape[0], "ratio_n_landmarks")
        self.n_neighbors = k
        self._shared_d = sync_parameters or "d" in density_kwargs

        def dimension(x: np.ndarray) -> float:
            if "d" in density_kwargs:
                return float(density_kwargs["d"])
            return float(x.shape[1]) if d_method == "embedding" else fractal_dimension(x)

        # on threads: the landmarks' k-means, the intrinsic dimensions and the pooled default length scale
        n_jobs = resolve_n_jobs(self.n_jobs)
        tasks: list[Callable[[], Any]] = []
        if landmarks is None:
            n_landmarks = self.n_landmarks or min(DEFAULT_N_LANDMARKS, pooled.shape[0])
            tasks.append(lambda: landmarks_kmeans(pooled, n_landmarks, self.random_state))
        tasks += [lambda: dimension(pooled)] if sync_parameters else [lambda: dimension(x1), lambda: dimension(x2)]
        need_pooled_ls = "ls" not in density_kwargs and ls_factor is None
        if need_pooled_ls:
            tasks.append(lambda: default_length_scale(pooled))
        done = thread_map(_call, tasks, n_jobs)
        self.landmarks = landmarks if landmarks is not None else done.pop(0)
        pooled_ls = done.pop() if need_pooled_ls else None

        nn1, nn2 = nn_distances(x1, k), nn_distances(x2, k)
        if sync_parameters:
            nn_pooled = nn_distances(pooled, k)
            self.d1 = self.d2 = d_pooled = done[0]
            mu1 = mu2 = density_kwargs.get("mu", prior_mean(nn_pooled, d_pooled, k))
        else:
            self.d1, self.d2 = done
            mu1 = density_kwargs.get("mu", prior_mean(nn1, self.d1, k))
            mu2 = density_kwargs.get("mu", prior_mean(nn2, self.d2, k))
        if "ls" in density_kwargs:
            ls1 = ls2 = float(density_kwargs["ls"])
        elif ls_factor is not None:
            if sync_parameters:
                ls1 = ls2 = mellon_length_scale(nn_distances(pooled)) * ls_factor
            else:
                ls1, ls2 = mellon_length_scale(nn1) * ls_factor, mellon_length_scale(nn2) * ls_factor
        else:
            ls1 = ls2 = pooled_ls
        self.ls = ls1 if ls1 == ls2 else (ls1, ls2)
        self.mu1, self.mu2 = float(mu1), float(mu2)
        max_iter = int(density_kwargs.get("max_iter", 5000))

        # the log ratio and the two densities are independent fits, on threads (with two: the ratio, on fewer
        # landmarks, then the second density on one; the first density on the other)
        tasks = []
        if self.method == "ratio":
            ratio_args = (x1, x2, pooled, pooled_ls, ls_factor, density_kwargs, jitter, max_iter, landmarks is not None)
            tasks.append(lambda: self._fit_ratio(*ratio_args))
        fit_densities = self.density_predictor1 is None or self.density_predictor2 is None
        if fit_densities:
            common = {"jitter": jitter, "batch_size": self.batch_size, "max_iter": max_iter, "n_neighbors": k}
            one, two = (x1, ls1, self.d1, self.mu1, nn1), (x2, ls2, self.d2, self.mu2, nn2)
            shared: list[np.ndarray] = []  # Lp^{-1} of both densities when they share a design
            lock = threading.Lock()

            def density(x, ls, d, mu, nn):
                Linv = None
                if ls1 == ls2:
                    with lock:  # computed once, by the first density to start
                        if not shared:
                            shared.append(design_inverse(self.landmarks, ls1, jitter))
                    Linv = shared[0]
                return fit_density(x, self.landmarks, ls=ls, d=d, mu=mu, nn=nn, Linv=Linv, **common)

            tasks += [lambda: density(*one), lambda: density(*two)]
        done = thread_map(_call, tasks, n_jobs)
        if fit_densities:
            self.density_predictor1, self.density_predictor2 = done[-2:]

        if self.use_sample_variance and have_samples:
            self._fit_sample_variance(
                (x1, x2),
                (condition1_sample_indices, condition2_sample_indices),
                (ls1, ls2),
                (self.d1, self.d2),
                sample_estimator_ls,
                jitter,
                allow_single_condition_variance,
            )
        return self

    def _fit_ratio(
        self, x1, x2, pooled, pooled_ls, ls_factor, density_kwargs, jitter, max_iter, landmarks_given
    ) -> None:
        prior_std = self.prior_std if self.prior_std is not None else default_ratio_prior_std(pooled.shape[0])
        common = {"jitter": jitter, "batch_size": self.batch_size, "max_iter": max_iter}
        self.ratio_evidence = None
        n_ratio = self.ratio_n_landmarks
        default_ls = not (landmarks_given or "ls" in density_kwargs or ls_factor is not None)
        if n_ratio is None and self.ratio_ls_rule == "fixed" and default_ls:
            n_ratio = max(2, math.ceil(len(self.landmarks) / RATIO_LS_FACTOR))  # 4x smoother: fewer landmarks
        self.ratio_landmarks = self.landmarks
        if n_ratio is not None:
            self.ratio_landmarks = landmarks_kmeans(pooled, n_ratio, self.random_state)
        if self.ratio_ls_rule == "evidence":
            base = pooled_ls or default_length_scale(pooled)
            self.ratio_evidence = select_ratio_length_scale(
                x1,
                x2,
                self.ratio_landmarks,
                ls=self.ratio_ls_factors * base,
                scales=self.ratio_prior_std_factors * prior_std,
                **common,
            )
            self.ratio_predictor = self.ratio_evidence.predictor
            self.ratio_ls, self.ratio_prior_std = self.ratio_predictor.ls, self.ratio_predictor.scale
            logger.info(
                "Ratio length scale by evidence: %.4g (%.3g x the density length scale), prior std %.3g",
                self.ratio_ls,
                self.ratio_ls / base,
                self.ratio_prior_std,
            )
            return
        if "ls" in density_kwargs:
            self.ratio_ls = float(density_kwargs["ls"])
        elif ls_factor is not None:
            self.ratio_ls = mellon_length_scale(nn_distances(pooled)) * ls_factor
        else:
            self.ratio_ls = RATIO_LS_FACTOR * (pooled_ls or default_length_scale(pooled))
        self.ratio_prior_std = prior_std
        self.ratio_predictor = fit_log_ratio(
            x1, x2, self.ratio_landmarks, ls=self.ratio_ls, scale=self.ratio_prior_std, **common
        )

    def _fit_sample_variance(self, xs, indices, ls, ds, sample_ls, jitter, allow_single) -> None:
        fitted = []
        for i, (x, idx, ls_c, d_c) in enumerate(zip(xs, indices, ls, ds, strict=True), start=1):
            if idx is None:
                fitted.append(None)
                continue
            idx = check_groups(idx, x.shape[0], f"condition{i}_sample_indices")
            if self.method == "ratio":
                try:
                    fitted.append(
                        fit_sample_ratio_variance(
                            *xs,
                            idx,
                            i,
                            self.landmarks if sample_ls else self.ratio_landmarks,
                            ls=sample_ls or self.ratio_ls,
                            scale=self.ratio_prior_std,
                            jitter=jitter,
                            batch_size=self.batch_size,
                        )
                    )
                except ValueError as err:
                    if not allow_single:
                        raise ValueError(f"condition {i}: {err}") from err
                    logger.info("No sample variance for condition %d: %s", i, err)
                    fitted.append(None)
                continue
            estimator = SampleVarianceEstimator(eps=self.eps, estimator_type="density")
            kwargs = {
                "landmarks": self.landmarks,
                "ls": sample_ls or ls_c,
                "jitter": jitter,
                "n_neighbors": self.n_neighbors,
            }
            if self._shared_d:  # as kompot: per-sample dimensions unless synchronised or given
                kwargs["d"] = d_c
            try:
                estimator.fit(
                    x,
                    grouping_vector=idx,
                    estimator_kwargs=kwargs,
                )
            except ValueError as err:
                if not allow_single:
                    raise ValueError(f"condition {i}: {err}") from err
                logger.info("No sample variance for condition %d: %s", i, err)
                estimator = None
            fitted.append(estimator.predict if estimator is not None else None)
        if all(f is None for f in fitted):
            raise ValueError("Sample variance could not be estimated for either condition (each needs >= 2 samples).")
        first, second = fitted
        first = first or second
        second = second or first
        self.variance_predictor1 = first
        self.variance_predictor2 = second

    def predict(
        self,
        X_new: np.ndarray,
        log_fold_change_threshold: float | None = None,
        ptp_threshold: float | None = None,
        progress: bool = True,
    ) -> dict[str, np.ndarray]:
        """Log densities, log fold change (condition 2 - condition 1) and its significance at ``X_new``.

        Parameters
        ----------
        X_new
            ``(n_cells, n_features)`` points.
        log_fold_change_threshold, ptp_threshold
            Override the thresholds of the direction calls.
        progress
            Show progress bars.

        Returns
        -------
        Dict with ``log_density_condition1``, ``log_density_condition2``, ``log_fold_change``,
        ``log_fold_change_uncertainty`` (variance), ``log_fold_change_zscore``,
        ``neg_log10_fold_change_ptp`` (``-log10`` of the one-sided posterior tail probability
        ``Phi(-|z|)``) and ``log_fold_change_direction``; also stored as attributes.
        """
        if self.density_predictor1 is None or self.density_predictor2 is None:
            raise ValueError("Model not fitted. Call fit() first.")
        n_features = getattr(self.density_predictor1, "n_input_features", None)
        X_new = check_cells(X_new, "X_new", n_features=n_features, min_cells=1)
        lfc_t = self.log_fold_change_threshold if log_fold_change_threshold is None else log_fold_change_threshold
        ptp_t = self.ptp_threshold if ptp_threshold is None else ptp_threshold
        # the densities on parts of the cells, and the log ratio (fewer landmarks), on threads
        p1, p2 = self.density_predictor1, self.density_predictor2
        parts = _cell_parts(X_new.shape[0])
        bar = tqdm(total=len(parts), disable=not progress or len(parts) < 2, desc="log densities")

        def densities(part: slice) -> list[tuple[np.ndarray, np.ndarray]]:
            out = _densities_and_variances(p1, p2, X_new[part], False)
            bar.update()
            return out

        tasks = [lambda part=part: densities(part) for part in parts]
        if self.ratio_predictor is not None:
            tasks.append(lambda: self.ratio_predictor.predict(X_new, progress=False))
        with bar:
            done = thread_map(_call, tasks, resolve_n_jobs(self.n_jobs))
        (ld1, var1), (ld2, var2) = (
            [np.concatenate([d[j][k] for d in done[: len(parts)]]) for k in range(2)] for j in range(2)
        )
        self.log_density_uncertainty_condition1, self.log_density_uncertainty_condition2 = var1, var2
        lfc, variance = done[-1] if self.ratio_predictor is not None else (ld2 - ld1, var1 + var2)
        if self.use_sample_variance:
            if self.variance_predictor1 is not None:
                variance = variance + np.ravel(self.variance_predictor1(X_new, diag=True))
            if self.variance_predictor2 is not None:
                variance = variance + np.ravel(self.variance_predictor2(X_new, diag=True))
        z = lfc / np.sqrt(variance + self.eps)
        neg_log10_ptp = -log_ndtr(-np.abs(z)) / np.log(10)  # the normal tail (as norm.logcdf)
        result = {
            "log_density_condition1": ld1,
            "log_density_condition2": ld2,
            "log_fold_change": lfc,
            "log_fold_change_uncertainty": variance,
            "log_fold_change_zscore": z,
            "neg_log10_fold_change_ptp": neg_log10_ptp,
            "log_fold_change_direction": direction_calls(lfc, neg_log10_ptp, lfc_t, ptp_t),
        }
        for key, value in result.items():
            setattr(self, key, value)
        return result


def _call(task: Callable[[], Any]) -> Any:
    return task()


#: Cells per part of :meth:`DifferentialAbundance.predict`'s density evaluation (parts go to threads; a
#: multiple of 256, so each is whole padded batches; fixed, so that results do not depend on ``n_jobs``).
PART_CELLS = 1024


def _cell_parts(n_cells: int) -> list[slice]:
    """Contiguous parts of :data:`PART_CELLS` cells (the last one shorter)."""
    return [slice(start, min(start + PART_CELLS, n_cells)) for start in range(0, n_cells, PART_CELLS)]


def _densities_and_variances(p1: Any, p2: Any, x: np.ndarray, progress: bool) -> list[tuple[np.ndarray, np.ndarray]]:
    """Both conditions' normalised log densities and variances; one kernel pass when they share a design."""
    if isinstance(p1, DensityPredictor) and p1.shares_design(p2):
        return predict_density_pair(p1, p2, x, progress=progress)
    return [_density_and_variance(p, x, progress) for p in (p1, p2)]


def _density_and_variance(predictor: Any, x: np.ndarray, progress: bool) -> tuple[np.ndarray, np.ndarray]:
    if hasattr(predictor, "predict_all"):
        return predictor.predict_all(x, normalize=True, progress=progress)
    return np.asarray(predictor(x, normalize=True)), np.asarray(predictor.uncertainty(x))
