"""Log-gamma, digamma and trigamma of one tensor in one vectorised pass (pure torch).

The Dirichlet terms of veloVI's loss need ``lgamma``, ``digamma`` and ``trigamma`` of the same
``cells x genes x 4`` concentrations every step. torch evaluates each with its own scalar kernel
(about 40 ms per pancreas batch for the three on a CPU core). Here the three share one shift
``y = x + 4`` and one asymptotic expansion in ``1 / y``, evaluated with elementwise ops on
cache-sized chunks, and are undone by the recurrences

- ``lgamma(x) = lgamma(x + 4) - log(x (x + 1) (x + 2) (x + 3))``,
- ``digamma(x) = digamma(x + 4) - sum_k 1 / (x + k)``,
- ``trigamma(x) = trigamma(x + 4) + sum_k 1 / (x + k)^2``.

At ``y >= 4`` the truncated series are accurate to a few ``1e-9``; in float32 the results are
within ``2e-6`` (relative, or absolute below one) of torch's float64 values, about torch's own
float32 accuracy. Other dtypes (float64: gradient checks) use torch's kernels.
"""

from __future__ import annotations

import math

import torch

__all__ = ["gamma_functions"]

_SHIFT = 4
_CHUNK = 1 << 16
#: Above this the shift's product could overflow float32; torch's kernels take these (rare) values.
_LARGE = 1e6
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def _torch_functions(x: torch.Tensor, out: torch.Tensor) -> None:
    torch.lgamma(x, out=out[0])
    torch.digamma(x, out=out[1])
    torch.polygamma(1, x, out=out[2])


def _chunk(a: torch.Tensor, out: torch.Tensor) -> None:
    """The three functions of the chunk ``a`` written into ``out`` (``(3, len(a))``)."""
    y = a + _SHIFT
    r = y.reciprocal()
    r2 = r * r
    log_y = torch.log(y)
    # Stirling: (y - 1/2) log y - y + log(2 pi) / 2 + 1/(12 y) - 1/(360 y^3) + 1/(1260 y^5) - 1/(1680 y^7)
    series = r2.mul(-1.0 / 1680).add_(1.0 / 1260).mul_(r2).sub_(1.0 / 360).mul_(r2).add_(1.0 / 12).mul_(r)
    lgamma = (y - 0.5).mul_(log_y).sub_(y).add_(_HALF_LOG_2PI).add_(series)
    # log y - 1/(2 y) - 1/(12 y^2) + 1/(120 y^4) - 1/(252 y^6) + 1/(240 y^8) - 1/(132 y^10)
    series = r2.mul(-1.0 / 132).add_(1.0 / 240).mul_(r2).sub_(1.0 / 252).mul_(r2).add_(1.0 / 120).mul_(r2)
    digamma = series.sub_(1.0 / 12).mul_(r2).sub_(r * 0.5).add_(log_y)
    # 1/y + 1/(2 y^2) + 1/(6 y^3) - 1/(30 y^5) + 1/(42 y^7) - 1/(30 y^9)
    series = r2.mul(-1.0 / 30).add_(1.0 / 42).mul_(r2).sub_(1.0 / 30).mul_(r2).add_(1.0 / 6).mul_(r2 * r)
    trigamma = series.add_(r2, alpha=0.5).add_(r)
    product = a.clone()
    inverse = a.reciprocal()
    inverse_sq = inverse * inverse
    for k in range(1, _SHIFT):
        shifted = a + k
        product.mul_(shifted)
        shifted.reciprocal_()
        inverse.add_(shifted)
        inverse_sq.addcmul_(shifted, shifted)
    torch.sub(lgamma, torch.log(product), out=out[0])
    torch.sub(digamma, inverse, out=out[1])
    torch.add(trigamma, inverse_sq, out=out[2])


@torch.no_grad()
def gamma_functions(x: torch.Tensor) -> torch.Tensor:
    """``lgamma``, ``digamma`` and ``trigamma`` of positive ``x``, stacked on a new first axis.

    Parameters
    ----------
    x
        Positive values (float32 takes the vectorised pass; other dtypes torch's kernels).

    Returns
    -------
    A ``(3, *x.shape)`` tensor: ``lgamma(x)``, ``digamma(x)``, ``trigamma(x)`` (no gradient).
    """
    flat = x.detach().contiguous().reshape(-1)
    out = torch.empty((3, flat.numel()), dtype=flat.dtype, device=flat.device)
    if flat.dtype != torch.float32 or flat.device.type != "cpu":
        _torch_functions(flat, out)
        return out.view(3, *x.shape)
    for start in range(0, flat.numel(), _CHUNK):
        stop = min(start + _CHUNK, flat.numel())
        _chunk(flat[start:stop], out[:, start:stop])
    large = torch.nonzero(flat > _LARGE).squeeze(-1)
    if large.numel():
        values = torch.empty((3, large.numel()), dtype=flat.dtype)
        _torch_functions(flat[large], values)
        out[:, large] = values
    return out.view(3, *x.shape)
