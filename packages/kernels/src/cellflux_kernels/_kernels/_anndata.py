"""Reading kernel inputs from AnnData with errors that name the key and how to compute it."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from anndata import AnnData
from scipy import sparse

from .._engine._csr import as_csr, components

__all__ = ["read_connectivities", "read_matrix", "resolve_gene_subset"]

logger = logging.getLogger(__name__)

_HOW = {
    "Ms": "run scvelo.pp.moments(adata) (or cf.pp.kernel_inputs on simulated data)",
    "Mu": "run scvelo.pp.moments(adata)",
    "velocity": "run scvelo.tl.velocity(adata) (or use a VAE's velocity, e.g. cf.tl of cellflux-velocity-vae)",
    "variance_velocity": "run scvelo.tl.velocity(adata, mode='stochastic') which writes the velocity variance",
    "connectivities": "run scanpy.pp.neighbors(adata) (or cf.pp.kernel_inputs)",
}


def _how(key: str) -> str:
    return _HOW.get(key, "compute it first")


def read_matrix(adata: AnnData, key: str, attr: str = "layers") -> np.ndarray | sparse.spmatrix:
    """``adata.X`` (key ``"X"``), ``adata.layers[key]`` or ``adata.obsm[key]``; a clear ``KeyError`` if absent."""
    if key in (None, "X"):
        return adata.X
    if attr not in ("layers", "obsm"):
        raise ValueError(f"attr must be 'layers' or 'obsm', got {attr!r}.")
    container = getattr(adata, attr)
    if key not in container:
        raise KeyError(f"adata.{attr}[{key!r}] is missing; {_how(key)}. Available: {sorted(container.keys())}.")
    return container[key]


def resolve_gene_subset(adata: AnnData, gene_subset: Sequence[str] | np.ndarray | str | None) -> np.ndarray | None:
    """A boolean mask over ``var_names`` from names, a boolean mask or a ``var`` column name."""
    if gene_subset is None:
        return None
    if isinstance(gene_subset, str):
        if gene_subset not in adata.var:
            raise KeyError(f"adata.var[{gene_subset!r}] (the gene subset) is missing.")
        gene_subset = adata.var[gene_subset].to_numpy()
    subset = np.asarray(gene_subset)
    if subset.dtype == bool:
        if subset.shape != (adata.n_vars,):
            raise ValueError(f"A boolean gene_subset must have length n_vars={adata.n_vars}, got {subset.shape}.")
        mask = subset
    else:
        missing = np.setdiff1d(subset.astype(str), adata.var_names.to_numpy().astype(str))
        if len(missing):
            raise KeyError(f"{len(missing)} genes of gene_subset are not in var_names, e.g. {missing[:5].tolist()}.")
        mask = np.isin(adata.var_names, subset)
    if not mask.any():
        raise ValueError("gene_subset selects no gene.")
    return mask


def read_connectivities(adata: AnnData, conn_key: str, *, check: bool = True) -> sparse.csr_matrix:
    """The kNN connectivities ``obsp[conn_key]`` as canonical float64 CSR, checked.

    Raises for a missing key, a wrong shape, negative or non-finite weights and cells without
    neighbours; warns (naming the components' sizes) when the graph is disconnected.
    """
    if conn_key not in adata.obsp:
        raise KeyError(
            f"adata.obsp[{conn_key!r}] is missing; {_how('connectivities')}. Available: {sorted(adata.obsp.keys())}."
        )
    conn = as_csr(adata.obsp[conn_key])
    if conn.shape != (adata.n_obs, adata.n_obs):
        raise ValueError(f"adata.obsp[{conn_key!r}] has shape {conn.shape}, expected ({adata.n_obs}, {adata.n_obs}).")
    if not np.all(np.isfinite(conn.data)) or np.any(conn.data < 0):
        raise ValueError(f"adata.obsp[{conn_key!r}] has negative, NaN or infinite weights.")
    conn.eliminate_zeros()
    if check:
        lonely = np.flatnonzero(np.diff(conn.indptr) == 0)
        if len(lonely):
            raise ValueError(
                f"{len(lonely)} cells have no neighbours in adata.obsp[{conn_key!r}] "
                f"(e.g. {adata.obs_names[lonely[:5]].tolist()}); recompute the graph or remove them."
            )
        warn_if_disconnected(conn, f"adata.obsp[{conn_key!r}]")
    return conn


def warn_if_disconnected(graph: sparse.spmatrix, name: str, *, connection: str = "weak") -> int:
    """Log a warning naming the components (their sizes) when ``graph`` is not connected; return their number."""
    n_comp, labels = components(graph, connection=connection)
    if n_comp > 1:
        sizes = np.bincount(labels)
        order = np.argsort(sizes)[::-1]
        shown = ", ".join(f"component {c}: {sizes[c]} cells" for c in order[:5])
        logger.warning(
            "The graph %s is not %s connected: %d components (%s%s).",
            name,
            "weakly" if connection == "weak" else "strongly",
            n_comp,
            shown,
            ", ..." if n_comp > 5 else "",
        )
    return n_comp
