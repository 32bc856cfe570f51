"""The scanpy-style layer: read AnnData, call the engine, write with :class:`cellflux.results.Results`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import sparse

from cellflux.results import Results, resolve_target

from ._keys import Key

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["differential_abundance", "differential_expression", "gp_smooth"]

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------------
# input checks (all before any computation; nothing is written on failure)
# --------------------------------------------------------------------------------------------------


def _representation(adata: AnnData, obsm_key: str) -> np.ndarray:
    if obsm_key not in adata.obsm:
        raise KeyError(
            f"obsm[{obsm_key!r}] is missing; compute a representation first (e.g. PCA) "
            f"or pass obsm_key= one of {list(adata.obsm)}."
        )
    x = adata.obsm[obsm_key]
    x = np.asarray(x.toarray() if sparse.issparse(x) else x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"obsm[{obsm_key!r}] must be two-dimensional, got shape {x.shape}.")
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        raise ValueError(f"obsm[{obsm_key!r}] has NaN or inf in {int(bad.sum())} cells; remove or impute them first.")
    return x


def _condition_masks(
    adata: AnnData, groupby: str, conditions: Sequence[str], min_cells: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    if groupby not in adata.obs:
        raise KeyError(f"obs[{groupby!r}] is missing; pass groupby= the column that holds the conditions.")
    if isinstance(conditions, str) or len(conditions) != 2:
        raise ValueError(f"conditions must be two condition names (reference, comparison), got {conditions!r}.")
    c1, c2 = (str(c) for c in conditions)
    if c1 == c2:
        raise ValueError(f"The two conditions are the same ({c1!r}); pass two different ones.")
    for c in (c1, c2):
        if "/" in c:  # the names become parts of result keys, and h5ad reads a '/' as a nested group
            raise ValueError(
                f"Condition {c!r} contains '/', which the result keys it names cannot hold in h5ad; rename it "
                f"(e.g. adata.obs[{groupby!r}] = adata.obs[{groupby!r}].cat.rename_categories(...))."
            )
    labels = adata.obs[groupby].astype(str).to_numpy()
    available = sorted(set(labels))
    masks = []
    for c in (c1, c2):
        mask = labels == c
        if not mask.any():
            raise ValueError(f"Condition {c!r} is absent from obs[{groupby!r}]; available: {available}.")
        if mask.sum() < min_cells:
            raise ValueError(f"Condition {c!r} has {int(mask.sum())} cells; at least {min_cells} are needed.")
        masks.append(mask)
    return masks[0], masks[1]


def _samples(
    adata: AnnData, sample_key: str | None, masks: Sequence[np.ndarray], conditions: Sequence[str]
) -> tuple[Any, Any]:
    if sample_key is None:
        return None, None
    if sample_key not in adata.obs:
        raise KeyError(f"obs[{sample_key!r}] is missing; pass sample_key= the column of replicate samples, or None.")
    labels = adata.obs[sample_key].astype(str).to_numpy()
    out = []
    for mask, c in zip(masks, conditions, strict=True):
        present = np.unique(labels[mask])
        if len(present) < 2:
            raise ValueError(
                f"Condition {c!r} has {len(present)} sample(s) in obs[{sample_key!r}] ({list(present)}); the sample "
                "variance needs at least 2 replicates per condition. Pass sample_key=None to skip it."
            )
        out.append(labels[mask])
    return out[0], out[1]


def _expression(adata: AnnData, layer: str | None, genes: Sequence[str] | None) -> tuple[Any, np.ndarray]:
    if layer is not None and layer not in adata.layers:
        raise KeyError(f"layers[{layer!r}] is missing; pass layer= one of {list(adata.layers)} or None for X.")
    matrix = adata.X if layer is None else adata.layers[layer]
    if matrix is None:
        raise ValueError("adata.X is empty; pass layer= a log-normalised expression layer.")
    if genes is None:
        idx = np.arange(adata.n_vars)
    else:
        genes = [genes] if isinstance(genes, str) else list(genes)
        missing = [g for g in genes if g not in adata.var_names]
        if missing:
            raise KeyError(
                f"{len(missing)} gene(s) are not in var_names: {missing[:5]}{' ...' if len(missing) > 5 else ''}."
            )
        if not genes:
            raise ValueError("genes is empty; pass at least one gene or None for all.")
        idx = adata.var_names.get_indexer(genes)
    y = matrix[:, idx]
    values = y.data if sparse.issparse(y) else np.asarray(y)
    if not np.all(np.isfinite(values)):
        where = "X" if layer is None else f"layers[{layer!r}]"
        raise ValueError(f"{where} contains NaN or inf for the selected genes; clean the expression first.")
    y = sparse.csr_matrix(y, dtype=np.float64) if sparse.issparse(y) else np.asarray(y, dtype=np.float64)
    return y, idx


def _rows(y, mask: np.ndarray):
    return y[np.flatnonzero(mask)]


def _null_expression(y, n_null: int, seed: int | None) -> np.ndarray:
    """``n_null`` genes drawn from ``y``, each with its values permuted across all cells (kompot's null)."""
    rng = np.random.default_rng(seed)
    n_genes = y.shape[1]
    chosen = rng.choice(n_genes, size=n_null, replace=n_null > n_genes)
    out = np.empty((y.shape[0], n_null), dtype=np.float64)
    for j, g in enumerate(chosen):
        col = y[:, [g]].toarray().ravel() if sparse.issparse(y) else np.asarray(y[:, g]).ravel()
        out[:, j] = rng.permutation(col)
    return out


def _hstack(a, b: np.ndarray):
    return sparse.hstack([a, sparse.csr_matrix(b)], format="csr") if sparse.issparse(a) else np.hstack([a, b])


# --------------------------------------------------------------------------------------------------
# differential abundance
# --------------------------------------------------------------------------------------------------


def differential_abundance(
    adata: AnnData,
    *,
    groupby: str = "condition",
    conditions: Sequence[str],
    obsm_key: str = Key.OBSM,
    sample_key: str | None = None,
    n_landmarks: int | None = None,
    ls: float | None = None,
    ls_factor: float | None = None,
    n_neighbors: int = 1,
    method: str = "ratio",
    prior_std: float | None = None,
    ratio_ls: str = "fixed",
    log_fold_change_threshold: float | None = None,
    ptp_threshold: float = 0.05,
    random_state: int | None = 0,
    n_jobs: int | None = None,
    progress: bool = False,
    key_added: str = Key.DA,
    copy: bool = False,
    mod: str | None = None,
    overwrite: bool = False,
) -> AnnData | None:
    """Differential abundance between two conditions from Gaussian-process cell densities.

    Fits the log density of each condition on the representation ``obsm[obsm_key]`` (mellon's model,
    see :class:`~cellflux_gp_differential.DifferentialAbundance`) and compares them at every cell.

    Parameters
    ----------
    adata
        AnnData (or MuData with ``mod``).
    groupby
        ``obs`` column of the conditions.
    conditions
        ``(reference, comparison)``: the log fold change is comparison minus reference.
    obsm_key
        Cell-state representation (PCA, diffusion components, ...).
    sample_key
        ``obs`` column of replicate samples; adds the between-sample variance (needs >= 2 per condition).
    n_landmarks
        Landmarks shared by both conditions; ``None``: ``min(1000, cells)``.
    ls
        Length scale; ``None``: the data-driven default (or kompot's rule with ``ls_factor``).
    ls_factor
        kompot's rule: mellon's length scale times ``ls_factor`` (kompot uses 10).
    n_neighbors
        Neighbour distance of the density likelihood (1: mellon's).
    method
        ``"ratio"``: fit the log fold change directly as a log density ratio (more accurate, the
        default); ``"density"``: kompot's difference of the two log densities.
    prior_std
        ``method="ratio"``: prior standard deviation of the log fold change; ``None``: 0.1 at 2,000 cells,
        scaled by ``sqrt(2000 / cells)`` (see :class:`~cellflux_gp_differential.DifferentialAbundance`).
    ratio_ls
        ``method="ratio"``: ``"fixed"`` (default) length scale, 4 times the density length scale, or
        ``"evidence"``: chosen per data set among 1-32 times it by the largest Laplace evidence (type-II
        maximum likelihood; on the simulator it ranks the planted depletion slightly worse on average).
    log_fold_change_threshold, ptp_threshold
        Thresholds of the up/down calls; ``log_fold_change_threshold=None``: 0 with ``method="ratio"``
        (call on the posterior tail probability), kompot's 1 with ``method="density"``.
    random_state
        Seed of the landmark k-means.
    n_jobs
        Threads for the fits and predictions (``None``: all cores; results do not depend on it).
    progress
        Show progress bars.
    key_added
        Prefix of the written fields and key of the parameters.
    copy
        Return a modified copy instead of writing into ``adata``.
    mod
        MuData modality.
    overwrite
        Replace existing fields.

    Returns
    -------
    ``None``, or the modified copy with ``copy=True``. Writes:

    ``obs[f"{key_added}_log_fold_change"]``
        Log density of the comparison minus the reference (natural log; with ``method="ratio"`` the
        directly fitted log density ratio).
    ``obs[f"{key_added}_zscore"]``, ``obs[f"{key_added}_neg_log10_ptp"]``
        z-score and ``-log10`` posterior tail probability of the log fold change.
    ``obs[f"{key_added}_log_fold_change_variance"]``
        Its variance.
    ``obs[f"{key_added}_direction"]``
        ``"up"``/``"down"``/``"neutral"`` (categorical).
    ``obs[f"{key_added}_log_density_{condition}"]``
        Log density of each condition (normalised by its cell count).
    ``uns[key_added]``
        ``params``, ``provenance``, ``conditions``, ``landmarks``, ``ls``, ``d``.
    """
    from ._abundance import DifferentialAbundance

    target = resolve_target(adata, mod=mod, copy=copy)
    data = target.adata
    x = _representation(data, obsm_key)
    c1, c2 = (str(c) for c in conditions) if not isinstance(conditions, str) else (conditions, "")
    m1, m2 = _condition_masks(data, groupby, conditions)
    s1, s2 = _samples(data, sample_key, (m1, m2), (c1, c2))
    model = DifferentialAbundance(
        log_fold_change_threshold=log_fold_change_threshold,
        ptp_threshold=ptp_threshold,
        n_landmarks=n_landmarks,
        random_state=random_state,
        n_jobs=n_jobs,
        method=method,
        prior_std=prior_std,
        ratio_ls=ratio_ls,
    )
    kwargs: dict[str, Any] = {"n_neighbors": n_neighbors}
    if ls is not None:
        kwargs["ls"] = ls
    model.fit(x[m1], x[m2], ls_factor=ls_factor, condition1_sample_indices=s1, condition2_sample_indices=s2, **kwargs)
    result = model.predict(x, progress=progress)

    params = {
        "groupby": groupby,
        "conditions": [c1, c2],
        "obsm_key": obsm_key,
        "sample_key": sample_key,
        "n_landmarks": n_landmarks,
        "ls": ls,
        "ls_factor": ls_factor,
        "n_neighbors": n_neighbors,
        "method": method,
        "prior_std": prior_std,
        "ratio_prior_std": model.ratio_prior_std,
        "ratio_ls_rule": ratio_ls,
        "ratio_ls": model.ratio_ls,
        "ratio_n_landmarks": None if model.ratio_landmarks is None else len(model.ratio_landmarks),
        "log_fold_change_threshold": model.log_fold_change_threshold,
        "ptp_threshold": ptp_threshold,
        "random_state": random_state,
    }
    results = Results(key_added, function="tl.differential_abundance", plugin=Key.PLUGIN, params=params)
    f = Key.field
    results.add("obs", f(key_added, Key.LOG_FOLD_CHANGE), result["log_fold_change"])
    results.add("obs", f(key_added, Key.ZSCORE), result["log_fold_change_zscore"])
    results.add("obs", f(key_added, Key.NEG_LOG10_PTP), result["neg_log10_fold_change_ptp"])
    results.add("obs", f(key_added, Key.UNCERTAINTY), result["log_fold_change_uncertainty"])
    direction = pd.Categorical(
        np.asarray(result["log_fold_change_direction"], dtype=str), categories=list(Key.DIRECTIONS)
    )
    results.add("obs", f(key_added, Key.DIRECTION), direction)
    results.add("obs", f(key_added, Key.LOG_DENSITY, c1), result["log_density_condition1"])
    results.add("obs", f(key_added, Key.LOG_DENSITY, c2), result["log_density_condition2"])
    ls_used = np.atleast_1d(np.asarray(model.ls, dtype=float))
    results.add(
        "uns",
        key_added,
        {
            "conditions": np.array([c1, c2]),
            "landmarks": model.landmarks,
            "ls": ls_used,
            "d": np.array([model.d1, model.d2]),
        },
    )
    results.write(data, overwrite=overwrite)
    return target.returned()


# --------------------------------------------------------------------------------------------------
# differential expression
# --------------------------------------------------------------------------------------------------


def differential_expression(
    adata: AnnData,
    *,
    groupby: str = "condition",
    conditions: Sequence[str],
    obsm_key: str = Key.OBSM,
    layer: str | None = None,
    genes: Sequence[str] | None = None,
    sample_key: str | None = None,
    compute_mahalanobis: bool = True,
    n_null_genes: int = 1000,
    fdr_threshold: float = 0.05,
    n_landmarks: int | None = None,
    ls: float | None = None,
    ls_factor: float | None = None,
    sigma: float = 1.0,
    use_empirical_variance: bool = True,
    distance: str = "supported",
    precision: str = "mixed",
    n_jobs: int | None = None,
    store_layers: bool = True,
    memory_budget: float | None = None,
    random_state: int | None = 0,
    progress: bool = False,
    key_added: str = Key.DE,
    copy: bool = False,
    mod: str | None = None,
    overwrite: bool = False,
) -> AnnData | None:
    """Differential expression between two conditions from Gaussian-process smoothed expression.

    Smooths every gene in each condition over ``obsm[obsm_key]`` (see
    :class:`~cellflux_gp_differential.DifferentialExpression`), compares them at every cell and ranks
    genes by the Mahalanobis distance of their fold-change vectors at the landmarks; ``n_null_genes``
    genes whose values are permuted across cells give the null for p-values and FDRs.

    Parameters
    ----------
    adata
        AnnData (or MuData with ``mod``).
    groupby
        ``obs`` column of the conditions.
    conditions
        ``(reference, comparison)``: fold changes are comparison minus reference.
    obsm_key
        Cell-state representation.
    layer
        Log-normalised expression layer (``None``: ``X``).
    genes
        Genes to test (default all).
    sample_key
        ``obs`` column of replicate samples; adds the between-sample variance.
    compute_mahalanobis
        Rank genes by Mahalanobis distance (and compute FDRs).
    n_null_genes
        Permuted genes forming the null distribution (0: no p-values/FDRs).
    fdr_threshold
        Level of the ``is_de`` call on the tail FDR.
    n_landmarks
        Landmarks shared by both conditions; ``None``: ``min(1000, cells)``.
    ls, ls_factor
        Length scale, or kompot's rule (mellon's length scale times ``ls_factor``); default three median
        pairwise distances between cells (see
        :func:`~cellflux_gp_differential._expression_model.expression_length_scale`).
    sigma
        Noise standard deviation of the expression GPs.
    use_empirical_variance
        Include a per-gene observation variance from leave-one-out residuals (in the per-cell variances;
        in the distance only with ``distance="kompot"``).
    distance
        ``"supported"`` (default): where one condition has (almost) no cells near a landmark, its
        smoothed expression is read at its own support point (the mean of its 3 cells nearest to the
        landmark) instead of extrapolated into the other condition's cell states; the distance is under
        the diagonal of each gene's calibrated covariance (see :mod:`cellflux_gp_differential._support`).
        ``"calibrated"``: each gene's full-covariance Mahalanobis distance under its own noise scale (the
        GP posterior covariance times the gene's residual noise variance); ``"kompot"``: kompot's distance
        (one covariance for all genes). See :class:`~cellflux_gp_differential.DifferentialExpression`.
    precision
        ``"mixed"`` (default; single-precision products with the genes, fold changes within about
        ``3e-5`` of their largest value of ``"double"``) or ``"double"``.
    n_jobs
        Threads (``None``: all cores; results do not depend on it).
    store_layers
        Write the per-cell fold changes and imputed expression as layers (``n_obs x n_vars`` float32).
    memory_budget
        Bytes for the Mahalanobis step (genes are streamed in batches that fit).
    random_state
        Seed of the landmarks and of the null genes.
    progress
        Show progress bars.
    key_added
        Prefix of the written fields and key of the parameters.
    copy
        Return a modified copy instead of writing into ``adata``.
    mod
        MuData modality.
    overwrite
        Replace existing fields.

    Returns
    -------
    ``None``, or the modified copy with ``copy=True``. Writes (genes not tested get NaN/``False``):

    ``var[f"{key_added}_mean_log_fold_change"]``
        Mean over all cells of the smoothed fold change.
    ``var[f"{key_added}_mahalanobis"]``
        Mahalanobis distance (with ``compute_mahalanobis``; the ``distance`` chosen, supported by default).
    ``var[f"{key_added}_pvalue"]``, ``var[f"{key_added}_local_fdr"]``,
    ``var[f"{key_added}_tail_fdr"]``, ``var[f"{key_added}_is_de"]``
        Against the null genes (with ``n_null_genes > 0``).
    ``var[f"{key_added}_tested"]``
        Whether the gene was tested.
    ``layers[f"{key_added}_fold_change"]``, ``layers[f"{key_added}_imputed_{condition}"]``
        Per-cell fold change and smoothed expression of each condition (with ``store_layers``).
    ``uns[key_added]``
        ``params``, ``provenance``, ``conditions``, ``landmarks``, ``ls``, ``null_mahalanobis``.
    """
    from ._expression import DISTANCES, DifferentialExpression
    from ._fdr import compute_fdr
    from ._regression import check_precision
    from ._threads import resolve_n_jobs

    target = resolve_target(adata, mod=mod, copy=copy)
    data = target.adata
    x = _representation(data, obsm_key)
    c1, c2 = (str(c) for c in conditions) if not isinstance(conditions, str) else (conditions, "")
    m1, m2 = _condition_masks(data, groupby, conditions)
    s1, s2 = _samples(data, sample_key, (m1, m2), (c1, c2))
    y, idx = _expression(data, layer, genes)
    if n_null_genes < 0:
        raise ValueError(f"n_null_genes must be >= 0, got {n_null_genes}.")
    if distance not in DISTANCES:
        raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}.")
    check_precision(precision)
    resolve_n_jobs(n_jobs)
    n_null = n_null_genes if compute_mahalanobis else 0
    y_all = _hstack(y, _null_expression(y, n_null, random_state)) if n_null else y
    model = DifferentialExpression(
        n_landmarks=n_landmarks,
        use_empirical_variance=use_empirical_variance,
        random_state=random_state,
        memory_budget=memory_budget,
        distance=distance,
        precision=precision,
        n_jobs=n_jobs,
    )
    model.fit(
        x[m1],
        _rows(y_all, m1),
        x[m2],
        _rows(y_all, m2),
        sigma=sigma,
        ls=ls,
        ls_factor=ls_factor,
        condition1_sample_indices=s1,
        condition2_sample_indices=s2,
    )
    result = model.predict(x, compute_mahalanobis=compute_mahalanobis, progress=progress)
    n_genes = len(idx)

    def per_var(values: np.ndarray, fill: Any = np.nan) -> np.ndarray:
        out = np.full(data.n_vars, fill, dtype=np.asarray(values).dtype if fill is not np.nan else np.float64)
        out[idx] = values
        return out

    params = {
        "groupby": groupby,
        "conditions": [c1, c2],
        "obsm_key": obsm_key,
        "layer": layer,
        "genes": None if genes is None else [genes] if isinstance(genes, str) else list(genes),
        "sample_key": sample_key,
        "compute_mahalanobis": compute_mahalanobis,
        "n_null_genes": n_null_genes,
        "fdr_threshold": fdr_threshold,
        "n_landmarks": n_landmarks,
        "ls": ls,
        "ls_factor": ls_factor,
        "sigma": sigma,
        "use_empirical_variance": use_empirical_variance,
        "distance": distance,
        "precision": precision,
        "random_state": random_state,
    }
    if params["genes"] is None:
        del params["genes"]
    results = Results(key_added, function="tl.differential_expression", plugin=Key.PLUGIN, params=params)
    f = Key.field
    tested = np.zeros(data.n_vars, dtype=bool)
    tested[idx] = True
    results.add("var", f(key_added, Key.TESTED), tested)
    results.add("var", f(key_added, Key.MEAN_LFC), per_var(result["mean_log_fold_change"][:n_genes]))
    extra: dict[str, Any] = {
        "conditions": np.array([c1, c2]),
        "landmarks": model.computed_landmarks,
        "ls": float(model.ls),
    }
    if compute_mahalanobis:
        distances = result["mahalanobis_distances"]
        real, null = distances[:n_genes], distances[n_genes:]
        results.add("var", f(key_added, Key.MAHALANOBIS), per_var(real))
        if n_null:
            table = compute_fdr(real, null, fdr_threshold)
            results.add("var", f(key_added, Key.PVALUE), per_var(table["pvalue"].to_numpy()))
            results.add("var", f(key_added, Key.LOCAL_FDR), per_var(table["local_fdr"].to_numpy()))
            results.add("var", f(key_added, Key.TAIL_FDR), per_var(table["tail_fdr"].to_numpy()))
            results.add("var", f(key_added, Key.IS_DE), per_var(table["is_de"].to_numpy(), fill=False))
            extra["null_mahalanobis"] = null
    if store_layers:

        def layer_of(values: np.ndarray) -> np.ndarray:
            out = np.full((data.n_obs, data.n_vars), np.nan, dtype=np.float32)
            out[:, idx] = values[:, :n_genes]
            return out

        results.add("layers", f(key_added, Key.FOLD_CHANGE), layer_of(result["fold_change"]))
        results.add("layers", f(key_added, Key.IMPUTED, c1), layer_of(result["condition1_smoothed"]))
        results.add("layers", f(key_added, Key.IMPUTED, c2), layer_of(result["condition2_smoothed"]))
    results.add("uns", key_added, extra)
    results.write(data, overwrite=overwrite)
    return target.returned()


