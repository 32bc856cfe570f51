"""Registered ``cf.tl`` functions: the estimators the scanpy way, results written through ``Results``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from cellflux.results import Results, resolve_target

from ._engine._drivers import driver_test
from ._engine._eigen import eigengap
from ._engine._states import top_cells
from ._estimators._drivers import expression
from ._estimators._gpcca import GPCCA
from ._keys import Key

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["absorption_times", "fate_probabilities", "lineage_drivers", "macrostates", "terminal_states"]

_PLUGIN = "cellflux-estimators"


def _states_from_obs(adata: AnnData, key: str) -> pd.Series:
    if key not in adata.obs:
        raise KeyError(f"adata.obs[{key!r}] does not exist; run cf.tl.terminal_states first (or pass terminal_key=).")
    col = adata.obs[key]
    if not isinstance(col.dtype, pd.CategoricalDtype):
        raise TypeError(f"adata.obs[{key!r}] must be categorical (NaN outside states).")
    return col


def macrostates(
    adata: AnnData,
    *,
    n_states: int | Sequence[int] | None = None,
    transition_key: str = "T_fwd",
    n_cells: int | None = 30,
    cluster_key: str | None = None,
    n_components: int = 20,
    which: Literal["LR", "LM"] = "LR",
    method: Literal["krylov", "dense", "auto"] = "auto",
    seed: int = 0,
    key_added: str = "macrostates_fwd",
    copy: bool = False,
    mod: str | None = None,
    overwrite: bool = False,
) -> AnnData | None:
    """GPCCA macrostates of the transition matrix in ``adata.obsp[transition_key]``.

    Parameters
    ----------
    adata
        AnnData with a row-stochastic transition matrix in ``obsp``.
    n_states
        Number of macrostates, a ``[min, max]`` range, or ``None`` for the eigengap.
    transition_key
        ``obsp`` key of the transition matrix.
    n_cells
        Cells per macrostate in the discrete assignment.
    cluster_key
        Name macrostates after these clusters.
    n_components
        Schur vectors to compute.
    which
        Eigenvalue sorting: ``"LR"`` or ``"LM"``.
    method
        Schur method: ``"krylov"``, ``"dense"`` or ``"auto"``.
    seed
        Random seed.
    key_added
        Where to write.
    copy
        Return a modified copy instead of writing in place.
    mod
        Modality of a MuData.
    overwrite
        Replace existing keys.

    Returns
    -------
    ``None``, or the copy with ``copy=True``. Writes ``obs[key_added]`` (categorical macrostates),
    ``obsm[key_added + "_memberships"]`` (DataFrame of memberships), ``obsm[key_added + "_schur"]`` (Schur
    vectors) and ``uns[key_added]`` (names, colours, coarse transition matrix ``coarse_T``, coarse initial and
    stationary distributions, eigenvalues, parameters; ``crispness`` and ``n_states_tried`` only when GPCCA
    optimised, i.e. not for ``n_states=1``).
    """
    target = resolve_target(adata, mod=mod, copy=copy)
    ad = target.adata
    g = GPCCA(ad, obsp_key=transition_key, seed=seed)
    g.compute_schur(n_components, which=which, method=method)
    g.compute_macrostates(n_states, n_cells=n_cells, cluster_key=cluster_key)
    names = list(g.macrostates.cat.categories)
    uns: dict[str, Any] = {
        "names": names,
        "colors": [g.colors[n] for n in names],
        "eigenvalues_real": g._schur.eigenvalues.real,
        "eigenvalues_imag": g._schur.eigenvalues.imag,
    }
    if g.crispness is not None:  # None for a single macrostate (no GPCCA optimisation)
        uns["crispness"] = g.crispness.to_numpy()
        uns["n_states_tried"] = g.crispness.index.to_numpy()
    if g.coarse_T is not None:
        uns["coarse_T"] = g.coarse_T.to_numpy()
        uns["coarse_init"] = g.coarse_initial_distribution.to_numpy()
        if g.coarse_stationary_distribution is not None:
            uns["coarse_stat"] = g.coarse_stationary_distribution.to_numpy()
    params = {
        "n_states": n_states,
        "transition_key": transition_key,
        "n_cells": n_cells,
        "cluster_key": cluster_key,
        "n_components": n_components,
        "which": which,
        "method": g._schur.method,
        "seed": seed,
    }
    res = Results(key_added, function="tl.macrostates", plugin=_PLUGIN, params=params)
    res.add("obs", key_added, pd.Categorical(g.macrostates.astype(object), categories=names))
    res.add("obsm", Key.memberships(key_added), g.macrostates_memberships)
    res.add("obsm", f"{key_added}_schur", g.schur_vectors)
    res.add("uns", key_added, uns)
    res.write(ad, overwrite=overwrite)
    return target.returned()


def terminal_states(
    adata: AnnData,
    *,
    method: Literal["stability", "top_n", "eigengap_coarse"] = "stability",
    macrostates_key: str = "macrostates_fwd",
    n_cells: int = 30,
    stability_threshold: float = 0.96,
    n_states: int | None = None,
    alpha: float = 1.0,
    key_added: str = "term_states_fwd",
    copy: bool = False,
    mod: str | None = None,
    overwrite: bool = False,
) -> AnnData | None:
    """Terminal states among the macrostates written by :func:`macrostates`.

    Parameters
    ----------
    adata
        AnnData with ``obsm[macrostates_key + "_memberships"]`` and ``uns[macrostates_key]["coarse_T"]``.
    method
        ``"stability"``, ``"top_n"`` or ``"eigengap_coarse"`` (see :meth:`GPCCA.predict_terminal_states`).
    macrostates_key
        Where :func:`macrostates` wrote.
    n_cells
        Cells per terminal state.
    stability_threshold
        For ``"stability"``.
    n_states
        For ``"top_n"``.
    alpha
        Eigengap weight.
    key_added
        Where to write.
    copy
        Return a modified copy.
    mod
        Modality of a MuData.
    overwrite
        Replace existing keys.

    Returns
    -------
    ``None``, or the copy with ``copy=True``. Writes ``obs[key_added]`` (categorical terminal states),
    ``obs[key_added + "_probs"]`` (membership scaled to ``[0, 1]``) and ``uns[key_added]`` (names, colours).
    """
    target = resolve_target(adata, mod=mod, copy=copy)
    ad = target.adata
    mkey = Key.memberships(macrostates_key)
    if mkey not in ad.obsm or macrostates_key not in ad.uns or "coarse_T" not in ad.uns[macrostates_key]:
        raise KeyError(
            f"adata.obsm[{mkey!r}] and adata.uns[{macrostates_key!r}]['coarse_T'] are needed; "
            "run cf.tl.macrostates first (with n_states >= 2)."
        )
    mem = pd.DataFrame(ad.obsm[mkey]).set_axis(ad.obs_names)
    names = list(mem.columns)
    diag = pd.Series(np.diag(np.asarray(ad.uns[macrostates_key]["coarse_T"])), index=names)
    if method == "stability":
        chosen = list(diag.index[diag.to_numpy() >= stability_threshold])
        if not chosen:
            raise ValueError(f"No macrostate has a coarse self-transition >= {stability_threshold}; lower it.")
    elif method == "top_n":
        if n_states is None or not 0 < n_states <= len(names):
            raise ValueError(f"method='top_n' needs n_states in [1, {len(names)}], got {n_states!r}.")
        chosen = list(diag.index[np.argsort(diag.to_numpy(), kind="stable")][len(names) - n_states :])
    elif method == "eigengap_coarse":
        n = eigengap(np.sort(diag.to_numpy())[::-1], alpha)
        chosen = list(diag.index[np.argsort(diag.to_numpy(), kind="stable")][len(names) - n :]) if n else []
        if not chosen:
            raise ValueError("The eigengap selected no terminal state; use method='top_n'.")
    else:
        raise ValueError(f"method={method!r} is not supported; use 'stability', 'top_n' or 'eigengap_coarse'.")
    sub = mem.loc[:, chosen].to_numpy()
    labels = top_cells(sub, n_cells)
    colors = dict(zip(names, ad.uns[macrostates_key].get("colors", []), strict=False))
    params = {
        "method": method,
        "macrostates_key": macrostates_key,
        "n_cells": n_cells,
        "stability_threshold": stability_threshold,
        "n_states": n_states,
        "alpha": alpha,
    }
    res = Results(key_added, function="tl.terminal_states", plugin=_PLUGIN, params=params)
    res.add("obs", key_added, pd.Categorical.from_codes(labels, categories=chosen))
    res.add("obs", Key.probs(key_added), (sub / sub.max(axis=0)).max(axis=1))
    res.add("uns", key_added, {"names": chosen, "colors": [str(colors.get(c, "#808080")) for c in chosen]})
    res.write(ad, overwrite=overwrite)
    return target.returned()


def _gpcca_with_states(ad: AnnData, transition_key: str, terminal_key: str, seed: int) -> GPCCA:
    g = GPCCA(ad, obsp_key=transition_key, seed=seed)
    states = _states_from_obs(ad, terminal_key)
    g.set_terminal_states(pd.Series(states.to_numpy(), index=ad.obs_names).astype(states.dtype))
    return g


def fate_probabilities(
    adata: AnnData,
    *,
    terminal_key: str = "term_states_fwd",
    transition_key: str = "T_fwd",
    keys: Sequence[str] | None = None,
    solver: Literal["auto", "direct", "gmres", "lgmres", "bicgstab"] = "auto",
    preconditioner: Literal["twolevel", "ilu", "jacobi"] | None = None,
    tol: float = 1e-6,
    n_jobs: int | None = None,
    key_added: str = "lineages_fwd",
    copy: bool = False,
    mod: str | None = None,
    overwrite: bool = False,
) -> AnnData | None:
    """Fate probabilities towards the terminal states in ``obs[terminal_key]``.

    Parameters
    ----------
    adata
        AnnData with a transition matrix in ``obsp`` and categorical terminal states in ``obs``.
    terminal_key
        The terminal states.
    transition_key
        ``obsp`` key of the transition matrix.
    keys
        Lineages; merge states as ``"Alpha, Beta"``.
    solver, preconditioner, tol, n_jobs
        Linear solver and threads over lineages (see :meth:`GPCCA.compute_fate_probabilities`).
    key_added
        Where to write.
    copy
        Return a modified copy.
    mod
        Modality of a MuData.
    overwrite
        Replace existing keys.

    Returns
    -------
    ``None``, or the copy with ``copy=True``. Writes ``obsm[key_added]`` (DataFrame, cells x lineages, rows
    summing to 1) and ``uns[key_added]`` (lineage names, colours, the solver's residual).
    """
    target = resolve_target(adata, mod=mod, copy=copy)
    ad = target.adata
    g = _gpcca_with_states(ad, transition_key, terminal_key, 0)
    g.compute_fate_probabilities(keys, solver=solver, preconditioner=preconditioner, tol=tol, n_jobs=n_jobs)
    fp = g.fate_probabilities
    params = {
        "terminal_key": terminal_key,
        "transition_key": transition_key,
        "keys": keys,
        "solver": solver,
        "preconditioner": preconditioner,
        "tol": tol,
        "n_jobs": n_jobs,
    }
    res = Results(key_added, function="tl.fate_probabilities", plugin=_PLUGIN, params=params)
    res.add("obsm", key_added, fp)
    res.add(
        "uns",
        key_added,
        {
            "names": list(fp.columns),
            "colors": [g.colors.get(c, "#808080") for c in fp.columns],
            "max_residual": g._solve_report["max_residual"],
            "solver": g._solve_report["solver"],
        },
    )
    res.write(ad, overwrite=overwrite)
    return target.returned()


def absorption_times(
    adata: AnnData,
    *,
    terminal_key: str = "term_states_fwd",
    transition_key: str = "T_fwd",
    keys: Sequence[str] | None = None,
    calculate_variance: bool = False,
    solver: Literal["auto", "direct", "gmres", "lgmres", "bicgstab"] = "auto",
    tol: float = 1e-6,
    n_jobs: int | None = None,
    key_added: str = "absorption_times_fwd",
    copy: bool = False,
    mod: str | None = None,
    overwrite: bool = False,
) -> AnnData | None:
    """Mean (and variance of) the time to absorption in the terminal states.

    Parameters
    ----------
    adata
        AnnData with a transition matrix in ``obsp`` and categorical terminal states in ``obs``.
    terminal_key
        The terminal states.
    transition_key
        ``obsp`` key of the transition matrix.
    keys
        Lineages; merge states as ``"Alpha, Beta"``.
    calculate_variance
        Also compute variances.
    solver, tol, n_jobs
        Linear solver and threads (see :meth:`GPCCA.compute_fate_probabilities`).
    key_added
        Where to write.
    copy
        Return a modified copy.
    mod
        Modality of a MuData.
    overwrite
        Replace existing keys.

    Returns
    -------
    ``None``, or the copy with ``copy=True``. Writes ``obsm[key_added]`` (DataFrame with ``<lineage>_mean`` and
    optionally ``<lineage>_var`` columns; ``inf`` where a state is unreachable) and ``uns[key_added]`` (parameters).
    """
    target = resolve_target(adata, mod=mod, copy=copy)
    ad = target.adata
    g = _gpcca_with_states(ad, transition_key, terminal_key, 0)
    g.compute_absorption_times(keys, calculate_variance=calculate_variance, solver=solver, tol=tol, n_jobs=n_jobs)
    params = {
        "terminal_key": terminal_key,
        "transition_key": transition_key,
        "keys": keys,
        "calculate_variance": calculate_variance,
        "solver": solver,
        "tol": tol,
        "n_jobs": n_jobs,
    }
    res = Results(key_added, function="tl.absorption_times", plugin=_PLUGIN, params=params)
    res.add("obsm", key_added, g.absorption_times)
    res.write(ad, overwrite=overwrite)
    return target.returned()


def lineage_drivers(
    adata: AnnData,
    *,
    fate_key: str = "lineages_fwd",
    lineages: Sequence[str] | None = None,
    method: Literal["fisher", "perm_test"] = "fisher",
    correlation: Literal["pearson", "spearman"] = "pearson",
    layer: str | None = None,
    cluster_key: str | None = None,
    clusters: Sequence[str] | None = None,
    confidence_level: float = 0.95,
    n_perms: int = 1000,
    seed: int = 0,
    key_added: str = "drivers_fwd",
    copy: bool = False,
    mod: str | None = None,
    overwrite: bool = False,
) -> AnnData | None:
    """Genes correlated with each lineage's fate probabilities.

    Parameters
    ----------
    adata
        AnnData with fate probabilities in ``obsm[fate_key]``.
    fate_key
        Where :func:`fate_probabilities` wrote.
    lineages
        Lineages to test (default all).
    method
        ``"fisher"`` or ``"perm_test"``.
    correlation
        ``"pearson"`` or ``"spearman"``.
    layer
        Expression to correlate (``X`` by default).
    cluster_key, clusters
        Restrict to these clusters.
    confidence_level
        Level of the intervals.
    n_perms
        Permutations for ``perm_test``.
    seed
        Random seed.
    key_added
        Prefix of the columns written.
    copy
        Return a modified copy.
    mod
        Modality of a MuData.
    overwrite
        Replace existing keys.

    Returns
    -------
    ``None``, or the copy with ``copy=True``. Writes ``var[key_added + "_<lineage>_corr"]`` and ``_pval``,
    ``_qval`` (Benjamini–Hochberg), ``_ci_low``, ``_ci_high`` for each lineage, and ``uns[key_added]`` (lineages).
    """
    target = resolve_target(adata, mod=mod, copy=copy)
    ad = target.adata
    if fate_key not in ad.obsm:
        raise KeyError(f"adata.obsm[{fate_key!r}] does not exist; run cf.tl.fate_probabilities first.")
    fp = pd.DataFrame(ad.obsm[fate_key]).set_axis(ad.obs_names)
    used = list(fp.columns) if lineages is None else ([lineages] if isinstance(lineages, str) else list(lineages))
    unknown = [lin for lin in used if lin not in fp.columns]
    if unknown or not used:
        raise KeyError(f"Unknown lineage(s) {unknown}; the lineages are {list(fp.columns)}.")
    mask = np.ones(ad.n_obs, dtype=bool)
    if clusters is not None:
        if cluster_key is None or cluster_key not in ad.obs:
            raise KeyError(f"clusters= needs cluster_key= naming a column of adata.obs, got {cluster_key!r}.")
        wanted = [clusters] if isinstance(clusters, str) else list(clusters)
        mask = ad.obs[cluster_key].astype(str).isin(wanted).to_numpy()
        if not mask.any():
            raise KeyError(f"No cell of adata.obs[{cluster_key!r}] is in {wanted}.")
    x, _ = expression(ad, layer, False)
    stats = driver_test(
        x[mask] if not mask.all() else x,
        fp.loc[:, used].to_numpy()[mask],
        method=method,
        correlation=correlation,
        confidence_level=confidence_level,
        n_perms=n_perms,
        seed=seed,
        show_progress_bar=False,
    )
    params = {
        "fate_key": fate_key,
        "lineages": lineages,
        "method": method,
        "correlation": correlation,
        "layer": layer,
        "cluster_key": cluster_key,
        "clusters": clusters,
        "confidence_level": confidence_level,
        "n_perms": n_perms,
        "seed": seed,
    }
    res = Results(key_added, function="tl.lineage_drivers", plugin=_PLUGIN, params=params)
    for j, lin in enumerate(used):
        for stat in ("corr", "pval", "qval", "ci_low", "ci_high"):
            res.add("var", Key.driver_column(key_added, lin, stat), getattr(stats, stat)[:, j])
    res.add("uns", key_added, {"lineages": used})
    res.write(ad, overwrite=overwrite)
    return target.returned()
