"""One condition's expression model: a multi-gene GP with observation and sample variance."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ._jax import DEFAULT_JITTER
from ._params import default_length_scale, landmarks_kmeans, mellon_length_scale, nn_distances
from ._regression import Design, RegressionPredictor, check_precision, fit_regression, landmark_design, smooth_with
from ._sample_variance import SampleVarianceEstimator
from ._validate import (
    check_cells,
    check_expression,
    check_groups,
    check_landmarks,
    check_n_landmarks,
    check_positive,
)

__all__ = [
    "DEFAULT_N_LANDMARKS",
    "EXPRESSION_LS_FACTOR",
    "ExpressionModel",
    "expression_length_scale",
    "resolve_length_scale",
]

logger = logging.getLogger(__name__)

#: Landmarks used when ``n_landmarks`` is ``None`` (capped at the number of cells).
DEFAULT_N_LANDMARKS = 1000

#: Default length scale of the expression GPs: this many times
#: :func:`~cellflux_gp_differential._params.default_length_scale` (i.e. 3 median pairwise distances).
EXPRESSION_LS_FACTOR = 15.0


def expression_length_scale(x: np.ndarray) -> float:
    """Default length scale of the expression GPs: :data:`EXPRESSION_LS_FACTOR` x ``default_length_scale(x)``.

    Three median pairwise distances between cells. Expression is smoothed, and condition differences are
    tested, at the scale of cell-state regions rather than of neighbourhoods: at the density length scale
    (``0.2`` median pairwise distances) a Gaussian process on 20 principal components barely pools cells
    (the nearest-neighbour distance exceeds it; the smoother's effective number of parameters is a quarter
    of the cells), so fold changes are mostly noise. Measured on the simulator with planted DE genes
    (``benchmarks/results/de_accuracy.json``), the planted genes' AUROC rose from about 0.5-0.75 to 0.93-1.0
    on both PCA and diffusion components (kompot's rule, ``ls_factor=10``: 0.71-0.85 on PCA). The type-II
    maximum-likelihood length scale pooled over genes (profiling each gene's scale) was a quarter to a
    half of this one on the same data (2,000 cells, seeds 0 and 1), with AUROC 0.87-0.96 on PCA and
    0.88/0.997 on diffusion components.
    """
    return EXPRESSION_LS_FACTOR * default_length_scale(x)


def resolve_length_scale(x: np.ndarray, ls: float | None, ls_factor: float | None) -> float:
    """``ls`` if given; else mellon's length scale times ``ls_factor`` (kompot's rule); else the default.

    The default is :func:`expression_length_scale`.
    """
    if ls is not None:
        return check_positive(ls, "ls")
    if ls_factor is not None:
        return mellon_length_scale(nn_distances(x)) * check_positive(ls_factor, "ls_factor")
    return expression_length_scale(x)


class ExpressionModel:
    """Smoothed expression of all genes in one condition, with its uncertainty.

    The GP is mellon's landmark :class:`~mellon.FunctionEstimator` (Matérn-5/2, noise ``sigma``) solved
    for all genes with one factorisation. The variance of the smoothed expression at a point is the sum
    of the GP posterior variance (:meth:`covariance`), the smoothed observation noise
    (:meth:`obs_variance`, with ``use_empirical_variance``) and the between-sample variance
    (:meth:`sample_variance`, with sample indices).

    Parameters
    ----------
    n_landmarks
        Landmarks (k-means of the cells); ``None``: ``min(1000, cells)``. Ignored when ``fit`` gets landmarks.
    use_empirical_variance
        Estimate a per-gene, per-position observation variance from leave-one-out residuals.
    eps
        Added before square roots.
    random_state
        Seed of the landmark k-means.
    batch_size
        Points per prediction batch.
    function_predictor, obs_variance_predictor, variance_predictor
        Pre-fitted predictors (e.g. mellon's) to use instead of fitting.
    precision
        ``"mixed"`` (default): the products with the genes (``n x landmarks x genes`` flops, most of the
        work) in single precision, in a basis where that is well conditioned -- smoothed expression within
        6e-6 of its largest value of ``"double"``, which computes everything in double precision (see
        :mod:`cellflux_gp_differential._regression`).
    """

    def __init__(
        self,
        n_landmarks: int | None = None,
        use_empirical_variance: bool = False,
        eps: float = 1e-8,
        random_state: int | None = None,
        batch_size: int = 500,
        function_predictor: Any = None,
        obs_variance_predictor: Any = None,
        variance_predictor: Any = None,
        precision: str = "mixed",
    ) -> None:
        check_precision(precision)
        self.precision = precision
        self.n_landmarks = n_landmarks
        self.use_empirical_variance = use_empirical_variance
        self.eps = eps
        self.random_state = random_state
        self.batch_size = batch_size
        self._predictor = function_predictor
        self._obs_variance_predictor = obs_variance_predictor
        self._sample_variance_predictor = variance_predictor
        self._sample_variance_estimator: SampleVarianceEstimator | None = None
        self._sigma: float | None = None
        self._design: Design | None = None

    def fit(
        self,
        X: np.ndarray,
        y,
        sigma: float = 1.0,
        ls: float | None = None,
        ls_factor: float | None = None,
        landmarks: np.ndarray | None = None,
        sample_indices: np.ndarray | None = None,
        sample_estimator_ls: float | None = None,
        allow_single_condition_variance: bool = False,
        design: Design | None = None,
        jitter: float = DEFAULT_JITTER,
        whitened: np.ndarray | None = None,
    ) -> ExpressionModel:
        """Fit the expression GP of one condition.

        Parameters
        ----------
        X
            ``(n_cells, n_features)`` cell states.
        y
            ``(n_cells, n_genes)`` expression (dense or sparse).
        sigma
            Noise standard deviation.
        ls
            Length scale; ``None``: see ``ls_factor``.
        ls_factor
            ``None`` (default): :func:`expression_length_scale`; a number: mellon's length scale times it
            (kompot's rule, kompot uses 10).
        landmarks
            ``(m, n_features)`` inducing points (e.g. shared across conditions).
        sample_indices
            Sample label of every cell; turns on the between-sample variance.
        sample_estimator_ls
            Length scale of the per-sample GPs (default: ``ls``).
        allow_single_condition_variance
            Do not raise when the sample variance cannot be estimated (fewer than two samples).
        design
            A precomputed landmark factorisation (shared across conditions); overrides ``landmarks``/``ls``.
        jitter
            Diagonal jitter of the landmark kernel matrix.
        whitened
            With ``design``: the cells' whitened cross-kernel ``whiten(design, X)``, if already computed.

        Returns
        -------
        ``self``.
        """
        X = check_cells(X, "X")
        y = check_expression(y, "y", X.shape[0])
        self._sigma = check_positive(sigma, "sigma")
        shared = design is not None  # ``whitened`` belongs to the caller's design
        if design is None:
            if landmarks is None:
                check_n_landmarks(self.n_landmarks, X.shape[0])
                landmarks = landmarks_kmeans(
                    X, self.n_landmarks or min(DEFAULT_N_LANDMARKS, X.shape[0]), self.random_state
                )
            else:
                landmarks = check_landmarks(landmarks, X.shape[1])
            design = landmark_design(landmarks, resolve_length_scale(X, ls, ls_factor), jitter)
        self._design = design
        per_sample_noise = self.use_empirical_variance and sample_indices is not None
        self._predictor = fit_regression(
            X,
            y,
            design,
            sigma=sigma,
            obs_variance=self.use_empirical_variance and not per_sample_noise,
            batch_size=self.batch_size,
            precision=self.precision,
            whitened=whitened if shared else None,
        )
        if self.use_empirical_variance and not per_sample_noise:
            self._obs_variance_predictor = self._predictor.obs_variance
        if sample_indices is not None:
            groups = check_groups(sample_indices, X.shape[0], "sample_indices")
            sample_design = (
                design
                if sample_estimator_ls is None
                else landmark_design(design.landmarks, sample_estimator_ls, jitter)
            )
            estimator = SampleVarianceEstimator(eps=self.eps, estimator_type="function")
            try:
                estimator.fit(
                    X,
                    y,
                    grouping_vector=groups,
                    estimator_kwargs={"landmarks": design.landmarks, "ls": sample_design.ls, "sigma": sigma},
                )
            except ValueError:
                if not allow_single_condition_variance:
                    raise
                logger.info("No sample variance for this condition (fewer than two samples).")
                estimator = None
            self._sample_variance_estimator = estimator
            self._sample_variance_predictor = estimator.predict if estimator is not None else None
            if per_sample_noise:
                self._fit_within_sample_noise(X, y, groups, estimator)
        return self

    def _fit_within_sample_noise(self, X, y, groups, estimator) -> None:
        """Pool the LOO squared residuals of per-sample GPs and smooth them (no between-sample variance)."""
        r2 = np.empty(y.shape)
        for g in np.unique(groups):
            idx = np.flatnonzero(groups == g)
            if estimator is not None and g in estimator.group_predictors:
                predictor = estimator.group_predictors[g]
            else:
                predictor = fit_regression(X[idx], y[idx], self._design, sigma=self._sigma, precision=self.precision)
            r2[idx] = predictor.loo_residuals_squared(X[idx], y[idx])
        self._predictor.variance_coef = smooth_with(self._predictor, X, r2)
        self._obs_variance_predictor = self._predictor.obs_variance

    @property
    def predictor(self) -> Any:
        """The fitted mean predictor (a :class:`~cellflux_gp_differential._regression.RegressionPredictor`)."""
        return self._predictor

    def _require(self) -> None:
        if self._predictor is None:
            raise ValueError("Model not fitted. Call fit() first.")

    def predict(self, X: np.ndarray, batch_size: int | None = None, progress: bool = True) -> np.ndarray:
        """Smoothed expression ``(n_points, n_genes)``."""
        self._require()
        if isinstance(self._predictor, RegressionPredictor):
            return self._predictor.mean(X, progress=progress)
        return np.asarray(self._predictor(X))

    def covariance(
        self, X: np.ndarray, diag: bool = True, batch_size: int | None = None, progress: bool = True
    ) -> np.ndarray:
        """GP posterior variance ``(n_points,)`` (gene independent) or covariance ``(n_points, n_points)``."""
        self._require()
        return np.asarray(self._predictor.covariance(X, diag=diag))

    @property
    def has_empirical_variance(self) -> bool:
        """Whether an observation-variance predictor is available."""
        return self.use_empirical_variance and self._obs_variance_predictor is not None

    def noise_variance(self) -> np.ndarray | None:
        """Per-gene noise variance ``(n_genes,)`` of the fit (residual variance), or ``None`` for external predictors.

        See :meth:`~cellflux_gp_differential._regression.RegressionPredictor.noise_variance`.
        """
        if isinstance(self._predictor, RegressionPredictor) and self._predictor.residual_ss is not None:
            return self._predictor.noise_variance()
        return None

    @property
    def has_sample_variance(self) -> bool:
        """Whether a sample-variance predictor is available."""
        return self._sample_variance_predictor is not None

    def obs_variance(self, X: np.ndarray, batch_size: int | None = None, progress: bool = True) -> np.ndarray | float:
        """Smoothed observation variance ``(n_points, n_genes)`` (at least ``eps``), or ``0`` without it."""
        if not self.has_empirical_variance:
            return 0
        return np.maximum(np.asarray(self._obs_variance_predictor(X)), self.eps)

    def sample_variance(self, X: np.ndarray, diag: bool = True, batch_size: int | None = None, progress: bool = True):
        """Between-sample variance ``(n_points, n_genes)``, or ``0`` without sample indices."""
        if not self.has_sample_variance:
            return 0
        return self._sample_variance_predictor(X, diag=diag)

    def sample_variance_factors(self, X: np.ndarray, genes: np.ndarray) -> np.ndarray | None:
        """``(len(genes), n_points, n_samples)`` factors of the sample covariance, or ``None``."""
        if self._sample_variance_estimator is None:
            return None
        return self._sample_variance_estimator.factors(X, genes)

    def total_variance(
        self, X: np.ndarray, diag: bool = True, batch_size: int | None = None, progress: bool = True
    ) -> np.ndarray:
        """GP posterior + observation + sample variance, ``(n_points, n_genes)``."""
        cov = self.covariance(X, diag=True)
        if cov.ndim == 1:
            cov = cov[:, None]
        return cov + self.obs_variance(X) + self.sample_variance(X, diag=True)

    def std(self, X: np.ndarray, batch_size: int | None = None, progress: bool = True) -> np.ndarray:
        """Square root of :meth:`total_variance` plus ``eps``."""
        return np.sqrt(self.total_variance(X) + self.eps)

    @property
    def landmarks(self) -> np.ndarray | None:
        """The landmarks of the GP."""
        return getattr(self._predictor, "landmarks", None)

    @property
    def ls(self) -> float | None:
        """The length scale of the GP."""
        if self._design is not None:
            return self._design.ls
        cov = getattr(self._predictor, "cov_func", None)
        return getattr(cov, "ls", None)

    @property
    def sigma(self) -> float | None:
        """The noise standard deviation."""
        return self._sigma
