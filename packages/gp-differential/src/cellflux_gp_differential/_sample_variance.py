"""Between-sample (replicate) variance of expression or log density, from one GP per sample."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from ._density import DensityPredictor, fit_density
from ._jax import DEFAULT_JITTER
from ._params import (
    default_length_scale,
    fractal_dimension,
    landmarks_kmeans,
    mellon_length_scale,
    nn_distances,
    prior_mean,
)
from ._regression import RegressionPredictor, fit_regression, landmark_design
from ._validate import check_cells, check_expression, check_groups, replicate_samples

__all__ = ["SampleVarianceEstimator"]


#: Largest full (points x points x genes) covariance :meth:`SampleVarianceEstimator.predict` will build.
MAX_FULL_COVARIANCE_BYTES = 2 * 1024**3


class SampleVarianceEstimator:
    """Local variance between samples (replicates): one GP per sample, Bessel-corrected variance.

    Parameters
    ----------
    eps
        Small constant for numerical stability.
    jit_compile
        Kept for kompot compatibility; the engine is always compiled.
    estimator_type
        ``"function"`` (expression; fit with ``Y``) or ``"density"`` (log density).
    store_arrays_on_disk, disk_storage_dir
        Kept for kompot compatibility; not needed, since the full covariance is never materialised
        (see :meth:`factors`).

    Attributes
    ----------
    group_predictors
        Sample label to its fitted predictor.
    n_groups
        Number of samples with enough cells.
    """

    def __init__(
        self,
        eps: float = 1e-8,
        jit_compile: bool = True,
        estimator_type: Literal["function", "density"] = "function",
        store_arrays_on_disk: bool | None = None,
        disk_storage_dir: str | None = None,
    ) -> None:
        if estimator_type not in ("function", "density"):
            raise ValueError(f"estimator_type must be 'function' or 'density', got {estimator_type!r}.")
        self.eps = eps
        self.jit_compile = jit_compile
        self.estimator_type = estimator_type
        self.store_arrays_on_disk = store_arrays_on_disk
        self.disk_storage_dir = disk_storage_dir
        self.group_predictors: dict[Any, DensityPredictor | RegressionPredictor] = {}
        self.group_indices: dict[Any, np.ndarray] = {}
        self.n_groups = 0

    def fit(
        self,
        X: np.ndarray,
        Y=None,
        grouping_vector=None,
        min_cells: int = 2,
        ls_factor: float | None = None,
        estimator_kwargs: dict[str, Any] | None = None,
    ) -> SampleVarianceEstimator:
        """Fit one GP per sample.

        Parameters
        ----------
        X
            ``(n_cells, n_features)`` cell states.
        Y
            ``(n_cells, n_genes)`` expression (``estimator_type="function"`` only).
        grouping_vector
            Sample label of every cell.
        min_cells
            Samples with fewer cells are skipped (with a warning).
        ls_factor
            Without ``ls`` in ``estimator_kwargs``: use mellon's length scale times this factor
            (``None``: the data-driven default of :func:`~cellflux_gp_differential._params.default_length_scale`).
        estimator_kwargs
            ``landmarks``, ``ls``, ``sigma`` (function), ``d``, ``n_neighbors`` (density), ``jitter``, ``n_landmarks``.

        Returns
        -------
        ``self``.

        Raises
        ------
        ValueError
            Fewer than two samples with at least ``min_cells`` cells.
        """
        kwargs = dict(estimator_kwargs or {})
        X = check_cells(X, "X", min_cells=2)
        if grouping_vector is None:
            raise ValueError("grouping_vector (the sample of every cell) is required.")
        groups = check_groups(grouping_vector, X.shape[0], "grouping_vector")
        if self.estimator_type == "function":
            if Y is None:
                raise ValueError("Y (expression) must be provided for estimator_type='function'.")
            Y = check_expression(Y, "Y", X.shape[0])
        valid = replicate_samples(groups, max(min_cells, 2))
        landmarks = kwargs.get("landmarks")
        if landmarks is None:
            landmarks = landmarks_kmeans(X, min(int(kwargs.get("n_landmarks") or 1000), X.shape[0]), 0)
        ls = kwargs.get("ls")
        if ls is None:
            ls = mellon_length_scale(nn_distances(X)) * ls_factor if ls_factor else default_length_scale(X)
        jitter = kwargs.get("jitter", DEFAULT_JITTER)
        self.landmarks, self.ls = np.asarray(landmarks, dtype=np.float64), float(ls)
        design = landmark_design(self.landmarks, self.ls, jitter) if self.estimator_type == "function" else None
        d = kwargs.get("d")  # density: None means each sample's own fractal dimension (as kompot)
        self.group_predictors, self.group_indices = {}, {}
        for g in valid:
            idx = np.flatnonzero(groups == g)
            self.group_indices[g] = idx
            if self.estimator_type == "function":
                self.group_predictors[g] = fit_regression(X[idx], Y[idx], design, sigma=kwargs.get("sigma", 1.0))
            else:
                k = min(int(kwargs.get("n_neighbors", 1)), len(idx) - 1)
                nn = nn_distances(X[idx], k)
                d_g = float(d) if d is not None else fractal_dimension(X[idx])
                self.group_predictors[g] = fit_density(
                    X[idx],
                    self.landmarks,
                    ls=self.ls,
                    d=d_g,
                    mu=prior_mean(nn, d_g, k),
                    nn=nn,
                    n_neighbors=k,
                    jitter=jitter,
                )
        self.n_groups = len(valid)
        return self

    def _predictions(self, X_new: np.ndarray, genes: np.ndarray | None = None) -> np.ndarray:
        """``(n_groups, n_points, n_outputs)`` predictions of every sample's GP."""
        if not self.group_predictors:
            raise ValueError("SampleVarianceEstimator is not fitted; call fit() first.")
        out = []
        for predictor in self.group_predictors.values():
            if isinstance(predictor, DensityPredictor):
                out.append(predictor(X_new, normalize=True)[:, None])
            elif genes is None:
                out.append(predictor(X_new))
            else:
                from ._jax import matern52

                K = np.asarray(matern52(np.asarray(X_new, dtype=np.float64), predictor.landmarks, predictor.ls))
                out.append(K @ predictor.weights[:, genes])
        return np.stack(out)

    def factors(self, X_new: np.ndarray, genes: np.ndarray | None = None) -> np.ndarray:
        """``(n_genes, n_points, n_groups)`` factors ``F`` with ``F_g F_g^T`` the sample covariance of gene ``g``.

        The covariance of gene ``g`` between points is never formed; pass genes in batches to bound memory.
        """
        p = self._predictions(np.asarray(X_new, dtype=np.float64), genes)
        centred = (p - p.mean(axis=0, keepdims=True)) / np.sqrt(self.n_groups - 1)
        return np.transpose(centred, (2, 1, 0))

    def predict(self, X_new: np.ndarray, diag: bool = False, progress: bool = True) -> np.ndarray:
        """Between-sample variance (``diag=True``, ``(n_points, n_outputs)``) or covariance.

        Parameters
        ----------
        X_new
            ``(n_points, n_features)``.
        diag
            Per-point variances; otherwise the full ``(n_points, n_points, n_outputs)`` covariance, refused
            above 2 GiB (use :meth:`factors` in gene batches instead).
        progress
            Unused; kept for kompot compatibility.

        Returns
        -------
        Bessel-corrected variances or covariances.
        """
        X_new = np.asarray(X_new, dtype=np.float64)
        p = self._predictions(X_new)
        if diag:
            return p.var(axis=0, ddof=1)
        n, g = p.shape[1], p.shape[2]
        if 8.0 * n * n * g > MAX_FULL_COVARIANCE_BYTES:
            raise MemoryError(
                f"A full {n} x {n} x {g} covariance needs {8.0 * n * n * g / 1024**3:.1f} GiB; use diag=True or "
                "factors(X_new, genes) in gene batches."
            )
        f = self.factors(X_new)
        return np.einsum("gis,gjs->ijg", f, f)
