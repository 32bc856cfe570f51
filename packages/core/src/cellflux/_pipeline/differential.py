"""Step ``differential``: GP differential abundance and expression between two conditions."""

from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr

from .._keys import TruthKey
from ._context import Context, StepSkipped
from ._util import require_function
from .scoring import auroc

__all__ = ["run"]

_GPD = "cellflux-gp-differential"


def _conditions(ctx: Context) -> tuple[str, tuple[str, str]]:
    cfg, obs = ctx.config, ctx.adata.obs
    groupby = cfg.groupby or (TruthKey.CONDITION if TruthKey.CONDITION in obs else None)
    if groupby is None:
        raise StepSkipped("no condition column: pass --groupby COLUMN (and --conditions A B)")
    if groupby not in obs:
        raise KeyError(f"--groupby {groupby!r} is not a column of obs; available: {list(obs.columns)}")
    column = obs[groupby]
    # a categorical's own order (the first category is the reference), else the order of appearance
    order = column.cat.categories if hasattr(column, "cat") else column.unique()
    values = column.astype(str)
    present = [c for c in dict.fromkeys(map(str, order)) if (values == c).any()]
    if cfg.conditions is not None:
        missing = [c for c in cfg.conditions if c not in present]
        if missing:
            raise KeyError(f"--conditions {missing} not in obs[{groupby!r}]; present: {present}")
        return groupby, (str(cfg.conditions[0]), str(cfg.conditions[1]))
    if len(present) < 2:
        raise StepSkipped(f"only one condition ({present[0]!r}) in obs[{groupby!r}]: differential analysis needs two")
    return groupby, (present[0], present[1])


def _sample_key(ctx: Context, groupby: str, conditions: tuple[str, str]) -> str | None:
    obs = ctx.adata.obs
    if TruthKey.SAMPLE not in obs:
        return None
    per = obs.groupby(obs[groupby].astype(str), observed=True)[TruthKey.SAMPLE].nunique()
    return TruthKey.SAMPLE if all(per.get(c, 0) >= 2 for c in conditions) else None


def run(ctx: Context) -> None:
    """Write ``obs["gp_da_*"]`` and ``var["gp_de_*"]`` (cellflux-gp-differential)."""
    import cellflux as cf

    groupby, conditions = _conditions(ctx)
    require_function("tl", "differential_abundance", _GPD)
    cfg, adata = ctx.config, ctx.adata
    sample_key = _sample_key(ctx, groupby, conditions)
    landmarks = int(min(adata.n_obs, 200 if cfg.quick else 500))
    cf.tl.differential_abundance(
        adata,
        groupby=groupby,
        conditions=conditions,
        obsm_key="X_pca",
        sample_key=sample_key,
        n_landmarks=landmarks,
        overwrite=True,
    )
    n_up = int((adata.obs["gp_da_direction"] == "up").sum())
    n_down = int((adata.obs["gp_da_direction"] == "down").sum())
    ctx.info(f"differential abundance {conditions[1]} vs {conditions[0]}: {n_up} cells up, {n_down} down")
    cf.tl.differential_expression(
        adata,
        groupby=groupby,
        conditions=conditions,
        obsm_key="X_pca",
        sample_key=sample_key,
        n_landmarks=landmarks,
        n_null_genes=min(adata.n_vars, 200 if cfg.quick else 500),
        store_layers=False,
        overwrite=True,
    )
    is_de = adata.var["gp_de_is_de"].to_numpy(dtype=bool)
    top = adata.var["gp_de_mahalanobis"].sort_values(ascending=False).index[:5]
    ctx.info(f"differential expression: {int(is_de.sum())} gene(s) at FDR 5%; top: {', '.join(map(str, top))}")
    strongest = _strongest_clusters(adata, ctx.objects.get("cluster_key"))
    ctx.found.append(
        f"differential abundance ({conditions[1]} vs {conditions[0]}): {n_up} cells enriched, {n_down} depleted"
        f"{f' ({strongest})' if strongest else ''}; "
        f"differential expression: {int(is_de.sum())} gene{'s' if int(is_de.sum()) != 1 else ''} at 5% FDR "
        f"(top by Mahalanobis distance: {', '.join(map(str, top[:3]))})"
    )
    ctx.objects["conditions"] = (groupby, conditions)
    if ctx.has_truth and TruthKey.DA in adata.obs:
        _score(ctx, groupby, conditions)


