"""CytoTRACEKernel: a pseudotime kernel on the CytoTRACE score (Gulati et al. 2020, as in CellRank)."""

from __future__ import annotations

import logging
import warnings
from typing import Any, Literal

import numpy as np
from anndata import AnnData
from scipy import sparse

from .._engine._cytotrace import aggregate, gene_correlation, num_expressed_genes
from .._keys import Key
from ._anndata import read_connectivities
from ._pseudotime import PseudotimeKernel

__all__ = ["CytoTRACEKernel"]

logger = logging.getLogger(__name__)


class CytoTRACEKernel(PseudotimeKernel):
    """Transitions biased towards lower developmental potential, measured by CytoTRACE.

    Call :meth:`compute_cytotrace` first (unless ``obs["ct_pseudotime"]`` exists), then
    :meth:`compute_transition_matrix` as for :class:`PseudotimeKernel`.

    Parameters
    ----------
    adata
        Annotated data with a kNN graph and (imputed) expression.
    backward
        Direction of the process.
    conn_key
        ``obsp`` key of the kNN connectivities.
    """

    def __init__(self, adata: AnnData, backward: bool = False, conn_key: str = Key.CONNECTIVITIES, **_: Any) -> None:
        super(PseudotimeKernel, self).__init__(adata, backward=backward)
        self._time_key, self._conn_key = Key.CT_PSEUDOTIME, conn_key
        self._conn = read_connectivities(adata, conn_key)
        self._pseudotime = self._read_time(Key.CT_PSEUDOTIME) if Key.CT_PSEUDOTIME in adata.obs else None

    def _init_kwargs(self) -> dict[str, Any]:
        return {"backward": self._backward, "conn_key": self._conn_key}

    def compute_cytotrace(
        self,
        layer: str | None = "Ms",
        aggregation: Literal["mean", "median", "hmean", "gmean"] = "mean",
        use_raw: bool = False,
        n_genes: int = 200,
        *,
        overwrite: bool = False,
    ) -> CytoTRACEKernel:
        """Compute the CytoTRACE score and its pseudotime.

        The number of expressed genes per cell is correlated with every gene; the ``n_genes`` most
        positively correlated genes' expression in ``layer`` is aggregated and scaled to ``[0, 1]``.

        Parameters
        ----------
        layer
            Expression to aggregate: a layer or ``"X"``.
        aggregation
            ``"mean"``, ``"median"``, ``"hmean"`` (harmonic) or ``"gmean"`` (geometric).
        use_raw
            Count expressed genes and correlate in ``adata.raw``.
        n_genes
            Number of top correlated genes.
        overwrite
            Replace existing CytoTRACE results.

        Raises
        ------
        ValueError
            If the aggregated score is NaN or infinite for some cell (``"gmean"`` and ``"hmean"`` need
            non-negative expression; centred or scaled data have negative values) or the same for every
            cell (no pseudotime can be derived). Nothing is written then.

        Returns
        -------
        ``self``; writes ``obs["ct_score"]``, ``obs["ct_pseudotime"]`` (``1 - score``),
        ``obs["ct_num_exp_genes"]``, ``var["ct_gene_corr"]``, ``var["ct_correlates"]`` and the
        parameters in ``uns["ct_params"]``.
        """
        from cellflux.results import Results

        if aggregation not in ("mean", "median", "hmean", "gmean"):
            raise ValueError(f"aggregation must be 'mean', 'median', 'hmean' or 'gmean', got {aggregation!r}.")
        if n_genes <= 0:
            raise ValueError(f"n_genes must be positive, got {n_genes}.")
        adata = self.adata
        if use_raw and adata.raw is None:
            logger.warning("adata.raw is None; using use_raw=False.")
            use_raw = False
        if layer not in (None, "X") and layer not in adata.layers:
            raise KeyError(
                f"adata.layers[{layer!r}] is missing; run scvelo.pp.moments(adata) for 'Ms' or pass layer='X'. "
                f"Available: {sorted(adata.layers.keys())}."
            )
        source = adata.raw if use_raw else adata
        n_exp = num_expressed_genes(source.X)
        corr = gene_correlation(source.X, n_exp.astype(np.float64))
        names = np.asarray(source.var_names)
        order = np.argsort(-np.where(np.isnan(corr), -np.inf, corr), kind="stable")
        order = order[np.isin(names[order], adata.var_names)]
        top = order[:n_genes]
        if np.isnan(corr[top]).any():
            raise ValueError(
                f"The top {len(top)} correlated genes contain {int(np.isnan(corr[top]).sum())} NaN correlations."
            )
        if len(top) < n_genes:
            logger.warning("Only %d genes available; using them instead of n_genes=%d.", len(top), n_genes)
        top_names = names[top]
        cols = adata.var_names.get_indexer(top_names)
        expression = adata.X[:, cols] if layer in (None, "X") else adata.layers[layer][:, cols]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            score = aggregate(expression, aggregation)
        _check_score(score, expression, layer or "X", aggregation)
        score = score - score.min()
        score = score / score.max()
        gene_corr = np.full(adata.n_vars, np.nan)
        idx = adata.var_names.get_indexer(names)
        gene_corr[idx[idx >= 0]] = corr[idx >= 0]
        correlates = np.zeros(adata.n_vars, dtype=bool)
        correlates[cols] = True
        params = {"aggregation": aggregation, "layer": layer or "X", "use_raw": use_raw, "n_genes": len(top)}
        results = Results(
            Key.CT_PARAMS,
            function="kernels.CytoTRACEKernel.compute_cytotrace",
            plugin="cellflux-kernels",
            params=params,
        )
        results.add("obs", Key.CT_SCORE, score)
        results.add("obs", Key.CT_PSEUDOTIME, 1.0 - score)
        results.add("obs", Key.CT_NUM_EXP_GENES, n_exp)
        results.add("var", Key.CT_GENE_CORR, gene_corr)
        results.add("var", Key.CT_CORRELATES, correlates)
        results.write(adata, overwrite=overwrite)
        self._pseudotime = 1.0 - score
        self._transition_matrix = None
        return self


def _check_score(score: np.ndarray, expression: Any, layer: str, aggregation: str) -> None:
    """Refuse a score that is not finite everywhere or does not vary (before anything is written)."""
    bad = ~np.isfinite(score)
    if bad.any():
        where = "adata.X" if layer == "X" else f"adata.layers[{layer!r}]"
        if np.nanmin(expression.toarray() if sparse.issparse(expression) else np.asarray(expression)) < 0:
            cause = (
                f"{where} has negative values, for which aggregation={aggregation!r} is undefined. "
                "Use aggregation='mean' or 'median', or a non-negative layer (e.g. layer='Ms' or counts)"
            )
        else:
            cause = f"{where} has NaN or infinite values. Use a layer with finite values"
        raise ValueError(f"The CytoTRACE score is NaN or infinite for {int(bad.sum())} of {len(score)} cells: {cause}.")
    if score.max() == score.min():
        raise ValueError(
            f"The CytoTRACE score ({aggregation!r} of layer {layer!r}) is the same ({score[0]:.6g}) for every cell, "
            "so no pseudotime can be derived from it (e.g. 'gmean'/'hmean' are 0 in every cell with a zero value). "
            "Use aggregation='mean' or 'median', or another layer."
        )
