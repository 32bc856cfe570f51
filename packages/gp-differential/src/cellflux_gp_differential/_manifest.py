"""The plugin manifest of cellflux-gp-differential: light, imports nothing heavy."""

from cellflux.plugin import PluginManifest

from ._version import __version__

__all__ = ["manifest"]

manifest = PluginManifest(
    name="gp_differential",
    distribution="cellflux-gp-differential",
    module="cellflux_gp_differential",
    version=__version__,
)
