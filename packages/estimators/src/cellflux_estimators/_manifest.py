"""The plugin manifest of cellflux-estimators: light, imports nothing heavy."""

from cellflux.plugin import PluginManifest

from ._version import __version__

__all__ = ["manifest"]

manifest = PluginManifest(
    name="estimators",
    distribution="cellflux-estimators",
    module="cellflux_estimators",
    version=__version__,
)
