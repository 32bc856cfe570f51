"""The plugin manifest of cellflux-velocity-vae: light, imports nothing heavy."""

from cellflux.plugin import PluginManifest

from ._version import __version__

__all__ = ["manifest"]

manifest = PluginManifest(
    name="velocity_vae",
    distribution="cellflux-velocity-vae",
    module="cellflux_velocity_vae",
    version=__version__,
)
