"""Streaming models: state in buffers, reductions across processes at epoch ends."""

from ._base import StreamingModel, check_var_names
from ._contrastive import ContrastiveMLP, nt_xent
from ._digest import GeneDigests
from ._hvg import HVGSeuratV3, fit_loess, rank_seurat_v3
from ._ipca import IncrementalPCA
from ._isvd import PartialSVD, merge_partial, update_with_rows
from ._logistic import LogisticRegression
from ._onepass import OnePassMeanVarStd
from ._ppca import ProbabilisticPCA
from ._scvi import SingleCellVariationalInference
from ._scvi_metrics import latent_metrics
from ._tdigest import TDigest

__all__ = [
    "ContrastiveMLP",
    "SingleCellVariationalInference",
    "latent_metrics",
    "nt_xent",
    "GeneDigests",
    "HVGSeuratV3",
    "IncrementalPCA",
    "LogisticRegression",
    "OnePassMeanVarStd",
    "PartialSVD",
    "ProbabilisticPCA",
    "StreamingModel",
    "TDigest",
    "check_var_names",
    "fit_loess",
    "merge_partial",
    "rank_seurat_v3",
    "update_with_rows",
]

# transformers and ontology-aware classification (Geneformer needs the `geneformer` extra when built)
from ._cellarium_gpt import CellariumGPT  # noqa: E402
from ._geneformer import Geneformer  # noqa: E402
from ._socam import SOCAM, propagate_probabilities  # noqa: E402
from ._tokenizers import CellariumGPTTokenizer  # noqa: E402

__all__ += ["SOCAM", "CellariumGPT", "CellariumGPTTokenizer", "Geneformer", "propagate_probabilities"]
