"""The plugin manifest of cellflux-streaming-models: light, imports nothing heavy."""

from cellflux.plugin import Command, PluginManifest

from ._version import __version__

__all__ = ["manifest"]

manifest = PluginManifest(
    name="streaming_models",
    distribution="cellflux-streaming-models",
    module="cellflux_streaming_models",
    version=__version__,
    pp={"highly_variable_genes_streaming": "cellflux_streaming_models._anndata._hvg:highly_variable_genes_streaming"},
    tl={"pca_streaming": "cellflux_streaming_models._anndata._pca:pca_streaming"},
    examples={
        "pp.highly_variable_genes_streaming": "cellflux_streaming_models._anndata._examples:hvg_example",
        "tl.pca_streaming": "cellflux_streaming_models._anndata._examples:pca_example",
    },
    commands={
        "stream": Command(
            "cellflux_streaming_models.lightning._cli:main",
            help="fit|predict --config CONFIG.yaml: train or apply a streaming model over h5ad shards",
        )
    },
)
