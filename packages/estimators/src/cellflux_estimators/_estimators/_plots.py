"""Plot methods of the estimators; they call the ``cf.pl`` functions (matplotlib is imported on first use)."""

from __future__ import annotations

import importlib
from typing import Any

from .._keys import Key
from ._base import BaseEstimator

__all__ = ["PlotMixin"]


def _pl(module: str, name: str):
    # imported on use so that creating an estimator does not import matplotlib
    return getattr(importlib.import_module(f"cellflux_estimators._plotting.{module}"), name)


class PlotMixin(BaseEstimator):
    """``plot_*`` methods: the ``cf.pl`` functions applied to this estimator.

    They plot the estimator's own results; the keys default to those of its direction (``lineages_bwd`` etc. for
    a backward estimator).
    """

    def _fates_key(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """``kwargs`` with ``key`` defaulting to this direction's fate probabilities."""
        return {"key": Key.fate_probabilities(self.backward), **kwargs}

    def plot_spectrum(self, **kwargs: Any):
        """Plot the spectrum (see :func:`cellflux_estimators._plotting._spectrum.spectrum`).

        Returns
        -------
        The matplotlib figure.
        """
        return _pl("_spectrum", "spectrum")(self, **kwargs)

    def plot_schur_vectors(self, **kwargs: Any):
        """Plot Schur vectors on an embedding.

        Returns
        -------
        The matplotlib figure.
        """
        return _pl("_embedding", "schur_vectors")(self, **kwargs)

    def plot_macrostates(self, which: str = "macrostates", **kwargs: Any):
        """Plot macrostates, terminal or initial states (``which``) on an embedding.

        Parameters
        ----------
        which
            ``"macrostates"``, ``"terminal"`` or ``"initial"``.
        kwargs
            For the embedding plot.

        Returns
        -------
        The matplotlib figure.

        Raises
        ------
        ValueError
            If ``which`` is not one of the choices above.
        """
        keys = {
            "macrostates": Key.macrostates(self.backward),
            "terminal": Key.terminal(self.backward),
            "initial": Key.initial(self.backward),
        }
        if which not in keys:
            raise ValueError(f"which={which!r} is not supported; use one of {list(keys)}.")
        key = keys[which]
        return _pl("_embedding", "macrostates")(self, key=key, **kwargs)

    def plot_fate_probabilities(self, **kwargs: Any):
        """Plot fate probabilities on an embedding.

        Returns
        -------
        The matplotlib figure.
        """
        return _pl("_embedding", "fate_probabilities")(self, **self._fates_key(kwargs))

    def plot_coarse_T(self, **kwargs: Any):
        """Plot the coarse-grained transition matrix.

        Returns
        -------
        The matplotlib figure.
        """
        return _pl("_coarse", "coarse_T")(self, **kwargs)

    def plot_aggregate_fate_probabilities(self, **kwargs: Any):
        """Plot fate probabilities aggregated over clusters (bar, violin, heatmap).

        Returns
        -------
        The matplotlib figure.
        """
        return _pl("_aggregate", "aggregate_fate_probabilities")(self, **self._fates_key(kwargs))

    def plot_lineage_drivers(self, lineage: str, **kwargs: Any):
        """Plot the top drivers of a lineage.

        Returns
        -------
        The matplotlib figure.
        """
        return _pl("_drivers", "lineage_drivers")(
            self, lineage=lineage, **{"key": Key.drivers(self.backward), **kwargs}
        )

    def plot_gene_trends(self, genes: list[str], time_key: str, **kwargs: Any):
        """Plot gene trends per lineage.

        Returns
        -------
        The matplotlib figure.
        """
        return _pl("_trends", "gene_trends")(self, genes=genes, time_key=time_key, **self._fates_key(kwargs))

    def plot_circular_projection(self, **kwargs: Any):
        """Plot the circular projection of the fate probabilities.

        Returns
        -------
        The matplotlib figure.
        """
        return _pl("_circular", "circular_projection")(self, **self._fates_key(kwargs))

    def plot_log_odds(self, lineage_1: str, lineage_2: str | None = None, **kwargs: Any):
        """Plot the log-odds of two lineages along pseudotime (``time_key=`` is required).

        Returns
        -------
        The matplotlib figure.
        """
        return _pl("_logodds", "log_odds")(self, lineage_1=lineage_1, lineage_2=lineage_2, **self._fates_key(kwargs))

    def plot_fate_pies(self, **kwargs: Any):
        """Plot clusters as pies of their mean fate probabilities on the cluster transition graph.

        Returns
        -------
        The matplotlib figure.
        """
        return _pl("_pie", "fate_pies")(self, **self._fates_key(kwargs))

    def plot_cluster_trends(self, genes: list[str], time_key: str, lineage: str, **kwargs: Any):
        """Cluster genes by their trend along a lineage and plot the clusters.

        Returns
        -------
        The matplotlib figure.
        """
        kwargs = self._fates_key(kwargs)
        return _pl("_trends", "cluster_trends")(self, genes=genes, time_key=time_key, lineage=lineage, **kwargs)

    def plot_drivers_correlation(self, lineage_x: str, lineage_y: str, **kwargs: Any):
        """Scatter the driver correlations of two lineages.

        Returns
        -------
        The matplotlib figure.
        """
        kwargs = {"key": Key.drivers(self.backward), **kwargs}
        return _pl("_drivers", "drivers_correlation")(self, lineage_x=lineage_x, lineage_y=lineage_y, **kwargs)
