"""The plugin manifest of cellflux-estimators: light, imports nothing heavy."""

from cellflux.plugin import PluginManifest

from ._version import __version__

__all__ = ["manifest"]

_TL = ("macrostates", "terminal_states", "fate_probabilities", "absorption_times", "lineage_drivers")
_PL = {
    "spectrum": "cellflux_estimators._plotting._spectrum:spectrum",
    "schur_vectors": "cellflux_estimators._plotting._embedding:schur_vectors",
    "macrostates": "cellflux_estimators._plotting._embedding:macrostates",
    "fate_probabilities": "cellflux_estimators._plotting._embedding:fate_probabilities",
    "coarse_T": "cellflux_estimators._plotting._coarse:coarse_T",
    "aggregate_fate_probabilities": "cellflux_estimators._plotting._aggregate:aggregate_fate_probabilities",
    "lineage_drivers": "cellflux_estimators._plotting._drivers:lineage_drivers",
    "gene_trends": "cellflux_estimators._plotting._trends:gene_trends",
    "trend_heatmap": "cellflux_estimators._plotting._trends:trend_heatmap",
    "cluster_trends": "cellflux_estimators._plotting._trends:cluster_trends",
    "drivers_correlation": "cellflux_estimators._plotting._drivers:drivers_correlation",
    "circular_projection": "cellflux_estimators._plotting._circular:circular_projection",
    "log_odds": "cellflux_estimators._plotting._logodds:log_odds",
    "fate_pies": "cellflux_estimators._plotting._pie:fate_pies",
}

manifest = PluginManifest(
    name="estimators",
    distribution="cellflux-estimators",
    module="cellflux_estimators",
    version=__version__,
    tl={name: f"cellflux_estimators._tools:{name}" for name in _TL},
    pl=_PL,
    examples={f"tl.{name}": f"cellflux_estimators._examples:{name}" for name in _TL},
)
