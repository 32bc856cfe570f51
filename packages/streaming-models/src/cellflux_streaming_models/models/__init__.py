"""Streaming models: state in buffers, reductions across processes at epoch ends."""

from ._base import StreamingModel, check_var_names
from ._digest import GeneDigests
from ._hvg import HVGSeuratV3, fit_loess, rank_seurat_v3
from ._ipca import IncrementalPCA
from ._isvd import PartialSVD, merge_partial, update_with_rows
from ._logistic import LogisticRegression
from ._onepass import OnePassMeanVarStd
from ._ppca import ProbabilisticPCA
from ._tdigest import TDigest

__all__ = [
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
