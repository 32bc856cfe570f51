"""Loss and gradient of a linear softmax classifier with an L1 (Laplace-prior) penalty, in closed form.

The inputs may be a dense tensor or a ``torch.sparse_csr`` tensor, and may be standardised implicitly:
``logits = ((x - mean_g) * inv_std_g) @ W + b`` is computed as ``x @ (inv_std_g * W) + (b - (mean_g *
inv_std_g) @ W)``, so a sparse ``x`` is never densified nor centred. The gradients are those of the
explicit formula (what autograd gives on standardised dense data), computed without an autograd graph.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from .._sparse import is_csr, to_scipy, with_values

__all__ = ["linear_logits", "linear_softmax_map_loss"]


def _folded(W_gc, b_c, mean_g, inv_std_g):
    if inv_std_g is None:
        return W_gc, b_c
    return W_gc * inv_std_g[:, None], b_c - (mean_g * inv_std_g) @ W_gc


def _times(x_ng: torch.Tensor, W_gc: torch.Tensor) -> torch.Tensor:
    """``x_ng @ W_gc`` for dense or CSR ``x_ng`` (CPU CSR through scipy's kernels)."""
    if is_csr(x_ng):
        if x_ng.device.type == "cpu":
            return torch.from_numpy(to_scipy(x_ng) @ W_gc.numpy())
        x_ng = x_ng.to_dense()
    return x_ng.to(W_gc.dtype) @ W_gc


def _transpose_times(x_ng: torch.Tensor, G_nc: torch.Tensor) -> torch.Tensor:
    """``x_ng.T @ G_nc`` for dense or CSR ``x_ng``."""
    if is_csr(x_ng):
        if x_ng.device.type == "cpu":
            return torch.from_numpy(to_scipy(x_ng).T @ G_nc.numpy())
        x_ng = x_ng.to_dense()
    return x_ng.to(G_nc.dtype).T @ G_nc


def _as_dtype(x_ng: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    if not is_csr(x_ng):
        return x_ng.to(dtype)
    return x_ng if x_ng.values().dtype == dtype else with_values(x_ng, x_ng.values().to(dtype))


def linear_logits(x_ng, W_gc, b_c, mean_g=None, inv_std_g=None) -> torch.Tensor:
    """``((x - mean_g) * inv_std_g) @ W + b`` (no graph), dense or CSR ``x_ng``."""
    with torch.no_grad():
        W, b = _folded(W_gc.detach(), b_c.detach(), mean_g, inv_std_g)
        return _times(_as_dtype(x_ng, W.dtype), W) + b


def _loss_and_gradients_cpu(x_ng, W_gc, b_c, y_n, mean_g, inv_std_g, l1_weight, need_grad):
    """The CPU computation in numpy and scipy.

    Single-threaded kernels: torch's thread pool costs more than these small operations on a loaded machine.
    """
    x = to_scipy(x_ng) if is_csr(x_ng) else x_ng.numpy()
    W0 = W_gc.detach().numpy()
    W, b = _folded(W_gc.detach(), b_c.detach(), mean_g, inv_std_g)
    logits = np.asarray(x @ W.numpy()) + b.numpy()
    n = logits.shape[0]
    rows, y = np.arange(n), y_n.numpy()
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    total = exp.sum(axis=1)
    cross_entropy = float(np.mean(np.log(total, dtype=np.float64) - shifted[rows, y]))
    loss = torch.tensor(cross_entropy + l1_weight * float(np.abs(W0).sum(dtype=np.float64)), dtype=W_gc.dtype)
    if not need_grad:
        return loss, torch.from_numpy(logits), None, None
    G = exp / total[:, None]
    G[rows, y] -= 1.0
    G /= n
    G_c = G.sum(axis=0)
    grad_W = np.asarray(x.T @ G, dtype=W0.dtype)
    if inv_std_g is not None:
        grad_W = (grad_W - np.outer(mean_g.numpy(), G_c)) * inv_std_g.numpy()[:, None]
    grad_W += l1_weight * np.sign(W0)
    return loss, torch.from_numpy(logits), torch.from_numpy(grad_W), torch.from_numpy(G_c)


def _loss_and_gradients_torch(x_ng, W_gc, b_c, y_n, mean_g, inv_std_g, l1_weight, need_grad):
    """The same in torch (GPU)."""
    W, b = _folded(W_gc, b_c, mean_g, inv_std_g)
    logits_nc = _times(x_ng, W) + b
    loss = F.cross_entropy(logits_nc, y_n) + l1_weight * W_gc.abs().sum()
    if not need_grad:
        return loss, logits_nc, None, None
    n = logits_nc.shape[0]
    G_nc = torch.softmax(logits_nc, dim=1)
    G_nc[torch.arange(n, device=G_nc.device), y_n] -= 1.0
    G_nc /= n
    G_c = G_nc.sum(0)
    grad_W = _transpose_times(x_ng, G_nc)
    if inv_std_g is not None:
        grad_W = (grad_W - torch.outer(mean_g, G_c)) * inv_std_g[:, None]
    grad_W += l1_weight * torch.sign(W_gc)
    return loss, logits_nc, grad_W, G_c


class _LinearSoftmaxMAP(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x_ng, W_gc, b_c, y_n, mean_g, inv_std_g, l1_weight):
        need_grad = ctx.needs_input_grad[1] or ctx.needs_input_grad[2]
        compute = _loss_and_gradients_cpu if W_gc.device.type == "cpu" else _loss_and_gradients_torch
        with torch.no_grad():
            loss, logits_nc, grad_W, grad_b = compute(x_ng, W_gc, b_c, y_n, mean_g, inv_std_g, l1_weight, need_grad)
        if need_grad:
            ctx.save_for_backward(grad_W, grad_b)
        ctx.mark_non_differentiable(logits_nc)
        return loss, logits_nc

    @staticmethod
    def backward(ctx, grad_loss, grad_logits):
        grad_W, grad_b = ctx.saved_tensors
        return None, grad_loss * grad_W, grad_loss * grad_b, None, None, None, None


def linear_softmax_map_loss(
    x_ng: torch.Tensor,
    W_gc: torch.Tensor,
    b_c: torch.Tensor,
    y_n: torch.Tensor,
    l1_weight: float,
    mean_g: torch.Tensor | None = None,
    inv_std_g: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy of ``softmax(logits)`` plus ``l1_weight * sum(|W|)``, and the (detached) logits.

    Parameters
    ----------
    x_ng
        Inputs, dense or ``torch.sparse_csr``.
    W_gc, b_c
        Weights and biases (their gradients are set by ``loss.backward()``).
    y_n
        Category codes.
    l1_weight
        Weight of the L1 penalty.
    mean_g, inv_std_g
        Implicit standardisation ``(x - mean_g) * inv_std_g`` (both or neither).

    Returns
    -------
    The loss (a scalar that back-propagates into ``W_gc`` and ``b_c``) and the logits.
    """
    return _LinearSoftmaxMAP.apply(
        _as_dtype(x_ng, W_gc.dtype).to(W_gc.device), W_gc, b_c, y_n.to(W_gc.device), mean_g, inv_std_g, float(l1_weight)
    )
