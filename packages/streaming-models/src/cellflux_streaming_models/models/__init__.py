"""Streaming models: state in buffers, reductions across processes at epoch ends.

Geneformer imports Hugging Face ``transformers`` (the ``geneformer`` extra) only when one is built.
"""

from ._base import StreamingModel, check_var_names
from ._cellarium_gpt import CellariumGPT
from ._contrastive import ContrastiveMLP, nt_xent
from ._digest import GeneDigests
from ._geneformer import Geneformer
from ._hvg import HVGSeuratV3, fit_loess, rank_seurat_v3
from ._ipca import IncrementalPCA
from ._isvd import PartialSVD, merge_partial, update_with_rows
from ._logistic import LogisticRegression
from ._onepass import OnePassMeanVarStd
from ._ppca import ProbabilisticPCA
from ._scvi import SingleCellVariationalInference
from ._scvi_metrics import latent_metrics
from ._socam import SOCAM, propagate_probabilities
from ._tdigest import TDigest
from ._tokenizers import CellariumGPTTokenizer

__all__ = [
    "SOCAM",
    "CellariumGPT",
    "CellariumGPTTokenizer",
    "ContrastiveMLP",
    "GeneDigests",
    "Geneformer",
    "HVGSeuratV3",
    "IncrementalPCA",
    "LogisticRegression",
    "OnePassMeanVarStd",
    "PartialSVD",
    "ProbabilisticPCA",
    "SingleCellVariationalInference",
    "StreamingModel",
    "TDigest",
    "check_var_names",
    "fit_loess",
    "latent_metrics",
    "merge_partial",
    "nt_xent",
    "propagate_probabilities",
    "rank_seurat_v3",
    "update_with_rows",
]
