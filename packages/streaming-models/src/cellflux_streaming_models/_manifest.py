"""The plugin manifest of cellflux-streaming-models: light, imports nothing heavy."""

from cellflux.plugin import PluginManifest

from ._version import __version__

__all__ = ["manifest"]

manifest = PluginManifest(
    name="streaming_models",
    distribution="cellflux-streaming-models",
    module="cellflux_streaming_models",
    version=__version__,
)