# --------------------------------------------------------------------------------------------------
# smoothing / imputation of one condition
# --------------------------------------------------------------------------------------------------


def gp_smooth(
    adata: AnnData,
    *,
    obsm_key: str = Key.OBSM,
    layer: str | None = None,
    genes: Sequence[str] | None = None,
    groupby: str | None = None,
    condition: str | None = None,
    n_landmarks: int | None = None,
    ls: float | None = None,
    ls_factor: float | None = None,
    sigma: float = 1.0,
    use_empirical_variance: bool = False,
    random_state: int | None = 0,
    key_added: str = Key.SMOOTH,
    copy: bool = False,
    mod: str | None = None,
    overwrite: bool = False,
) -> AnnData | None:
    """Gaussian-process smoothing (imputation) of expression, fitted on one condition, predicted everywhere.

    Parameters
    ----------
    adata
        AnnData (or MuData with ``mod``).
    obsm_key
        Cell-state representation.
    layer
        Log-normalised expression layer (``None``: ``X``).
    genes
        Genes to smooth (default all).
    groupby, condition
        Fit on the cells with ``obs[groupby] == condition`` only (default: all cells).
    n_landmarks
        Landmarks; ``None``: ``min(1000, cells)``.
    ls, ls_factor
        Length scale, or kompot's rule; default three median pairwise distances between cells (see
        :func:`~cellflux_gp_differential._expression_model.expression_length_scale`).
    sigma
        Noise standard deviation.
    use_empirical_variance
        Include the smoothed observation variance in the standard deviation.
    random_state
        Seed of the landmark k-means.
    key_added
        Layer name and key of the parameters.
    copy
        Return a modified copy instead of writing into ``adata``.
    mod
        MuData modality.
    overwrite
        Replace existing fields.

    Returns
    -------
    ``None``, or the modified copy with ``copy=True``. Writes:

    ``layers[key_added]``
        Smoothed expression at every cell (float32; NaN for genes not smoothed).
    ``layers[f"{key_added}_std"]``
        Its posterior standard deviation.
    ``uns[key_added]``
        ``params``, ``provenance``, ``landmarks``, ``ls``.
    """
    from ._expression_model import ExpressionModel

    target = resolve_target(adata, mod=mod, copy=copy)
    data = target.adata
    x = _representation(data, obsm_key)
    if (groupby is None) != (condition is None):
        raise ValueError("Pass both groupby= and condition= to fit on one condition, or neither.")
    mask = np.ones(data.n_obs, dtype=bool)
    if groupby is not None:
        if groupby not in data.obs:
            raise KeyError(f"obs[{groupby!r}] is missing; pass groupby= the column that holds the conditions.")
        labels = data.obs[groupby].astype(str).to_numpy()
        mask = labels == str(condition)
        if mask.sum() == 0:
            raise ValueError(
                f"Condition {condition!r} is absent from obs[{groupby!r}]; available: {sorted(set(labels))}."
            )
        if mask.sum() < 10:
            raise ValueError(f"Condition {condition!r} has {int(mask.sum())} cells; at least 10 are needed.")
    y, idx = _expression(data, layer, genes)
    model = ExpressionModel(
        n_landmarks=n_landmarks, use_empirical_variance=use_empirical_variance, random_state=random_state
    )
    model.fit(x[mask], _rows(y, mask), sigma=sigma, ls=ls, ls_factor=ls_factor)
    smoothed = model.predict(x, progress=False)
    std = model.std(x)
    if std.shape[1] == 1:
        std = np.repeat(std, len(idx), axis=1)

    def layer_of(values: np.ndarray) -> np.ndarray:
        out = np.full((data.n_obs, data.n_vars), np.nan, dtype=np.float32)
        out[:, idx] = values
        return out

    params = {
        "obsm_key": obsm_key,
        "layer": layer,
        "groupby": groupby,
        "condition": condition,
        "n_landmarks": n_landmarks,
        "ls": ls,
        "ls_factor": ls_factor,
        "sigma": sigma,
        "use_empirical_variance": use_empirical_variance,
        "random_state": random_state,
    }
    if genes is not None:
        params["genes"] = [genes] if isinstance(genes, str) else list(genes)
    results = Results(key_added, function="tl.gp_smooth", plugin=Key.PLUGIN, params=params)
    results.add("layers", key_added, layer_of(smoothed))
    results.add("layers", Key.field(key_added, Key.STD), layer_of(std))
    results.add("uns", key_added, {"landmarks": model.landmarks, "ls": float(model.ls)})
    results.write(data, overwrite=overwrite)
    return target.returned()
