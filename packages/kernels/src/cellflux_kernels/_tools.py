"""Registered functions: ``cf.pp.kernel_inputs`` and ``cf.tl.transition_matrix``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from scipy import sparse

from ._engine._neighbors import knn_connectivities, moments, pca
from ._keys import Key

if TYPE_CHECKING:
    from anndata import AnnData

    from ._kernels._base import KernelExpression

__all__ = ["kernel_inputs", "transition_matrix"]

PLUGIN = "cellflux-kernels"
KINDS = ("velocity", "connectivity", "pseudotime", "cytotrace")


def kernel_inputs(
    adata: AnnData,
    *,
    layer: str = "spliced",
    velocity_layer: str | None = "true_velocity",
    n_pcs: int = 30,
    n_neighbors: int = 30,
    key_added: str = "kernel_inputs",
    copy: bool = False,
    mod: str | None = None,
    overwrite: bool = False,
) -> AnnData | None:
    """Prepare what the kernels read, without a preprocessing library (for simulated or small data).

    Counts in ``layer`` are size-normalised (to the median total) and log-transformed for a PCA; a
    Gaussian kNN graph is built on the PCA, and the first moments of the size-normalised counts
    over each neighbourhood give ``Ms``. With ``velocity_layer`` (e.g. the simulator's true velocity,
    in counts per unit time) the velocity is size-normalised the same way.

    Parameters
    ----------
    adata
        Annotated data with counts in ``layer``.
    layer
        Counts (e.g. ``"spliced"``).
    velocity_layer
        Velocity in count units to copy (size-normalised) to ``layers["velocity"]``; ``None`` for none.
    n_pcs
        Number of principal components.
    n_neighbors
        Neighbours per cell.
    key_added
        Where the parameters go: ``uns[key_added]``.
    copy
        Return a modified copy instead of writing into ``adata``.
    mod
        Modality of a MuData.
    overwrite
        Replace existing keys.

    Returns
    -------
    ``None`` (or the copy with ``copy=True``); writes ``layers["Ms"]``, ``layers["velocity"]`` (with
    ``velocity_layer``), ``obsm["X_pca"]``, ``obsp["connectivities"]``, ``obsp["distances"]`` and the
    parameters in ``uns[key_added]``.
    """
    from cellflux.results import Results, resolve_target

    target = resolve_target(adata, mod=mod, copy=copy)
    data = target.adata
    if layer not in data.layers:
        raise KeyError(f"adata.layers[{layer!r}] (counts) is missing; available: {sorted(data.layers.keys())}.")
    counts = data.layers[layer]
    counts = counts.toarray() if sparse.issparse(counts) else np.asarray(counts, dtype=np.float64)
    if not np.isfinite(counts).all():
        raise ValueError(f"adata.layers[{layer!r}] has NaN or infinite values.")
    total = counts.sum(axis=1)
    if np.any(total <= 0):
        raise ValueError(
            f"{int((total <= 0).sum())} cells have no counts in adata.layers[{layer!r}]; filter them first."
        )
    factor = (np.median(total) / total)[:, None]
    normalised = counts * factor
    scores = pca(np.log1p(normalised), n_pcs)
    conn, dist = knn_connectivities(scores, n_neighbors)
    Ms, _ = moments(conn, normalised)
    results = Results(
        key_added,
        function="pp.kernel_inputs",
        plugin=PLUGIN,
        params={
            "layer": layer,
            "velocity_layer": velocity_layer,
            "n_pcs": int(scores.shape[1]),
            "n_neighbors": n_neighbors,
        },
    )
    results.add("layers", Key.XKEY, Ms)
    if velocity_layer is not None:
        if velocity_layer not in data.layers:
            raise KeyError(
                f"adata.layers[{velocity_layer!r}] (velocity) is missing; pass velocity_layer=None to skip it."
            )
        vel = data.layers[velocity_layer]
        vel = vel.toarray() if sparse.issparse(vel) else np.asarray(vel, dtype=np.float64)
        results.add("layers", Key.VKEY, vel * factor)
    results.add("obsm", "X_pca", scores)
    results.add("obsp", Key.CONNECTIVITIES, conn)
    results.add("obsp", "distances", dist)
    results.write(data, overwrite=overwrite)
    return target.returned()


def transition_matrix(
    adata: AnnData,
    *,
    weights: Mapping[str, float] | None = None,
    backward: bool = False,
    xkey: str = Key.XKEY,
    vkey: str = Key.VKEY,
    conn_key: str = Key.CONNECTIVITIES,
    time_key: str | None = None,
    mode: Literal["deterministic", "stochastic", "monte_carlo", "sampling"] = "deterministic",
    similarity: Literal["correlation", "cosine", "dot_product"] = "correlation",
    softmax_scale: float | None = None,
    threshold_scheme: Literal["hard", "soft"] = "hard",
    density_normalize: bool = True,
    seed: int | None = 0,
    show_progress_bar: bool = False,
    key_added: str | None = None,
    copy: bool = False,
    mod: str | None = None,
    overwrite: bool = False,
) -> AnnData | None:
    """Build the usual kernel combination in one call and write its transition matrix.

    By default ``0.8 * VelocityKernel + 0.2 * ConnectivityKernel``, CellRank's recommended mix.

    Parameters
    ----------
    adata
        Annotated data with a kNN graph and what the chosen kernels read.
    weights
        Kernel kind to weight, among ``"velocity"``, ``"connectivity"``, ``"pseudotime"`` and
        ``"cytotrace"``; default ``{"velocity": 0.8, "connectivity": 0.2}``. Weights are normalised.
    backward
        Build the backward process.
    xkey, vkey
        Expression and velocity layers (velocity kernel).
    conn_key
        ``obsp`` key of the kNN connectivities.
    time_key
        ``obs`` column of the pseudotime (pseudotime kernel).
    mode, similarity, softmax_scale
        Velocity kernel options, see :meth:`VelocityKernel.compute_transition_matrix`.
    threshold_scheme
        Pseudotime / CytoTRACE kernel scheme.
    density_normalize
        Connectivity kernel option.
    seed
        Random seed (Monte-Carlo modes).
    show_progress_bar
        Show progress bars.
    key_added
        Where to write; default ``"T_fwd"`` (``"T_bwd"`` when backward).
    copy
        Return a modified copy instead of writing into ``adata``.
    mod
        Modality of a MuData.
    overwrite
        Replace existing keys.

    Returns
    -------
    ``None`` (or the copy with ``copy=True``); writes the row-stochastic CSR matrix to
    ``obsp[key_added]`` and the parameters, the kernel expression and the provenance to ``uns[key_added]``.
    """
    from cellflux.results import resolve_target

    from ._kernels._connectivity import ConnectivityKernel
    from ._kernels._cytotrace import CytoTRACEKernel
    from ._kernels._pseudotime import PseudotimeKernel
    from ._kernels._velocity import VelocityKernel

    weights = dict(weights) if weights is not None else {"velocity": 0.8, "connectivity": 0.2}
    unknown = set(weights) - set(KINDS)
    if unknown or not weights:
        raise ValueError(f"weights must map some of {KINDS} to positive numbers, got {weights}.")
    if any(not np.isfinite(w) or w <= 0 for w in weights.values()):
        raise ValueError(f"weights must be positive, got {weights}.")
    target = resolve_target(adata, mod=mod, copy=copy)
    data = target.adata
    terms: list[KernelExpression] = []
    for kind, weight in weights.items():
        if kind == "velocity":
            kernel = VelocityKernel(data, backward=backward, xkey=xkey, vkey=vkey, conn_key=conn_key)
            kernel.compute_transition_matrix(
                mode=mode,
                similarity=similarity,
                softmax_scale=softmax_scale,
                seed=seed,
                show_progress_bar=show_progress_bar,
            )
        elif kind == "connectivity":
            kernel = ConnectivityKernel(data, conn_key=conn_key).compute_transition_matrix(
                density_normalize=density_normalize
            )
        elif kind == "pseudotime":
            if time_key is None:
                raise ValueError("weights has 'pseudotime'; pass time_key= (an obs column).")
            kernel = PseudotimeKernel(data, time_key=time_key, backward=backward, conn_key=conn_key)
            kernel.compute_transition_matrix(threshold_scheme=threshold_scheme)
        else:
            kernel = CytoTRACEKernel(data, backward=backward, conn_key=conn_key)
            if kernel.pseudotime is None:
                raise ValueError(
                    "weights has 'cytotrace' but obs['ct_pseudotime'] is missing; "
                    "run CytoTRACEKernel(adata).compute_cytotrace()."
                )
            kernel.compute_transition_matrix(threshold_scheme=threshold_scheme)
        terms.append(weight * kernel)
    expr = terms[0]
    for term in terms[1:]:
        expr = expr + term
    expr.compute_transition_matrix()
    key = Key.transition(backward, key_added)
    params = {
        "weights": weights,
        "backward": backward,
        "xkey": xkey,
        "vkey": vkey,
        "conn_key": conn_key,
        "time_key": time_key,
        "mode": mode,
        "similarity": similarity,
        "softmax_scale": softmax_scale,
        "threshold_scheme": threshold_scheme,
        "density_normalize": density_normalize,
        "seed": seed,
    }
    write_expression(expr, key, function="tl.transition_matrix", params=params, overwrite=overwrite)
    return target.returned()


def write_expression(
    expr: KernelExpression, key: str, *, function: str, params: Mapping[str, Any], overwrite: bool
) -> None:
    """Write ``expr``'s matrix to ``obsp[key]`` and ``params`` plus the kernels' parameters to ``uns[key]``."""
    from cellflux.results import Results

    from ._kernels._base import _storable

    results = Results(key, function=function, plugin=PLUGIN, params=_storable(params))
    results.add("obsp", key, expr.transition_matrix.copy())
    results.add(
        "uns",
        key,
        {
            Key.KERNEL: type(expr).__name__,
            Key.EXPRESSION: repr(expr),
            "kernel_params": _storable(expr.params),
            "backward": "none" if expr.backward is None else bool(expr.backward),
        },
    )
    results.write(expr.adata, overwrite=overwrite)


def example_kernel_inputs(adata: AnnData) -> dict[str, Any]:
    """Keyword arguments of a representative ``cf.pp.kernel_inputs`` call on simulated data."""
    return {"n_pcs": 10, "n_neighbors": 15}


def example_transition_matrix(adata: AnnData) -> dict[str, Any]:
    """Prepare simulated data (kNN graph, moments, velocity) and return ``cf.tl.transition_matrix`` kwargs."""
    kernel_inputs(adata, n_pcs=10, n_neighbors=15)
    return {"weights": {"velocity": 0.8, "connectivity": 0.2}, "mode": "deterministic"}
