"""The plugin manifest of cellflux-kernels: light, imports nothing heavy."""

from cellflux.plugin import PluginManifest

from ._version import __version__

__all__ = ["manifest"]

manifest = PluginManifest(
    name="kernels",
    distribution="cellflux-kernels",
    module="cellflux_kernels",
    version=__version__,
    tl={"transition_matrix": "cellflux_kernels._tools:transition_matrix"},
    pp={"kernel_inputs": "cellflux_kernels._tools:kernel_inputs"},
    pl={
        "kernel_projection": "cellflux_kernels._plotting:projection",
        "random_walks": "cellflux_kernels._plotting:random_walks",
        "single_flow": "cellflux_kernels._plot_flow:single_flow",
    },
    examples={
        "tl.transition_matrix": "cellflux_kernels._tools:example_transition_matrix",
        "pp.kernel_inputs": "cellflux_kernels._tools:example_kernel_inputs",
    },
)
