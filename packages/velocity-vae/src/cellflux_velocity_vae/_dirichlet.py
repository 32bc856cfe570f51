"""Reparameterised Dirichlet draws and the Dirichlet KL term, vectorised (pure torch).

The state weights of veloVI are a Dirichlet draw per cell and gene: ``cells x genes x 4`` draws per
step. torch's ``Dirichlet.rsample`` samples each Gamma variate with a scalar rejection loop and
computes each gradient with a scalar series; on a CPU these two kernels are most of a training
step. Here

- Gamma variates are drawn with Marsaglia and Tsang's (2000) method vectorised over the whole
  tensor (all proposals at once, only the few rejected elements redrawn), boosting shapes below
  one with ``Gamma(a) = Gamma(a + 1) U^(1/a)``;
- the Dirichlet draw is the normalised vector of Gamma variates, and its gradient is the implicit
  reparameterisation gradient of each Gamma variate (``torch._standard_gamma_grad``) chained
  through the normalisation. This is a different, equally unbiased pathwise estimator of the
  same expectation as torch's (which differentiates the Beta marginals);
- the KL divergence to a symmetric Dirichlet prior is one autograd node whose backward uses the
  closed-form derivative ``(c_k - p) psi'(c_k) - (C - K p) psi'(C)`` (autograd would evaluate
  digamma twice more and chain four nodes).

Shapes are ``(..., K, G)`` (state axis before the gene axis): reductions over the ``K`` states then
run along contiguous rows of genes.
"""

from __future__ import annotations

import math

import torch

__all__ = ["DirichletKL", "dirichlet_kl", "rsample_dirichlet", "sample_gamma"]


@torch.no_grad()
def sample_gamma(shape: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard Gamma variates with the given shape parameters (Marsaglia and Tsang, vectorised).

    Parameters
    ----------
    shape
        Positive shape parameters, any tensor shape.
    generator
        Random generator (the global one by default).

    Returns
    -------
    Variates of the same shape and dtype, at least the smallest positive normal float (as torch's
    sampler, so that logarithms stay finite).
    """
    a = shape.detach().contiguous()
    boost = a < 1
    a1 = torch.where(boost, a + 1, a)
    d = a1 - 1.0 / 3.0
    c = torch.rsqrt(9.0 * d)
    out = torch.empty_like(a)
    todo = None  # flat indices still to draw; None = all
    d_flat, c_flat, out_flat = d.reshape(-1), c.reshape(-1), out.view(-1)
    while True:
        dd = d_flat if todo is None else d_flat[todo]
        cc = c_flat if todo is None else c_flat[todo]
        z = torch.randn(dd.shape, generator=generator, dtype=dd.dtype, device=dd.device)
        u = torch.rand(dd.shape, generator=generator, dtype=dd.dtype, device=dd.device)
        y = 1.0 + cc * z
        v = y * y * y
        ok = (y > 0) & (torch.log(u) < 0.5 * z * z + dd - dd * v + dd * torch.log(v.clamp_min(1e-30)))
        if todo is None:
            out_flat.copy_(dd * v)
            rejected = torch.nonzero(~ok).squeeze(-1)
        else:
            accepted = todo[ok]
            out_flat[accepted] = (dd * v)[ok]
            rejected = todo[~ok]
        if rejected.numel() == 0:
            break
        todo = rejected
    if bool(boost.any()):
        u = torch.rand(a.shape, generator=generator, dtype=a.dtype, device=a.device)
        out = torch.where(boost, out * torch.exp(torch.log1p(-u) / a), out)
    return out.clamp_min(torch.finfo(out.dtype).tiny)


class _Gamma(torch.autograd.Function):
    """Gamma draws with the implicit reparameterisation gradient."""

    @staticmethod
    def forward(ctx, concentration: torch.Tensor) -> torch.Tensor:
        sample = sample_gamma(concentration)
        ctx.save_for_backward(concentration, sample)
        return sample

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        concentration, sample = ctx.saved_tensors
        return grad * torch._standard_gamma_grad(concentration, sample)


def rsample_dirichlet(concentration: torch.Tensor, dim: int = -2) -> torch.Tensor:
    """A reparameterised Dirichlet draw along ``dim`` (normalised Gamma variates).

    Parameters
    ----------
    concentration
        Positive concentrations; the Dirichlet's categories run along ``dim``.
    dim
        The category axis.

    Returns
    -------
    A draw of the same shape whose entries along ``dim`` sum to one (entries are at least the
    smallest positive normal float, as in torch's sampler).
    """
    gamma = _Gamma.apply(concentration) if concentration.requires_grad else sample_gamma(concentration)
    probs = gamma / gamma.sum(dim, keepdim=True)
    return probs.clamp_min(torch.finfo(probs.dtype).tiny)


class DirichletKL(torch.autograd.Function):
    """``KL(Dir(c) || Dir(prior))`` over axis ``-2`` as one node with a closed-form backward."""

    @staticmethod
    def forward(ctx, concentration: torch.Tensor, prior: float) -> torch.Tensor:
        k = concentration.shape[-2]
        total = concentration.sum(-2)
        kl = (
            torch.lgamma(total)
            - torch.lgamma(concentration).sum(-2)
            - (math.lgamma(k * prior) - k * math.lgamma(prior))
            + ((concentration - prior) * (torch.digamma(concentration) - torch.digamma(total).unsqueeze(-2))).sum(-2)
        )
        ctx.save_for_backward(concentration, total)
        ctx.prior = prior
        return kl

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        concentration, total = ctx.saved_tensors
        k = concentration.shape[-2]
        prior = ctx.prior
        d_total = (total - k * prior) * torch.polygamma(1, total)
        d_conc = (concentration - prior) * torch.polygamma(1, concentration) - d_total.unsqueeze(-2)
        return grad.unsqueeze(-2) * d_conc, None


def dirichlet_kl(concentration: torch.Tensor, prior: float, dim: int = -1) -> torch.Tensor:
    """KL(Dirichlet(concentration) || Dirichlet(prior * 1)) over axis ``dim``.

    Parameters
    ----------
    concentration
        Positive concentrations.
    prior
        Concentration of the symmetric prior.
    dim
        The category axis.

    Returns
    -------
    The KL divergence, with ``dim`` reduced.
    """
    if dim not in (-2, concentration.ndim - 2):
        concentration = concentration.movedim(dim, -2)
    return DirichletKL.apply(concentration, prior)
