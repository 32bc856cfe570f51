"""Batched posterior sampling of a trained :class:`VELOVAE` (engine: arrays and tensors, no AnnData).

scvi-tools' VELOVI runs one full forward pass per Monte Carlo sample and minibatch, and builds the
likelihood distributions it does not need. Here each chunk of cells is encoded once, all
``n_samples`` latent draws are decoded in one batched pass, and only the quantities a query needs
are computed. The chunk size is chosen so that a chunk's ``samples x cells x genes x 4`` tensors stay
within a fixed memory budget, so queries over any number of cells use bounded memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from scipy import sparse

from ._dirichlet import rsample_dirichlet
from ._kinetics import induction, repression, transcription_rate
from ._module import VELOVAE

__all__ = [
    "PosteriorChunk",
    "chunk_size_for",
    "iterate_posterior",
    "latent_time",
    "reduce_samples",
    "velocity",
]

#: Elements (float32) of one ``samples x cells x genes x 4`` tensor per chunk: 2**21 = 8 MiB. Below
#: glibc's largest mmap threshold (32 MiB), so a chunk's tensors reuse freed heap memory instead of
#: being mapped and page-faulted afresh for every chunk (at 64 MiB a third of a query's time was
#: spent in the kernel doing that).
DEFAULT_BUDGET = 2**21


@dataclass
class PosteriorChunk:
    """Posterior draws for one chunk of cells: leading axes ``(n_samples, cells)``."""

    rows: np.ndarray  # positions of the chunk's cells in the query
    spliced: torch.Tensor  # (cells, genes)
    unspliced: torch.Tensor
    pi: torch.Tensor  # (S, cells, genes, 4), a view of a state-major tensor
    pi_alpha: torch.Tensor
    rho: torch.Tensor  # (S, cells, genes)
    tau: torch.Tensor
    z: torch.Tensor  # (S, cells, n_latent)


def chunk_size_for(n_samples: int, n_genes: int, budget: int = DEFAULT_BUDGET) -> int:
    """Cells per chunk so that a ``samples x cells x genes x 4`` tensor holds at most ``budget`` floats."""
    return int(max(1, min(4096, budget // max(1, n_samples * n_genes * 4))))


def _dense_rows(matrix: np.ndarray | sparse.spmatrix, rows: np.ndarray) -> np.ndarray:
    block = matrix[rows]
    if sparse.issparse(block):
        block = block.toarray()
    return np.asarray(block, dtype=np.float32)


@torch.inference_mode()
def iterate_posterior(
    module: VELOVAE,
    spliced: np.ndarray | sparse.spmatrix,
    unspliced: np.ndarray | sparse.spmatrix,
    indices: np.ndarray,
    n_samples: int,
    batch_size: int | None = None,
    latent_dim: int | None = None,
    budget: int = DEFAULT_BUDGET,
    expected_states: bool = False,
) -> Iterator[PosteriorChunk]:
    """Yield posterior draws chunk by chunk over the cells ``indices``.

    Parameters
    ----------
    module
        A trained module (put into eval mode here).
    spliced, unspliced
        Cells x genes abundances (dense or sparse) of the registered layers.
    indices
        Cells to query, in order.
    n_samples
        Monte Carlo draws per cell; all are decoded in one pass per chunk.
    batch_size
        Cells per chunk; by default as many as fit the memory ``budget``.
    latent_dim
        Decode with only this latent dimension (``restrict_to_latent_dim``).
    budget
        Floats per ``samples x cells x genes x 4`` tensor.
    expected_states
        Give each latent draw the expected state weights ``alpha / sum(alpha)`` of its Dirichlet
        instead of a Dirichlet draw (``chunk.pi``). For queries linear in the weights, averaged over
        the draws, this is the Rao–Blackwellised estimator of the same posterior mean: same
        expectation, less Monte Carlo noise, and no Gamma variates (most of a query's time).
    """
    module.eval()
    device = next(module.parameters()).device
    n_genes = spliced.shape[1]
    size = chunk_size_for(n_samples, n_genes, budget)
    if batch_size is not None:
        size = min(size, int(batch_size))
    for start in range(0, len(indices), size):
        rows = np.arange(start, min(start + size, len(indices)))
        cells = indices[rows]
        s = torch.from_numpy(_dense_rows(spliced, cells)).to(device)
        u = torch.from_numpy(_dense_rows(unspliced, cells)).to(device)
        s_in, u_in = (torch.log(0.01 + s), torch.log(0.01 + u)) if module.log_variational else (s, u)
        qz_m, qz_v, z1 = module.z_encoder(torch.cat((s_in, u_in), dim=-1))
        if n_samples == 1:
            z = z1.unsqueeze(0)
        else:
            eps = torch.randn((n_samples, *qz_m.shape), device=device, dtype=qz_m.dtype)
            z = module.z_encoder.z_transformation(qz_m + qz_v.sqrt() * eps)
        flat = z.reshape(-1, z.shape[-1])
        pi_alpha, rho, tau = module.decoder(flat, latent_dim=latent_dim, state_major=True)
        expected = pi_alpha / pi_alpha.sum(dim=-2, keepdim=True) if expected_states else None
        pi = rsample_dirichlet(pi_alpha, dim=-2) if expected is None else expected
        shape = (n_samples, len(cells), n_genes)
        yield PosteriorChunk(
            rows=rows,
            spliced=s,
            unspliced=u,
            pi=pi.reshape(n_samples, len(cells), 4, n_genes).transpose(-1, -2),
            pi_alpha=pi_alpha.reshape(n_samples, len(cells), 4, n_genes).transpose(-1, -2),
            rho=rho.reshape(shape),
            tau=tau.reshape(shape),
            z=z,
        )


def _select_state(values: Sequence[torch.Tensor], pi: torch.Tensor) -> torch.Tensor:
    """The value of the most probable state (ties add up, as in scvi-tools)."""
    stacked = torch.stack([v.expand_as(values[0]) for v in values], dim=-1)
    mask = pi.ge(pi.amax(dim=-1, keepdim=True))
    return (stacked * mask).sum(dim=-1)


def latent_time(module: VELOVAE, chunk: PosteriorChunk, statistic: Literal["mean", "max"] = "mean") -> torch.Tensor:
    """Gene-wise latent time per draw, ``(S, cells, genes)``."""
    switch = F.softplus(module.switch_time_unconstr)
    ind_time = chunk.rho * switch
    rep_time = switch + chunk.tau * (module.t_max - switch)
    pi = chunk.pi
    if statistic == "mean":
        return pi[..., 0] * ind_time + pi[..., 2] * rep_time + pi[..., 1] * switch
    return _select_state([ind_time, switch, rep_time, torch.zeros_like(ind_time)], pi)


def velocity(
    module: VELOVAE,
    chunk: PosteriorChunk,
    statistic: Literal["mean", "max"] = "mean",
    mode: Literal["spliced", "unspliced"] = "spliced",
) -> torch.Tensor:
    """Velocity ``ds/dt`` (or ``du/dt``) per draw, ``(S, cells, genes)``."""
    gamma, beta, alpha, alpha_1, lambda_alpha = module._get_rates()
    dep = module.time_dep_transcription_rate
    switch = F.softplus(module.switch_time_unconstr)
    ind_time = switch * chunk.rho
    u_0, s_0 = induction(alpha, alpha_1, lambda_alpha, beta, gamma, switch, dep)
    u_rep, s_rep = repression(u_0, s_0, beta, gamma, (module.t_max - switch) * chunk.tau)
    u_ind, s_ind = induction(alpha, alpha_1, lambda_alpha, beta, gamma, ind_time, dep)
    if mode == "spliced":
        velo_rep = beta * u_rep - gamma * s_rep
        velo_ind = beta * u_ind - gamma * s_ind
    else:
        velo_rep = -beta * u_rep
        velo_ind = transcription_rate(alpha, alpha_1, lambda_alpha, ind_time, dep) - beta * u_ind
    pi = chunk.pi
    if statistic == "mean":
        return pi[..., 0] * velo_ind + pi[..., 2] * velo_rep
    zeros = torch.zeros_like(velo_ind)
    return _select_state([velo_ind, zeros, velo_rep, zeros], pi)


def expression_fit(module: VELOVAE, chunk: PosteriorChunk) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of the spliced and unspliced mixtures per draw, ``(S, cells, genes)`` each."""
    gamma, beta, alpha, alpha_1, lambda_alpha = module._get_rates()
    mean_u, mean_s, _ = module.state_means(chunk.rho, chunk.tau, gamma, beta, alpha, alpha_1, lambda_alpha)
    probs = chunk.pi / chunk.pi.sum(-1, keepdim=True)
    return (probs * mean_s).sum(-1), (probs * mean_u).sum(-1)


def gene_likelihood(module: VELOVAE, chunk: PosteriorChunk) -> torch.Tensor:
    """Per-gene log likelihood of the chunk's spliced plus unspliced abundances, ``(S, cells, genes)``."""
    gamma, beta, alpha, alpha_1, lambda_alpha = module._get_rates()
    mean_u, mean_s, _ = module.state_means(chunk.rho, chunk.tau, gamma, beta, alpha, alpha_1, lambda_alpha)
    outputs = {"px_pi": chunk.pi, "scale": F.softplus(module.scale_unconstr), "mean_u": mean_u, "mean_s": mean_s}
    ll_s, ll_u = module.log_likelihood(chunk.spliced, chunk.unspliced, outputs)
    return ll_s + ll_u


def reduce_samples(
    chunks: Iterator[PosteriorChunk],
    compute: Callable[[PosteriorChunk], torch.Tensor],
    n_rows: int,
    n_samples: int,
    gene_mask: np.ndarray | slice,
    return_mean: bool,
) -> np.ndarray:
    """Run ``compute`` over all chunks into one array: ``(cells, genes)`` or ``(S, cells, genes)``."""
    out: np.ndarray | None = None
    for chunk in chunks:
        values = compute(chunk)[..., gene_mask] if gene_mask is not None else compute(chunk)
        values = (values.mean(0) if return_mean else values).float().cpu().numpy()
        if return_mean:
            if out is None:
                out = np.empty((n_rows, *values.shape[1:]), dtype=np.float32)
            out[chunk.rows] = values
        else:
            if out is None:
                out = np.empty((n_samples, n_rows, *values.shape[2:]), dtype=np.float32)
            out[:, chunk.rows] = values
    if out is None:
        raise ValueError("No cells to query: `indices` is empty.")
    return out
