"""The veloVI observation likelihood: a Gaussian mixture over the four kinetic states (pure torch).

For each cell and gene, spliced (and unspliced) abundance ``x`` has density
``sum_k pi_k N(x; mean_k, sd_k)``. :class:`MixtureLogLik` computes the log density of a whole
``cells x genes`` minibatch as one autograd node: the forward pass keeps the state
responsibilities, so the backward pass is a handful of elementwise products instead of the
chain of ``log_softmax``/``logsumexp``/``Normal`` nodes that a ``MixtureSameFamily`` builds.
Tensors are laid out state-major, ``(..., 4, genes)``.
"""

from __future__ import annotations

import math

import torch

__all__ = ["MixtureLogLik", "log_mixture_weights", "mixture_log_lik"]

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def log_mixture_weights(pi: torch.Tensor, dim: int = -2) -> torch.Tensor:
    """Log mixture weights as ``Categorical(probs=pi)`` computes them (probabilities clamped to ``[eps, 1-eps]``).

    Parameters
    ----------
    pi
        Non-negative weights along ``dim`` (normalised here).
    dim
        The state axis.

    Returns
    -------
    Normalised log weights, same shape as ``pi``.
    """
    eps = torch.finfo(pi.dtype).eps
    probs = (pi / pi.sum(dim, keepdim=True)).clamp(eps, 1 - eps)
    return torch.log(probs) - torch.log(probs.sum(dim, keepdim=True))


class MixtureLogLik(torch.autograd.Function):
    """``log sum_k exp(log_w_k + log N(x; mean_k, sd_k))`` over the state axis ``-2``.

    ``x``: ``(..., G)``; ``mean`` and ``log_w``: ``(..., K, G)``; ``sd``: ``(K, G)``. The gradient
    flows to ``mean``, ``sd`` and ``log_w`` (not to ``x``).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, mean: torch.Tensor, sd: torch.Tensor, log_w: torch.Tensor) -> torch.Tensor:
        inv_sd = 1.0 / sd
        z = (x.unsqueeze(-2) - mean) * inv_sd
        log_norm = torch.log(sd) + _LOG_SQRT_2PI
        a = log_w - 0.5 * z * z - log_norm
        top = a.amax(dim=-2, keepdim=True)
        e = torch.exp(a - top)
        total = e.sum(dim=-2, keepdim=True)
        resp = e / total
        ctx.save_for_backward(z, inv_sd, resp)
        ctx.n_lead = mean.ndim - 2
        return (top + torch.log(total)).squeeze(-2)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[None, torch.Tensor, torch.Tensor, torch.Tensor]:
        z, inv_sd, resp = ctx.saved_tensors
        g = grad.unsqueeze(-2) * resp  # d/d log_w
        g_mean = g * z * inv_sd
        g_sd = (g * (z * z - 1)).sum(dim=tuple(range(ctx.n_lead))) * inv_sd
        return None, g_mean, g_sd, g


def mixture_log_lik(x: torch.Tensor, mean: torch.Tensor, sd: torch.Tensor, log_w: torch.Tensor) -> torch.Tensor:
    """Per cell and gene log density of ``x`` under the state mixture (see :class:`MixtureLogLik`).

    Parameters
    ----------
    x
        Observations, ``(..., G)``.
    mean
        State means, ``(..., K, G)``.
    sd
        State standard deviations, ``(K, G)``.
    log_w
        Log mixture weights, ``(..., K, G)``.

    Returns
    -------
    Log densities, ``(..., G)``.
    """
    sd = sd.expand(mean.shape[-2:])
    if not (mean.requires_grad or sd.requires_grad or log_w.requires_grad):
        with torch.no_grad():
            return MixtureLogLik.forward(_NoCtx(), x, mean, sd, log_w)
    return MixtureLogLik.apply(x, mean, sd, log_w)


class _NoCtx:
    """Stands in for an autograd context when no gradient is needed."""

    def save_for_backward(self, *tensors: torch.Tensor) -> None:
        """Nothing to keep."""
