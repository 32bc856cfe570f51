"""Count likelihoods of scVI's generative model: negative binomial, zero-inflated NB and Poisson.

Plain functions on tensors (no ``torch.distributions`` argument validation in the hot loop) and a
small :class:`CountDistribution` holding the parameters of one batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

__all__ = ["CountDistribution", "nb_log_prob", "poisson_log_prob", "zinb_log_prob"]

_EPS = 1e-8


def nb_log_prob(x: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor, eps: float = _EPS) -> torch.Tensor:
    """Elementwise log-density of a negative binomial with mean ``mu`` and inverse dispersion ``theta``.

    ``NB(x; mu, theta) = Gamma(x + theta) / (Gamma(theta) x!) (theta / (theta + mu))^theta (mu / (theta + mu))^x``.
    """
    log_theta_mu = torch.log(theta + mu + eps)
    return (
        theta * (torch.log(theta + eps) - log_theta_mu)
        + x * (torch.log(mu + eps) - log_theta_mu)
        + torch.lgamma(x + theta)
        - torch.lgamma(theta)
        - torch.lgamma(x + 1)
    )


def zinb_log_prob(
    x: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor, zi_logits: torch.Tensor, eps: float = _EPS
) -> torch.Tensor:
    """Elementwise log-density of a zero-inflated negative binomial (``zi_logits``: logits of the extra zeros)."""
    softplus_neg = F.softplus(-zi_logits)  # -log(pi)
    log_theta_mu = torch.log(theta + mu + eps)
    nb_zero = theta * (torch.log(theta + eps) - log_theta_mu)  # log NB(0)
    case_zero = F.softplus(nb_zero - zi_logits) - softplus_neg  # log(pi + (1 - pi) NB(0))
    case_nonzero = (
        -F.softplus(zi_logits)  # log(1 - pi)
        + nb_zero
        + x * (torch.log(mu + eps) - log_theta_mu)
        + torch.lgamma(x + theta)
        - torch.lgamma(theta)
        - torch.lgamma(x + 1)
    )
    return torch.where(x < eps, case_zero, case_nonzero)


def poisson_log_prob(x: torch.Tensor, rate: torch.Tensor, eps: float = _EPS) -> torch.Tensor:
    """Elementwise Poisson log-density."""
    return x * torch.log(rate + eps) - rate - torch.lgamma(x + 1)


@dataclass
class CountDistribution:
    """The count distribution of a batch of cells (``likelihood``: ``"nb"``, ``"zinb"`` or ``"poisson"``).

    Attributes
    ----------
    likelihood
        The family.
    mu
        Means before zero inflation (cells x genes).
    theta
        Inverse dispersions (broadcastable to ``mu``; ``None`` for Poisson).
    zi_logits
        Logits of the zero-inflation probability (``"zinb"`` only).
    scale
        Normalised expression (the decoder's output before the library size, rows summing to one
        for the softmax activation).
    """

    likelihood: str
    mu: torch.Tensor
    theta: torch.Tensor | None = None
    zi_logits: torch.Tensor | None = None
    scale: torch.Tensor | None = None

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Elementwise log-density of counts ``x``."""
        if self.likelihood == "poisson":
            return poisson_log_prob(x, self.mu)
        assert self.theta is not None
        if self.likelihood == "nb":
            return nb_log_prob(x, self.mu, self.theta)
        assert self.zi_logits is not None
        return zinb_log_prob(x, self.mu, self.theta, self.zi_logits)

    @property
    def mean(self) -> torch.Tensor:
        """Expected counts."""
        if self.likelihood == "zinb":
            assert self.zi_logits is not None
            return self.mu * torch.sigmoid(-self.zi_logits)
        return self.mu
