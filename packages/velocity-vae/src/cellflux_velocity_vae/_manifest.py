"""The plugin manifest of cellflux-velocity-vae: light, imports nothing heavy."""

from cellflux.plugin import PluginManifest

from ._version import __version__

__all__ = ["manifest"]

manifest = PluginManifest(
    name="velocity_vae",
    distribution="cellflux-velocity-vae",
    module="cellflux_velocity_vae",
    version=__version__,
    tl={"velocity_vae": "cellflux_velocity_vae._tools:velocity_vae"},
    pl={
        "velocity_vae_latent_time": "cellflux_velocity_vae._plotting:latent_time",
        "velocity_vae_phase_portraits": "cellflux_velocity_vae._plotting:phase_portraits",
        "velocity_vae_uncertainty": "cellflux_velocity_vae._plotting:uncertainty",
    },
    examples={"tl.velocity_vae": "cellflux_velocity_vae._tools:example"},
)
