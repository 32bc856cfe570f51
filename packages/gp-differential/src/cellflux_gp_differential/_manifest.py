"""The plugin manifest of cellflux-gp-differential: light, imports nothing heavy."""

from cellflux.plugin import PluginManifest

from ._version import __version__

__all__ = ["manifest"]

_TOOLS = "cellflux_gp_differential._tools"
_PLOTS = "cellflux_gp_differential._plots"
_EXAMPLES = "cellflux_gp_differential._examples"

manifest = PluginManifest(
    name="gp_differential",
    distribution="cellflux-gp-differential",
    module="cellflux_gp_differential",
    version=__version__,
    tl={
        "differential_abundance": f"{_TOOLS}:differential_abundance",
        "differential_expression": f"{_TOOLS}:differential_expression",
        "gp_smooth": f"{_TOOLS}:gp_smooth",
    },
    pl={
        "differential_abundance_volcano": f"{_PLOTS}:differential_abundance_volcano",
        "differential_expression_volcano": f"{_PLOTS}:differential_expression_volcano",
        "fold_change_embedding": f"{_PLOTS}:fold_change_embedding",
        "direction_barplot": f"{_PLOTS}:direction_barplot",
        "smoothed_expression": f"{_PLOTS}:smoothed_expression",
    },
    examples={
        "tl.differential_abundance": f"{_EXAMPLES}:differential_abundance",
        "tl.differential_expression": f"{_EXAMPLES}:differential_expression",
        "tl.gp_smooth": f"{_EXAMPLES}:gp_smooth",
    },
)
