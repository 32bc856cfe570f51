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
    if dim in (-2, pi.ndim - 2) and pi.ndim >= 2:
        if pi.requires_grad:
            return _LogWeights.apply(pi)
        with torch.no_grad():
            return _LogWeights.forward(_NoCtx(), pi)
    eps = torch.finfo(pi.dtype).eps
    probs = (pi / pi.sum(dim, keepdim=True)).clamp(eps, 1 - eps)
    return torch.log(probs) - torch.log(probs.sum(dim, keepdim=True))


class _LogWeights(torch.autograd.Function):
    """:func:`log_mixture_weights` over axis ``-2`` as one chunked node with a closed-form backward.

    With ``p = pi / sum(pi)``, ``q = clamp(p, eps, 1 - eps)`` and ``Q = sum(q)``, the output is
    ``log q - log Q``; its vector-Jacobian product is ``m * (g / q - G / Q)`` pushed through the
    normalisation (``m`` masks clamped entries, ``G = sum(g)``).
    """

    @staticmethod
    def forward(ctx, pi: torch.Tensor) -> torch.Tensor:
        k, g = pi.shape[-2:]
        rows = pi.reshape(-1, k, g)
        eps = torch.finfo(pi.dtype).eps
        out = torch.empty_like(rows)
        step = max(1, _CHUNK // (k * g))
        for i in range(0, rows.shape[0], step):
            p = rows[i : i + step]
            q = (p / p.sum(-2, keepdim=True)).clamp_(eps, 1 - eps)
            torch.log(q, out=out[i : i + step]).sub_(torch.log(q.sum(-2, keepdim=True)))
        ctx.save_for_backward(pi)
        return out.view(pi.shape)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (pi,) = ctx.saved_tensors
        k, g = pi.shape[-2:]
        rows = pi.reshape(-1, k, g)
        grad_rows = grad.reshape(-1, k, g)
        eps = torch.finfo(pi.dtype).eps
        out = torch.empty_like(rows)
        step = max(1, _CHUNK // (k * g))
        for i in range(0, rows.shape[0], step):
            p, gr = rows[i : i + step], grad_rows[i : i + step]
            total = p.sum(-2, keepdim=True)
            probs = p / total
            q = probs.clamp(eps, 1 - eps)
            inside = (probs >= eps).logical_and_(probs <= 1 - eps)
            g_q = (gr / q).sub_(gr.sum(-2, keepdim=True) / q.sum(-2, keepdim=True)).mul_(inside)
            # through p = pi / total: d/dpi_j = (g_p_j - sum_k g_p_k p_k) / total
            torch.sub(g_q, (g_q * probs).sum(-2, keepdim=True), out=out[i : i + step]).div_(total)
        return out.view(pi.shape)


#: Elements per chunk: a chunk's temporaries stay in a core's L2 cache (see ``_dirichlet._CHUNK``).
_CHUNK = 1 << 16


def _row_chunks(n_rows: int, row_size: int) -> tuple[range, int]:
    step = max(1, _CHUNK // max(1, row_size))
    return range(0, n_rows, step), step


class MixtureLogLik(torch.autograd.Function):
    """``log sum_k exp(log_w_k + log N(x; mean_k, sd_k))`` over the state axis ``-2``.

    ``x``: ``(..., G)``; ``mean`` and ``log_w``: ``(..., K, G)``; ``sd``: ``(K, G)``. The gradient
    flows to ``mean``, ``sd`` and ``log_w`` (not to ``x``). Both passes run over cache-sized chunks
    of cells.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, mean: torch.Tensor, sd: torch.Tensor, log_w: torch.Tensor) -> torch.Tensor:
        k, g = mean.shape[-2:]
        lead = torch.broadcast_shapes(x.shape[:-1], mean.shape[:-2], log_w.shape[:-2])
        x_rows = x.expand(*lead, g).reshape(-1, g)
        mean_rows = mean.expand(*lead, k, g).reshape(-1, k, g)
        log_w_rows = log_w.expand(*lead, k, g).reshape(-1, k, g)
        inv_sd = 1.0 / sd
        log_norm = torch.log(sd) + _LOG_SQRT_2PI
        n = x_rows.shape[0]
        z = torch.empty((n, k, g), dtype=mean.dtype, device=mean.device)
        resp = torch.empty_like(z)
        out = torch.empty((n, g), dtype=mean.dtype, device=mean.device)
        starts, step = _row_chunks(n, k * g)
        for i in starts:
            rows = slice(i, i + step)
            zc = torch.sub(x_rows[rows].unsqueeze(-2), mean_rows[rows], out=z[rows]).mul_(inv_sd)
            a = (zc * zc).mul_(-0.5).add_(log_w_rows[rows]).sub_(log_norm)
            top = a.amax(dim=-2, keepdim=True)
            e = a.sub_(top).exp_()
            total = e.sum(dim=-2, keepdim=True)
            torch.div(e, total, out=resp[rows])
            out[rows] = (top + torch.log(total)).squeeze(-2)
        ctx.save_for_backward(z, inv_sd, resp)
        ctx.shapes = (lead, mean.shape, log_w.shape)
        return out.view(*lead, g)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[None, torch.Tensor, torch.Tensor, torch.Tensor]:
        z, inv_sd, resp = ctx.saved_tensors
        lead, mean_shape, log_w_shape = ctx.shapes
        n, k, g = z.shape
        grad_rows = grad.expand(*lead, g).reshape(-1, g)
        g_w = torch.empty_like(resp)
        g_mean = torch.empty_like(resp)
        g_sd = torch.zeros((k, g), dtype=resp.dtype, device=resp.device)
        starts, step = _row_chunks(n, k * g)
        for i in starts:
            rows = slice(i, i + step)
            gw = torch.mul(resp[rows], grad_rows[rows].unsqueeze(-2), out=g_w[rows])  # d/d log_w
            zc = z[rows]
            torch.mul(gw, zc, out=g_mean[rows]).mul_(inv_sd)
            g_sd += (zc * zc).sub_(1.0).mul_(gw).sum(dim=0)
        g_sd.mul_(inv_sd)
        g_mean = _sum_to(g_mean.view(*lead, k, g), mean_shape)
        g_w = _sum_to(g_w.view(*lead, k, g), log_w_shape)
        return None, g_mean, g_sd, g_w


def _sum_to(t: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Sum a broadcast gradient back to ``shape``."""
    return t if t.shape == shape else t.sum_to_size(shape)


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
