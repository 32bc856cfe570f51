"""Out-of-core models over collections of h5ad shards, trained with PyTorch Lightning and DDP.

Public names are imported on first use, so ``import cellflux_streaming_models`` stays light.
"""

from cellflux.plugin import lazy_exports

from ._version import __version__

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "ShardCollection": ".data:ShardCollection",
        "ShardDataset": ".data:ShardDataset",
        "EpochPlan": ".data:EpochPlan",
        "OnePassMeanVarStd": ".models:OnePassMeanVarStd",
        "IncrementalPCA": ".models:IncrementalPCA",
        "HVGSeuratV3": ".models:HVGSeuratV3",
        "TDigest": ".models:TDigest",
        "LogisticRegression": ".models:LogisticRegression",
        "ProbabilisticPCA": ".models:ProbabilisticPCA",
        "StreamingModel": ".models:StreamingModel",
        "SingleCellVariationalInference": ".models:SingleCellVariationalInference",
        "ContrastiveMLP": ".models:ContrastiveMLP",
        "Geneformer": ".models:Geneformer",
        "CellariumGPT": ".models:CellariumGPT",
        "CellariumGPTTokenizer": ".models:CellariumGPTTokenizer",
        "SOCAM": ".models:SOCAM",
        "NormalizeTotal": ".transforms:NormalizeTotal",
        "Log1p": ".transforms:Log1p",
        "ZScore": ".transforms:ZScore",
        "Filter": ".transforms:Filter",
        "StreamingModule": ".lightning:StreamingModule",
        "StreamDataModule": ".lightning:StreamDataModule",
        "stream_fit": "._fit:stream_fit",
        "highly_variable_genes_streaming": "._anndata._hvg:highly_variable_genes_streaming",
        "pca_streaming": "._anndata._pca:pca_streaming",
    },
)
__all__ = [*__all__, "__version__"]
