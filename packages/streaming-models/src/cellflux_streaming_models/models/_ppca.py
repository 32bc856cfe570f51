"""Probabilistic PCA (Tipping and Bishop), marginalised or as a linear VAE, trained by streaming."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

from .._dist import all_reduce_sum, world
from ._averaging import TailAverage
from ._base import StreamingModel

__all__ = ["ProbabilisticPCA"]


class ProbabilisticPCA(StreamingModel):
    """Probabilistic PCA: ``x = mean + z W + noise``, ``z ~ N(0, I_k)``, ``noise ~ N(0, sigma^2 I)``.

    ``"marginalized"`` maximises the likelihood of ``x ~ N(mean, W^T W + sigma^2 I)`` (evaluated with
    the Woodbury identity, ``O(genes x k^2)`` per cell); its maximum spans the principal subspace
    with ``L_k`` equal to the top eigenvalues of the covariance and ``sigma^2`` the mean of the
    others (Tipping and Bishop, 1999). ``"linear_vae"`` maximises the evidence lower bound with the
    encoder ``q(z | x) = N((x - mean) V, diag(D^2))`` tied to the decoder as in cellarium-ml
    (``V = (M^{-1} W)^T``, ``D = sigma / sqrt(diag M)``, ``M = W W^T + sigma^2 I``; Lucas et al.,
    2019), computed in closed form (no sampling noise). The loss of a batch is the per-cell mean, so
    learning rates do not depend on the number of cells.

    Parameters
    ----------
    n_obs
        Number of training cells.
    var_names_g
        The genes of the data.
    n_components
        Number of components ``k``.
    ppca_flavor
        ``"marginalized"`` or ``"linear_vae"``.
    mean_g
        The data's mean per gene (e.g. from :class:`OnePassMeanVarStd`); ``None``: learnt, starting
        from the first batch's mean.
    W_init_scale
        Initial ``W_kg`` entries are normal with standard deviation ``W_init_scale / sqrt(genes)``
        (cellarium-ml uses ``W_init_scale`` itself; the scaling keeps the initial variance of the
        components per gene of order ``k W_init_scale^2 / genes`` whatever the number of genes).
    sigma_init_scale
        Initial ``sigma``.
    seed
        Seed of the initial ``W_kg``.
    lr
        Learning rate of :meth:`default_optimizer` (Adam) at a batch size of 1,000; it is scaled by
        the square root of the batch size.
    average
        Replace the parameters by their average over the second half of every epoch (Polyak-Ruppert
        tail averaging: removes most of the optimiser's noise).

    Attributes
    ----------
    W_kg, mean_g
        Loadings and mean.
    """

    trainable = True
    n_epochs = None

    def __init__(
        self,
        n_obs: int,
        var_names_g: Sequence[str],
        n_components: int,
        ppca_flavor: Literal["marginalized", "linear_vae"] = "marginalized",
        mean_g: torch.Tensor | np.ndarray | Sequence[float] | None = None,
        W_init_scale: float = 1.0,
        sigma_init_scale: float = 1.0,
        seed: int = 0,
        *,
        lr: float = 0.05,
        average: bool = True,
    ) -> None:
        super().__init__(var_names_g)
        if ppca_flavor not in ("marginalized", "linear_vae"):
            raise ValueError(f"ppca_flavor must be 'marginalized' or 'linear_vae', got {ppca_flavor!r}.")
        if not isinstance(n_components, int) or not 1 <= n_components < self.n_vars:
            raise ValueError(f"n_components must be an integer in [1, {self.n_vars - 1}], got {n_components!r}.")
        if not isinstance(n_obs, int | np.integer) or n_obs < 1:
            raise ValueError(f"n_obs must be a positive integer, got {n_obs!r}.")
        if not sigma_init_scale > 0 or not W_init_scale >= 0 or not lr > 0:
            raise ValueError("sigma_init_scale and lr must be positive, W_init_scale non-negative.")
        self.n_obs = int(n_obs)
        self.n_components = n_components
        self.ppca_flavor = ppca_flavor
        self.W_init_scale = float(W_init_scale)
        self.sigma_init_scale = float(sigma_init_scale)
        self.seed = seed
        self.lr = lr
        self.average = average
        self._average = TailAverage(self.n_obs)
        self.W_kg = torch.nn.Parameter(torch.empty(n_components, self.n_vars))
        self.log_sigma = torch.nn.Parameter(torch.empty(()))
        if mean_g is None:
            self.mean_g = torch.nn.Parameter(torch.zeros(self.n_vars))
        else:
            mean = torch.as_tensor(np.asarray(mean_g, dtype=np.float32))
            if mean.shape != (self.n_vars,):
                raise ValueError(f"mean_g has shape {tuple(mean.shape)}, expected ({self.n_vars},).")
            self.register_buffer("mean_g", mean)
        self.register_buffer("mean_initialized", torch.tensor(mean_g is not None))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Draw ``W_kg`` from ``seed``; ``sigma = sigma_init_scale``; a learnt mean starts at the first batch's."""
        generator = torch.Generator().manual_seed(self.seed)
        with torch.no_grad():
            std = self.W_init_scale / math.sqrt(self.n_vars)
            self.W_kg.copy_(torch.randn(self.n_components, self.n_vars, generator=generator) * std)
            self.log_sigma.fill_(math.log(self.sigma_init_scale))
            if isinstance(self.mean_g, torch.nn.Parameter):
                self.mean_g.zero_()
                self.mean_initialized.fill_(False)

    def default_optimizer(self, batch_size: int) -> torch.optim.Optimizer:
        """Adam with ``lr * sqrt(batch_size / 1000)``."""
        return torch.optim.Adam(self.parameters(), lr=self.lr * math.sqrt(max(batch_size, 1) / 1000))

    @property
    def sigma(self) -> torch.Tensor:
        """The noise standard deviation."""
        return self.log_sigma.exp()

    @property
    def M_kk(self) -> torch.Tensor:
        """``W W^T + sigma^2 I``."""
        return self.W_kg @ self.W_kg.T + self.sigma**2 * torch.eye(self.n_components, device=self.W_kg.device)

    def _negative_log_likelihood(self, r_ng: torch.Tensor) -> torch.Tensor:
        """Per-cell mean of ``-log N(r | 0, W^T W + sigma^2 I)`` (Woodbury)."""
        g, k = self.n_vars, self.n_components
        variance = self.sigma**2
        chol = torch.linalg.cholesky(self.M_kk)
        projected_nk = torch.linalg.solve_triangular(chol, self.W_kg @ r_ng.T, upper=False).T
        quadratic_n = ((r_ng * r_ng).sum(1) - (projected_nk * projected_nk).sum(1)) / variance
        log_det = (g - k) * torch.log(variance) + 2 * torch.log(torch.diagonal(chol)).sum()
        return 0.5 * (quadratic_n.mean() + log_det + g * math.log(2 * math.pi))

    def _negative_elbo(self, r_ng: torch.Tensor) -> torch.Tensor:
        """Per-cell mean of the negative evidence lower bound with the tied linear encoder (closed form)."""
        g = self.n_vars
        variance = self.sigma**2
        M = self.M_kk
        V_gk = torch.linalg.solve(M, self.W_kg).T
        D2_k = variance / torch.diagonal(M)
        m_nk = r_ng @ V_gk
        residual_ng = r_ng - m_nk @ self.W_kg
        expected_sq_n = (residual_ng * residual_ng).sum(1) + (D2_k * (self.W_kg * self.W_kg).sum(1)).sum()
        reconstruction_n = 0.5 * (g * torch.log(2 * math.pi * variance) + expected_sq_n / variance)
        kl_n = 0.5 * ((D2_k - 1 - torch.log(D2_k)).sum() + (m_nk * m_nk).sum(1))
        return (reconstruction_n + kl_n).mean()

    def forward(self, x_ng: torch.Tensor, var_names_g: np.ndarray) -> dict[str, torch.Tensor]:
        """The batch's loss (``{"loss": ...}``): negative log likelihood or negative ELBO per cell."""
        self.check_batch(x_ng, var_names_g)
        x_ng = x_ng.to(self.W_kg.dtype)
        if not bool(self.mean_initialized):  # data-dependent start of a learnt mean, the same on every process
            with torch.no_grad():
                sums = torch.cat([x_ng.sum(0), x_ng.new_full((1,), x_ng.shape[0])])
                all_reduce_sum(sums)
                self.mean_g.copy_(sums[:-1] / sums[-1].clamp(min=1))
                self.mean_initialized.fill_(True)
        if self.average and torch.is_grad_enabled():
            self._average.observe(self, x_ng.shape[0] * world()[1])
        r_ng = x_ng - self.mean_g
        if self.ppca_flavor == "marginalized":
            return {"loss": self._negative_log_likelihood(r_ng)}
        return {"loss": self._negative_elbo(r_ng)}

    def on_train_epoch_start(self, epoch: int) -> None:
        super().on_train_epoch_start(epoch)
        self._average.start_epoch()

    def on_train_epoch_end(self, epoch: int) -> None:
        """Replace the parameters by their tail average."""
        if self.average:
            self._average.finish_epoch(self)

    # results -------------------------------------------------------------------------------------
    @property
    def L_k(self) -> torch.Tensor:
        """The model's principal variances ``S_k^2 + sigma^2`` (``S_k``: singular values of ``W``)."""
        with torch.no_grad():
            return torch.linalg.svdvals(self.W_kg.T) ** 2 + self.sigma**2

    @property
    def U_gk(self) -> torch.Tensor:
        """Principal axes (genes x k, orthonormal) matching :attr:`L_k`."""
        with torch.no_grad():
            return torch.linalg.svd(self.W_kg.T, full_matrices=False).U

    @property
    def W_variance(self) -> float:
        """Variance explained by the components, ``trace(W^T W)``."""
        with torch.no_grad():
            return float((self.W_kg * self.W_kg).sum())

    @property
    def sigma_variance(self) -> float:
        """Variance left to the noise, ``genes * sigma^2``."""
        with torch.no_grad():
            return float(self.n_vars * self.sigma**2)

    def predict(self, x_ng: torch.Tensor, var_names_g: np.ndarray) -> dict[str, torch.Tensor | np.ndarray]:
        """Posterior mean of ``z``: ``{"x_ng": (x - mean) V (cells x k), "var_names_g": ["PPC1", ...]}``."""
        self.check_batch(x_ng, var_names_g)
        with torch.no_grad():
            V_gk = torch.linalg.solve(self.M_kk, self.W_kg).T
            z_nk = (x_ng.to(self.W_kg.dtype) - self.mean_g) @ V_gk
        names = np.array([f"PPC{i + 1}" for i in range(self.n_components)], dtype=object)
        return {"x_ng": z_nk, "var_names_g": names}
