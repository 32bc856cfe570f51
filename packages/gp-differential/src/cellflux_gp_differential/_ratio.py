"""Log density ratio of two conditions, estimated directly: Gaussian-process probabilistic classification.

The log fold change of differential abundance is ``g(x) = log p2(x) - log p1(x)`` (densities normalised
by their cell counts). By Bayes' rule the probability that a cell at ``x`` comes from condition 2 is
``sigmoid(g(x) + log(n2 / n1))``, so ``g`` is the latent function of a logistic Gaussian-process
classifier of the pooled cells' condition labels with the fixed offset ``log(n2 / n1)``. Fitting ``g``
directly, instead of subtracting two independently fitted log densities, lets the noise of each density
estimate cancel where the conditions overlap; it is the GP analogue of the k-nearest-neighbour label
fraction (a classifier estimate of the density ratio).

Model: ``g = s L z`` with ``L = K_xu Lp^{-T}`` on the landmarks ``u`` (as in :mod:`._density`), prior
standard deviation ``s`` of the log fold change, ``z ~ N(0, I)``, Bernoulli likelihood of the labels.
The posterior mode comes from L-BFGS-B on a jitted loss; the uncertainty is the full Laplace posterior
covariance ``A^{-1}``, ``A = I + s^2 L^T W L`` with ``W = diag(p (1 - p))``, plus the prior variance that
the landmarks do not explain.

The fit also returns the Laplace approximation of the log marginal likelihood (evidence) of the labels,
``log Z ~= log p(y | g_hat) - |z_hat|^2 / 2 - log det(A) / 2``, at no extra cost (``A`` is factorised for
the covariance anyway); :mod:`._ratio_evidence` uses it to choose the length scale per data set.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from . import _blas
from ._batching import map_batches
from ._density import _design
from ._jax import DEFAULT_JITTER, as_f64, bucket, jax, jnp, matern52, on_device, pad_rows
from ._regression import _gram_upper, _lower_times, upper_cholesky_in_place

__all__ = ["RatioPredictor", "fit_log_ratio"]

logger = logging.getLogger(__name__)


@jax.jit
def _loss_and_grad(z, L, labels, mask, offset, scale):
    def loss(z):
        f = scale * (L @ z) + offset
        return 0.5 * z @ z - jnp.sum(mask * (labels * f - jnp.logaddexp(0.0, f)))

    return jax.value_and_grad(loss)(z)


@jax.jit
def _curvature(z, L, mask, offset, scale):
    p = jax.nn.sigmoid(scale * (L @ z) + offset)
    return mask * p * (1.0 - p)


def _predict_batch(xb, u, weights, Linv, M, ls, scale):
    """Posterior mean and variance of the log ratio at ``xb``.

    ``Lp^{-1} K`` and ``M K`` by triangular products (``M = C^{-1} Lp^{-1}`` is lower triangular), half
    the flops of dense ones.
    """
    K = np.asarray(matern52(u, xb, ls))
    a, b = _lower_times(Linv, K), _lower_times(M, K)
    variance = scale * scale * (1.0 - np.einsum("ij,ij->j", a, a) + np.einsum("ij,ij->j", b, b))
    return K.T @ weights, np.maximum(variance, 0.0)


@dataclass
class RatioPredictor:
    """A fitted log density ratio ``log p2(x) - log p1(x)`` with its Laplace posterior variance.

    Attributes
    ----------
    landmarks
        ``(m, n_features)`` inducing points.
    weights
        ``(m,)`` with ``log ratio(x) = k(x, landmarks) @ weights``.
    Linv
        Inverse of the Cholesky factor of the landmark kernel matrix.
    M
        ``C^{-1} Linv`` with ``C C^T = A`` (Laplace precision of the latent ``z``).
    ls, scale
        Length scale and prior standard deviation of the log ratio.
    batch_size
        Rows per prediction batch.
    log_evidence
        Laplace approximation of the log marginal likelihood of the condition labels.
    z
        Posterior mode of the whitened latent (a warm start for a fit at a nearby length scale).
    """

    landmarks: np.ndarray
    weights: np.ndarray
    Linv: np.ndarray
    M: np.ndarray
    ls: float
    scale: float
    batch_size: int | None = None
    log_evidence: float = float("nan")
    z: np.ndarray | None = None

    def predict(self, x: np.ndarray, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and variance of the log density ratio at ``x``."""
        x = as_f64(x)
        if x.ndim != 2 or x.shape[1] != self.landmarks.shape[1]:
            raise ValueError(f"Expected points with {self.landmarks.shape[1]} features, got shape {x.shape}.")
        u, w, Linv, M, ls, s = self.landmarks, self.weights, self.Linv, self.M, self.ls, self.scale
        return map_batches(
            lambda xb: _predict_batch(xb, u, w, Linv, M, ls, s),
            x,
            batch_size=self.batch_size,
            progress=progress,
            desc="log density ratio",
        )


