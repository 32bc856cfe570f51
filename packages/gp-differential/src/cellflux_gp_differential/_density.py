"""Log-density of one cell population: mellon's Gaussian-process density model, solved fast.

The model is mellon's :class:`~mellon.DensityEstimator` with fixed landmarks (``gp_type="fixed"``): the
log density is ``f = mu + L z`` with ``L = K_xu Lp^{-T}``, ``Lp Lp^T = K_uu + jitter I`` on the
landmarks ``u``, a standard normal prior on ``z`` and the nearest-neighbour likelihood
``sum_i [log d + (d - 1) log r_i + c + f_i - exp(f_i + d log r_i + c)]``. The posterior mode is found
with L-BFGS-B on a jitted loss/gradient (cells padded to a bucketed count, so that the loss compiles
once for both conditions), and its diagonal Laplace standard deviations come in closed form,
``1 / sqrt(1 + sum_i L_ij^2 exp(f_i + V_i))`` (mellon differentiates the loss twice per latent instead).
With all cells as landmarks this is mellon's full GP.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import gammaln

from ._batching import map_batches
from ._jax import DEFAULT_JITTER, aligned_empty, as_f64, bucket, jax, jnp, matern52, on_device, pad_rows
from ._regression import _lower_inverse, _lower_times

__all__ = ["DensityPredictor", "design_inverse", "fit_density", "predict_density_pair"]

logger = logging.getLogger(__name__)


def design_inverse(u: np.ndarray, ls: float, jitter: float) -> np.ndarray:
    """``Lp^{-1}``, the inverse of the Cholesky factor of the landmark kernel matrix (``trtri``).

    A third of the flops of solving ``Lp X = I``. Densities on the same landmarks, length scale and
    jitter share it.
    """
    Kuu = np.asarray(matern52(u, u, ls))
    return _lower_inverse(np.linalg.cholesky(Kuu + jitter * np.eye(len(u))))


def _design(
    x: np.ndarray, u: np.ndarray, ls: float, jitter: float, Linv: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``Lp^{-1}`` (:func:`design_inverse`, unless given) and ``L = K_xu Lp^{-T}``.

    ``L`` by a triangular product with ``Lp^{-1}`` (``trmm``, the flops of the solve it replaces), in
    place in one row-major, 64-byte aligned buffer (the kernel's one copy), which :func:`on_device`
    hands to JAX without another.
    """
    if Linv is None:
        Linv = design_inverse(u, ls, jitter)
    K = np.asarray(matern52(u, x, ls))  # (m, n): the orientation of predict's kernels (one compilation)
    L = aligned_empty(K.shape[::-1])
    L[...] = K.T
    del K
    _lower_times(Linv, L.T, overwrite=True)  # L^T = Lp^{-1} K_ux, column-major: L row-major
    return Linv, L


@jax.jit
def _loss_and_grad(z, L, mask, V, Vdr, mu, k):
    def loss(z):
        f = L @ z + mu
        return 0.5 * z @ z - jnp.sum(mask * (k * f + Vdr)) + jnp.sum(mask * jnp.exp(f + V))

    return jax.value_and_grad(loss)(z)


@jax.jit
def _laplace_std(z, L, mask, V, mu):
    w = mask * jnp.exp(L @ z + mu + V)
    return 1.0 / jnp.sqrt(1.0 + w @ (L * L))


def _predict_batch(xb, u, weights, Linv, std2, ls):
    """Latent mean, conditional variance and Laplace variance at ``xb``; ``weights``/``std2`` may be stacked.

    ``a = Lp^{-1} K`` by a triangular product (``trmm``: half the flops of a dense one). With ``(m, c)``
    ``weights`` and ``(c, m)`` ``std2`` (``c`` densities on the same landmarks, length scale and jitter)
    the kernel and ``a`` are computed once for all of them.
    """
    K = np.asarray(matern52(u, xb, ls))
    a2 = _lower_times(Linv, K) ** 2
    return K.T @ weights, 1.0 - a2.sum(axis=0), (std2 @ a2).T


