"""A neural spline flow prior for scVI's latent space (rational-quadratic spline couplings, Durkan et al. 2019).

Only the density is needed (the KL term is estimated with the encoder's samples), so the flow is
written in the direction latent ``z`` -> base ``u ~ Normal(0, I)``: ``log p(z) = log N(u) + log|du/dz|``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["SplineFlowPrior", "rational_quadratic_spline"]

_MIN_BIN = 1e-3
_MIN_DERIVATIVE = 1e-3
_IDENTITY_DERIVATIVE = math.log(math.expm1(1.0 - _MIN_DERIVATIVE))  # softplus of this + min = 1


def rational_quadratic_spline(
    x: torch.Tensor, w_logits: torch.Tensor, h_logits: torch.Tensor, d_logits: torch.Tensor, bound: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """A monotone rational-quadratic spline on ``[-bound, bound]`` (identity outside), elementwise.

    Parameters
    ----------
    x
        Inputs (any shape ``S``).
    w_logits, h_logits
        Unnormalised bin widths and heights (``S + (K,)``).
    d_logits
        Unnormalised derivatives at the ``K - 1`` inner knots (``S + (K - 1,)``); the outer ones are 1.
    bound
        Half-width of the interval.

    Returns
    -------
    ``(y, log|dy/dx|)``, each of shape ``S``.
    """
    k = w_logits.shape[-1]
    inside = (x > -bound) & (x < bound)
    xc = x.clamp(-bound + 1e-6, bound - 1e-6)

    def knots(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        size = _MIN_BIN + (1 - _MIN_BIN * k) * torch.softmax(logits, dim=-1)
        edges = F.pad(torch.cumsum(size, dim=-1), (1, 0)) * 2 * bound - bound
        edges = torch.cat(
            [torch.full_like(edges[..., :1], -bound), edges[..., 1:-1], torch.full_like(edges[..., :1], bound)], -1
        )
        return edges, edges[..., 1:] - edges[..., :-1]

    cw, widths = knots(w_logits)
    ch, heights = knots(h_logits)
    inner = _MIN_DERIVATIVE + F.softplus(d_logits + _IDENTITY_DERIVATIVE)
    ones = torch.ones_like(inner[..., :1])
    derivatives = torch.cat([ones, inner, ones], dim=-1)
    index = (torch.searchsorted(cw[..., 1:-1].contiguous(), xc[..., None].contiguous())).clamp(0, k - 1)

    def pick(t: torch.Tensor, offset: int = 0) -> torch.Tensor:
        return t.gather(-1, index + offset)[..., 0]

    x0, w, y0, h = pick(cw), pick(widths), pick(ch), pick(heights)
    d0, d1 = pick(derivatives), pick(derivatives, 1)
    s = h / w
    xi = (xc - x0) / w
    t = xi * (1 - xi)
    denominator = s + (d0 + d1 - 2 * s) * t
    y = y0 + h * (s * xi**2 + d0 * t) / denominator
    log_det = 2 * torch.log(s) + torch.log(d1 * xi**2 + 2 * s * t + d0 * (1 - xi) ** 2) - 2 * torch.log(denominator)
    return torch.where(inside, y, x), torch.where(inside, log_det, torch.zeros_like(log_det))


class _Coupling(nn.Module):
    """Transform the dimensions in ``~mask`` with splines whose parameters depend on those in ``mask``."""

    def __init__(self, mask: torch.Tensor, hidden: Sequence[int], bins: int) -> None:
        super().__init__()
        self.register_buffer("mask", mask, persistent=False)
        self.bins = bins
        n_in, n_out = int(mask.sum()), int((~mask).sum())
        self.n_params = 3 * bins - 1
        if n_in == 0:  # one latent dimension: unconditional spline parameters
            self.net = None
            self.params = nn.Parameter(torch.zeros(n_out, self.n_params))
        else:
            layers: list[nn.Module] = []
            for a, b in zip([n_in, *hidden], hidden, strict=False):
                layers += [nn.Linear(a, b), nn.ReLU()]
            last = nn.Linear(([n_in, *hidden])[-1], n_out * self.n_params)
            nn.init.zeros_(last.weight)  # the flow starts as the identity: the prior starts as Normal(0, I)
            nn.init.zeros_(last.bias)
            self.net = nn.Sequential(*layers, last)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        kept, moved = z[:, self.mask], z[:, ~self.mask]
        if self.net is None:
            params = self.params.expand(z.shape[0], -1, -1)
        else:
            params = self.net(kept).reshape(z.shape[0], -1, self.n_params)
        b = self.bins
        y, log_det = rational_quadratic_spline(
            moved, params[..., :b], params[..., b : 2 * b], params[..., 2 * b :], 5.0
        )
        out = z.clone()
        out[:, ~self.mask] = y
        return out, log_det.sum(-1)


class SplineFlowPrior(nn.Module):
    """``log p(z)`` of a neural spline flow: ``n_transforms`` coupling layers with alternating halves.

    Parameters
    ----------
    n_latent
        Latent dimensions.
    hidden_features
        Hidden widths of each coupling's conditioner.
    n_transforms
        Coupling layers.
    bins
        Spline bins on ``[-5, 5]``.
    """

    def __init__(
        self, n_latent: int, hidden_features: Sequence[int] = (64, 64), n_transforms: int = 3, bins: int = 8
    ) -> None:
        super().__init__()
        first = torch.arange(n_latent) < n_latent // 2  # one dimension: every layer transforms it unconditionally
        masks = [first if i % 2 == 0 or n_latent == 1 else ~first for i in range(n_transforms)]
        self.couplings = nn.ModuleList(_Coupling(mask, hidden_features, bins) for mask in masks)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """Log-density of each row of ``z``."""
        total = torch.zeros(z.shape[0], dtype=z.dtype, device=z.device)
        for coupling in self.couplings:
            z, log_det = coupling(z)
            total = total + log_det
        return total - 0.5 * (z**2).sum(-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)