def _strongest_clusters(adata, cluster_key: str | None) -> str:
    """The clusters whose median DA z-score is lowest and highest, described in words ("" without clusters).

    Cells are called on their posterior tail probability, which on a small data set can call none even where
    the ranking is good; the clusters' medians say where the change is strongest regardless (not a call).
    """
    if cluster_key is None or cluster_key not in adata.obs:
        return ""
    frame = adata.obs[["gp_da_zscore", "gp_da_log_fold_change"]].astype(np.float64)
    medians = frame.groupby(adata.obs[cluster_key].astype(str).to_numpy()).median().dropna()
    if medians.empty:
        return ""
    parts = []
    for label, row in (
        ("depletion", medians["gp_da_zscore"].idxmin()),
        ("enrichment", medians["gp_da_zscore"].idxmax()),
    ):
        z, lfc = medians.loc[row, "gp_da_zscore"], medians.loc[row, "gp_da_log_fold_change"]
        if (z < 0) if label == "depletion" else (z > 0):
            parts.append(f"strongest {label}: cluster {row}, median log fold change {lfc:+.2f}, z {z:+.1f}")
    return "; ".join(parts)


def _truth_orientation(adata, groupby: str, conditions: tuple[str, str]) -> float | None:
    """+1 if ``conditions`` are the simulator's (first, second), -1 if reversed, ``None`` if not its conditions."""
    if groupby != TruthKey.CONDITION:
        return None
    names = [str(c) for c in adata.uns.get("simulation", {}).get("condition_names", [])][:2]
    if len(names) < 2:
        return None
    if list(conditions) == names:
        return 1.0
    return -1.0 if list(conditions) == names[::-1] else None


def _score(ctx: Context, groupby: str, conditions: tuple[str, str]) -> None:
    adata = ctx.adata
    orientation = _truth_orientation(adata, groupby, conditions)
    if orientation is None:
        ctx.info("differential analysis not scored: the compared conditions are not the simulator's two")
        return
    lfc = adata.obs["gp_da_log_fold_change"].to_numpy(dtype=np.float64)
    # the simulator's truth is log(second / first condition): turned to the order the step compared
    true_lfc = orientation * adata.obs[TruthKey.DA_LOG_FOLD_CHANGE].to_numpy(dtype=np.float64)
    # the planted lineage: largest |true log fold change| (the others shift slightly by renormalisation)
    planted = np.abs(true_lfc) >= 0.5 * np.abs(true_lfc).max() if np.abs(true_lfc).max() > 0 else true_lfc != 0
    sign = float(np.sign(true_lfc[planted].mean())) if planted.any() else 1.0
    ctx.score(
        "differential",
        "DA AUROC (planted lineage vs other cells, by the log fold change)",
        auroc(planted, sign * lfc),
        f"{int(planted.sum())} cells, planted log fold change {true_lfc[planted].mean():+.2f}" if planted.any() else "",
    )
    ctx.score("differential", "DA log fold change vs planted (Spearman)", float(spearmanr(lfc, true_lfc)[0]))
    de = adata.var[TruthKey.DE].to_numpy(dtype=bool)
    ctx.score(
        "differential",
        "DE AUROC (Mahalanobis distance for planted-DE genes)",
        auroc(de, adata.var["gp_de_mahalanobis"]),
    )
    called = adata.var["gp_de_is_de"].to_numpy(dtype=bool)
    if called.any():
        ctx.score(
            "differential", "DE precision at 5% FDR", float(de[called].mean()), f"{int(called.sum())} gene(s) called"
        )
