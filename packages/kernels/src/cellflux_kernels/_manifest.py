"""The plugin manifest of cellflux-kernels: light, imports nothing heavy."""

from cellflux.plugin import PluginManifest

from ._version import __version__

__all__ = ["manifest"]

manifest = PluginManifest(
    name="kernels",
    distribution="cellflux-kernels",
    module="cellflux_kernels",
    version=__version__,
)