@dataclass
class DensityPredictor:
    """A fitted log-density function; mirrors the parts of :class:`mellon.Predictor` kompot uses.

    Attributes
    ----------
    landmarks
        ``(m, n_features)`` inducing points.
    weights
        ``(m,)`` with ``log density(x) = mu + k(x, landmarks) @ weights``.
    Linv
        Inverse of the Cholesky factor of the landmark kernel matrix.
    std
        Laplace standard deviations of the latent ``z``.
    mu, ls, d, jitter
        Prior mean, length scale, intrinsic dimension, diagonal jitter.
    n_obs
        Cells the density was fitted on (``normalize=True`` subtracts ``log(n_obs)``).
    batch_size
        Rows per prediction batch.
    """

    landmarks: np.ndarray
    weights: np.ndarray
    Linv: np.ndarray
    std: np.ndarray
    mu: float
    ls: float
    d: float
    jitter: float
    n_obs: int
    batch_size: int | None = None

    @property
    def n_input_features(self) -> int:
        """Number of features of the cell-state representation."""
        return self.landmarks.shape[1]

    def _check(self, x: np.ndarray) -> np.ndarray:
        x = as_f64(x)
        if x.ndim != 2 or x.shape[1] != self.n_input_features:
            raise ValueError(f"Expected points with {self.n_input_features} features, got shape {x.shape}.")
        return x

    def shares_design(self, other: object) -> bool:
        """Whether ``other`` is a density on the same landmarks, length scale and jitter (same ``Lp``)."""
        return (
            isinstance(other, DensityPredictor)
            and other.ls == self.ls
            and other.jitter == self.jitter
            and other.landmarks.shape == self.landmarks.shape
            and np.array_equal(other.landmarks, self.landmarks)
            and np.array_equal(other.Linv, self.Linv)
        )

    def _all(self, x: np.ndarray, progress: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = self._check(x)
        u, w, Linv, s2, ls = self.landmarks, self.weights, self.Linv, self.std**2, self.ls
        return map_batches(
            lambda xb: _predict_batch(xb, u, w, Linv, s2, ls),
            x,
            batch_size=self.batch_size,
            progress=progress,
            desc="log density",
        )

    def mean(self, x: np.ndarray, normalize: bool = False) -> np.ndarray:
        """Log density at ``x`` (minus ``log(n_obs)`` with ``normalize=True``)."""
        mean = self._all(x)[0] + self.mu
        return mean - np.log(self.n_obs) if normalize else mean

    __call__ = mean

    def covariance(self, x: np.ndarray, diag: bool = True) -> np.ndarray:
        """Conditional (compression) variance of the GP at ``x``; only ``diag=True`` is supported."""
        if not diag:
            raise NotImplementedError("Only diagonal density covariances are available (diag=True).")
        return self._all(x)[1]

    def mean_covariance(self, x: np.ndarray, diag: bool = True) -> np.ndarray:
        """Variance of the log density at ``x`` from the Laplace posterior of the latent representation."""
        if not diag:
            raise NotImplementedError("Only diagonal density covariances are available (diag=True).")
        return self._all(x)[2]

    def uncertainty(self, x: np.ndarray, diag: bool = True) -> np.ndarray:
        """Total variance: :meth:`covariance` plus :meth:`mean_covariance` (as :meth:`mellon.Predictor.uncertainty`)."""
        if not diag:
            raise NotImplementedError("Only diagonal density covariances are available (diag=True).")
        _, cov, mcov = self._all(x)
        return cov + mcov

    def predict_all(
        self, x: np.ndarray, normalize: bool = True, progress: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Log density and its total variance at ``x`` in one pass."""
        mean, cov, mcov = self._all(x, progress=progress)
        mean = mean + self.mu - (np.log(self.n_obs) if normalize else 0.0)
        return mean, cov + mcov


def fit_density(
    x: np.ndarray,
    landmarks: np.ndarray,
    *,
    ls: float,
    d: float,
    mu: float,
    nn: np.ndarray,
    n_neighbors: int = 1,
    jitter: float = DEFAULT_JITTER,
    batch_size: int | None = None,
    max_iter: int = 5000,
    Linv: np.ndarray | None = None,
) -> DensityPredictor:
    """Posterior mode and Laplace uncertainty of the log density of the cells ``x``.

    Parameters
    ----------
    x
        ``(n, n_features)`` cell states.
    landmarks
        ``(m, n_features)`` inducing points.
    ls, d, mu
        Length scale, intrinsic dimension and prior mean (see :mod:`._params`).
    nn
        ``(n,)`` distances of every cell of ``x`` to its ``n_neighbors``-th nearest neighbour.
    n_neighbors
        Which neighbour distance ``nn`` holds. ``1`` is mellon's likelihood; with ``k > 1`` the
        likelihood of the ``k``-th neighbour distance of a Poisson process,
        ``k f - exp(f + V(r_k))`` up to constants, which uses ``k`` cells' worth of information per cell.
    jitter
        Diagonal jitter of the landmark kernel matrix.
    batch_size
        Rows per prediction batch of the returned predictor.
    max_iter
        Maximum L-BFGS-B iterations.
    Linv
        ``Lp^{-1}`` of these landmarks, length scale and jitter (:func:`design_inverse`), when already
        computed (two conditions' densities on one design share it); computed here otherwise.

    Returns
    -------
    The fitted :class:`DensityPredictor`.
    """
    x = as_f64(x)
    u = as_f64(landmarks)
    n = x.shape[0]
    n_pad = bucket(n)
    const = d / 2 * np.log(np.pi) - gammaln(d / 2 + 1)
    log_r = np.log(nn)
    V = pad_rows(d * log_r + const, n_pad)
    Vdr = pad_rows(
        np.log(d) + (d - 1) * log_r + const - gammaln(n_neighbors) + (n_neighbors - 1) * (d * log_r + const), n_pad
    )
    mask = pad_rows(np.ones(n), n_pad)
    Linv, L = _design(pad_rows(x, n_pad), u, ls, jitter, Linv)
    L, mask, V, Vdr = (on_device(a) for a in (L, mask, V, Vdr))  # not copied again at every evaluation
    z0 = np.zeros(L.shape[1])

    def fun(z: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad = _loss_and_grad(z, L, mask, V, Vdr, mu, float(n_neighbors))
        return float(value), np.asarray(grad, dtype=np.float64)

    result = minimize(fun, z0, jac=True, method="L-BFGS-B", options={"maxiter": max_iter, "maxfun": 2 * max_iter})
    if not result.success:
        logger.warning("Density optimisation stopped early: %s", result.message)
    logger.debug("density L-BFGS-B: %d iterations, loss %.6g", result.nit, result.fun)
    z = result.x
    std = np.asarray(_laplace_std(z, L, mask, V, mu))
    weights = Linv.T @ z
    return DensityPredictor(
        landmarks=u,
        weights=weights,
        Linv=Linv,
        std=std,
        mu=float(mu),
        ls=float(ls),
        d=float(d),
        jitter=float(jitter),
        n_obs=n,
        batch_size=batch_size,
    )


def predict_density_pair(
    p1: DensityPredictor, p2: DensityPredictor, x: np.ndarray, *, progress: bool = False
) -> list[tuple[np.ndarray, np.ndarray]]:
    """:meth:`DensityPredictor.predict_all` (normalised) of two densities on one design, one kernel pass.

    Parameters
    ----------
    p1, p2
        Densities with :meth:`DensityPredictor.shares_design`.
    x
        ``(n, n_features)`` points.
    progress
        Progress bar over batches.

    Returns
    -------
    ``[(log_density_1, variance_1), (log_density_2, variance_2)]``.
    """
    x = p1._check(x)
    w = np.column_stack([p1.weights, p2.weights])
    s2 = np.vstack([p1.std**2, p2.std**2])
    mean, cov, mcov = map_batches(
        lambda xb: _predict_batch(xb, p1.landmarks, w, p1.Linv, s2, p1.ls),
        x,
        batch_size=p1.batch_size,
        progress=progress,
        desc="log density",
    )
    return [(mean[:, j] + p.mu - np.log(p.n_obs), cov + mcov[:, j]) for j, p in enumerate((p1, p2))]
