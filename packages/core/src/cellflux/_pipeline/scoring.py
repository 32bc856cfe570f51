"""Scores against the simulator's ground truth (:class:`cellflux.TruthKey`)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import rankdata, spearmanr

from .._keys import TruthKey
from ._context import Context

__all__ = ["auroc", "has_truth", "match_states", "score_fates"]


def has_truth(adata) -> bool:
    """Whether ``adata`` carries the simulator's ground truth."""
    return TruthKey.TIME in adata.obs and TruthKey.LINEAGE in adata.obs and TruthKey.FATE_PROBABILITIES in adata.obsm


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for boolean ``labels`` (ties count half); NaN scores rank lowest.

    Parameters
    ----------
    labels
        True for positives.
    scores
        Higher means more likely positive.

    Returns
    -------
    The AUROC, NaN without positives or negatives.
    """
    labels = np.asarray(labels, dtype=bool)
    scores = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=-np.inf)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def match_states(adata, states: pd.Series) -> dict[str, str | None]:
    """Map each state to the true lineage of most of its cells, or ``None`` when most are progenitors."""
    lineage = adata.obs[TruthKey.LINEAGE].astype(str)
    on_branch = adata.obs[TruthKey.STATE].astype(str) != "progenitor"
    out: dict[str, str | None] = {}
    for name in states.cat.categories:
        cells = (states == name).to_numpy()
        labels = lineage[cells & on_branch.to_numpy()]
        if labels.size < 0.5 * cells.sum():
            out[str(name)] = None
        else:
            out[str(name)] = str(labels.value_counts().index[0])
    return out


def score_fates(ctx: Context, g) -> None:
    """Terminal states recovered, initial state in the trunk, fate-probability accuracy, pseudotime correlation."""
    adata = ctx.adata
    lineages = [str(x) for x in adata.uns[TruthKey.SIMULATION]["lineage_names"]]
    mapping = match_states(adata, g.terminal_states)
    hit = sorted({v for v in mapping.values() if v is not None})
    ctx.score(
        "fates",
        "terminal states recovered",
        f"{len(hit)}/{len(lineages)}",
        "; ".join(f"{k} → {v or 'progenitors (spurious)'}" for k, v in mapping.items()),
    )
    initial = g.initial_states
    cells = initial.notna().to_numpy()
    trunk = adata.obs[TruthKey.STATE].astype(str).to_numpy() == "progenitor"
    ctx.score("fates", "initial-state cells in the progenitor trunk", float(trunk[cells].mean()))
    fp = g.fate_probabilities
    agg = pd.DataFrame(0.0, index=adata.obs_names, columns=lineages)
    for name, lin in mapping.items():
        if lin is not None:
            agg[lin] += fp[name].to_numpy()
    truth = pd.DataFrame(adata.obsm[TruthKey.FATE_PROBABILITIES], index=adata.obs_names, columns=lineages)
    branch = ~trunk
    predicted = np.asarray(lineages)[np.argmax(agg.to_numpy(), axis=1)]
    true_lineage = adata.obs[TruthKey.LINEAGE].astype(str).to_numpy()
    acc = float(np.mean(predicted[branch] == true_lineage[branch]))
    ctx.score("fates", "fate accuracy (branch cells, most likely lineage)", acc, f"chance {1 / len(lineages):.2f}")
    corr = [np.corrcoef(agg[lin], truth[lin])[0, 1] for lin in hit]
    if corr:
        ctx.score("fates", "fate probabilities vs truth (mean Pearson over recovered lineages)", float(np.mean(corr)))
    time_key = ctx.objects.get("time_key")
    if time_key and time_key != "latent_time":
        rho = spearmanr(adata.obs[time_key], adata.obs[TruthKey.TIME])[0]
        ctx.score("fates", f"{time_key} vs true time (Spearman)", float(rho))