def fit_log_ratio(
    x1: np.ndarray,
    x2: np.ndarray,
    landmarks: np.ndarray,
    *,
    ls: float,
    scale: float,
    jitter: float = DEFAULT_JITTER,
    batch_size: int | None = None,
    max_iter: int = 5000,
    z0: np.ndarray | None = None,
) -> RatioPredictor:
    """Fit the log density ratio of the cells ``x2`` over the cells ``x1`` (see the module docstring).

    Parameters
    ----------
    x1, x2
        ``(n1, n_features)`` and ``(n2, n_features)`` cell states of the two conditions.
    landmarks
        ``(m, n_features)`` inducing points.
    ls
        Length scale of the Matérn-5/2 kernel.
    scale
        Prior standard deviation of the log ratio (smaller: stronger shrinkage towards no change).
    jitter
        Diagonal jitter of the landmark kernel matrix.
    batch_size
        Rows per prediction batch of the returned predictor.
    max_iter
        Maximum L-BFGS-B iterations.
    z0
        ``(m,)`` starting point of the optimisation (default zeros).

    Returns
    -------
    The fitted :class:`RatioPredictor` (with its ``log_evidence``).
    """
    if scale <= 0:
        raise ValueError(f"The prior scale of the log ratio must be positive, got {scale}.")
    x1, x2, u = as_f64(x1), as_f64(x2), as_f64(landmarks)
    n1, n2 = len(x1), len(x2)
    n = n1 + n2
    n_pad = bucket(n)
    labels = pad_rows(np.r_[np.zeros(n1), np.ones(n2)], n_pad)
    mask = pad_rows(np.ones(n), n_pad)
    offset = float(np.log(n2 / n1))
    Linv, L = _design(pad_rows(np.vstack([x1, x2]), n_pad), u, ls, jitter)
    L_jax, labels, mask = (on_device(a) for a in (L, labels, mask))  # not copied again at every evaluation

    def fun(z: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad = _loss_and_grad(z, L_jax, labels, mask, offset, scale)
        return float(value), np.asarray(grad, dtype=np.float64)

    if z0 is None:
        z0 = np.zeros(L.shape[1])
    elif np.shape(z0) != (L.shape[1],):
        raise ValueError(f"z0 must have shape ({L.shape[1]},), got {np.shape(z0)}.")
    result = minimize(
        fun,
        np.asarray(z0, dtype=np.float64),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": max_iter, "maxfun": 2 * max_iter},
    )
    if not result.success:
        logger.warning("Log-ratio optimisation stopped early: %s", result.message)
    z = result.x
    w = np.asarray(_curvature(z, L_jax, mask, offset, scale))
    # A = I + scale^2 L^T diag(w) L = U^T U: the upper triangle by syrk (half the flops of the dense
    # product), factorised in place; SciPy's LAPACK without the GIL (:mod:`._blas`), so that fits on
    # other threads run meanwhile
    U = upper_cholesky_in_place(
        _gram_upper(L * (scale * np.sqrt(w))[:, None], transpose=True), 1.0, "Laplace precision of the log ratio"
    )
    # M = C^{-1} Lp^{-1} with C = U^T (A = C C^T): lower triangular, as a product of lower triangulars
    M = np.tril(_blas.trsm(U, np.array(Linv, order="F"), lower=False, trans=True))
    # Laplace evidence: -loss(z_hat) - log det(A) / 2, with log det(A) = 2 sum log diag(U)
    log_evidence = -float(result.fun) - float(np.sum(np.log(np.diag(U))))
    return RatioPredictor(
        landmarks=u,
        weights=scale * (Linv.T @ z),
        Linv=Linv,
        M=M,
        ls=float(ls),
        scale=float(scale),
        batch_size=batch_size,
        log_evidence=log_evidence,
        z=np.asarray(z, dtype=np.float64),
    )
