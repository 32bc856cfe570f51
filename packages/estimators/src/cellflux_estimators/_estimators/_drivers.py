"""Lineage drivers and gene trends as estimator capabilities."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd

from .._engine._drivers import driver_test
from .._engine._trends import TrendResult, fit_trends
from ._fate import FateMixin

__all__ = ["DriversMixin", "expression"]

logger = logging.getLogger(__name__)


def expression(adata, layer: str | None, use_raw: bool):
    """The expression matrix and gene names from ``X``, a layer or ``raw``."""
    if use_raw:
        if layer not in (None, "X"):
            raise ValueError("use_raw=True reads adata.raw.X; do not pass a layer as well.")
        if adata.raw is None:
            raise ValueError("use_raw=True, but adata.raw is not set.")
        return adata.raw.X, pd.Index(adata.raw.var_names)
    if layer in (None, "X"):
        return adata.X, pd.Index(adata.var_names)
    if layer not in adata.layers:
        raise KeyError(f"adata.layers[{layer!r}] does not exist; the layers are {list(adata.layers)}.")
    return adata.layers[layer], pd.Index(adata.var_names)


class DriversMixin(FateMixin):
    """Genes correlated with fates, and smoothed expression trends per lineage."""

    def compute_lineage_drivers(
        self,
        lineages: str | Sequence[str] | None = None,
        *,
        method: Literal["fisher", "perm_test"] = "fisher",
        correlation: Literal["pearson", "spearman"] = "pearson",
        cluster_key: str | None = None,
        clusters: str | Sequence[str] | None = None,
        layer: str | None = None,
        use_raw: bool = False,
        confidence_level: float = 0.95,
        n_perms: int = 1000,
        seed: int | None = None,
        show_progress_bar: bool = False,
    ) -> pd.DataFrame:
        """Correlate every gene with the fate probabilities of each lineage.

        Parameters
        ----------
        lineages
            Lineages (columns of :attr:`fate_probabilities`); default all.
        method
            ``"fisher"`` (Fisher z-transform) or ``"perm_test"`` (permutations and bootstrap).
        correlation
            ``"pearson"`` or ``"spearman"``.
        cluster_key, clusters
            Restrict to cells of these clusters of ``adata.obs[cluster_key]``.
        layer
            Expression layer (``X`` by default).
        use_raw
            Use ``adata.raw``.
        confidence_level
            Level of the confidence intervals.
        n_perms
            Permutations for ``perm_test``.
        seed
            Seed of the permutations (the estimator's seed if ``None``).
        show_progress_bar
            Progress over permutations.

        Returns
        -------
        Genes x ``<lineage>_corr``, ``_pval``, ``_qval`` (Benjamini–Hochberg), ``_ci_low``, ``_ci_high``, sorted by
        the first lineage's correlation; also sets :attr:`lineage_drivers`.
        """
        adata = self._require_adata("Lineage drivers")
        fates = self._fate_probabilities
        if fates is None:
            raise RuntimeError("Compute fate probabilities first (compute_fate_probabilities).")
        names = list(fates.columns)
        if lineages is None:
            lineages = names
        elif isinstance(lineages, str):
            lineages = [lineages]
        lineages = list(lineages)
        if not lineages:
            raise ValueError("No lineages were selected.")
        unknown = [lin for lin in lineages if lin not in names]
        if unknown:
            raise KeyError(f"Unknown lineage(s) {unknown}; the lineages are {names}.")
        mask = np.ones(self.n_cells, dtype=bool)
        if clusters is not None:
            if cluster_key is None or cluster_key not in adata.obs:
                raise KeyError(f"clusters= needs cluster_key= naming a column of adata.obs, got {cluster_key!r}.")
            clusters = [clusters] if isinstance(clusters, str) else list(clusters)
            col = adata.obs[cluster_key].astype(str)
            missing = [c for c in clusters if c not in set(col)]
            if missing:
                raise KeyError(f"Cluster(s) {missing} are not in adata.obs[{cluster_key!r}].")
            mask = col.isin(clusters).to_numpy()
        x, genes = expression(adata, layer, use_raw)
        x = x[mask] if not mask.all() else x
        y = fates.loc[:, lineages].to_numpy()[mask]
        res = driver_test(
            x,
            y,
            method=method,
            correlation=correlation,
            confidence_level=confidence_level,
            n_perms=n_perms,
            seed=self.seed if seed is None else seed,
            show_progress_bar=show_progress_bar,
        )
        cols = {}
        for j, lin in enumerate(lineages):
            for stat in ("corr", "pval", "qval", "ci_low", "ci_high"):
                cols[f"{lin}_{stat}"] = getattr(res, stat)[:, j]
        df = pd.DataFrame(cols, index=genes)
        df = df.sort_values(by=f"{lineages[0]}_corr", ascending=False)
        self._lineage_drivers = df
        self.params["lineage_drivers"] = {"lineages": lineages, "method": method, "correlation": correlation}
        return df

    def compute_gene_trends(
        self,
        genes: Sequence[str],
        *,
        time_key: str,
        lineages: Sequence[str] | None = None,
        layer: str | None = None,
        n_knots: int = 8,
        n_points: int = 200,
        lam: float | None = None,
        weight_threshold: float = 0.01,
    ) -> dict[str, pd.DataFrame]:
        """Smooth gene expression along a pseudotime per lineage (penalised splines weighted by fates).

        Parameters
        ----------
        genes
            Genes to fit.
        time_key
            Pseudotime in ``adata.obs``.
        lineages
            Lineages (default all).
        layer
            Expression layer.
        n_knots, n_points, lam, weight_threshold
            See :func:`cellflux_estimators.fit_trends`.

        Returns
        -------
        Lineage to a DataFrame (``n_points`` x genes) of the trend, indexed by pseudotime; the standard errors are
        in ``.attrs["se"]``.
        """
        adata = self._require_adata("Gene trends")
        if self._fate_probabilities is None:
            raise RuntimeError("Compute fate probabilities first (compute_fate_probabilities).")
        if time_key not in adata.obs:
            raise KeyError(f"adata.obs[{time_key!r}] does not exist; pass the pseudotime's column as time_key.")
        genes = [genes] if isinstance(genes, str) else list(genes)
        missing = [g for g in genes if g not in adata.var_names]
        if missing:
            raise KeyError(f"Gene(s) {missing[:5]} are not in adata.var_names.")
        lineages = list(self._fate_probabilities.columns) if lineages is None else list(lineages)
        x, _ = expression(adata, layer, False)
        x = x[:, adata.var_names.get_indexer(genes)]
        res: TrendResult = fit_trends(
            x,
            adata.obs[time_key].to_numpy(dtype=np.float64),
            self._fate_probabilities.loc[:, lineages].to_numpy(),
            n_knots=n_knots,
            n_points=n_points,
            lam=lam,
            weight_threshold=weight_threshold,
        )
        out = {}
        for j, lin in enumerate(lineages):
            df = pd.DataFrame(res.values[j], index=pd.Index(res.grid, name=time_key), columns=genes)
            df.attrs["se"] = pd.DataFrame(res.se[j], index=df.index, columns=genes)
            df.attrs["lam"] = res.lam[j]
            out[lin] = df
        return out
