"""Every key this package reads or writes: batch dictionary keys and AnnData result keys."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["BatchKey", "ResultKey"]


class BatchKey(StrEnum):
    """Keys of the batch dictionaries the loader yields (suffixes name the shape: ``n`` cells, ``g`` genes)."""

    X_NG = "x_ng"
    VAR_NAMES_G = "var_names_g"
    OBS_NAMES_N = "obs_names_n"
    CELL_INDEX_N = "cell_index_n"
    SHARD_INDEX_N = "shard_index_n"
    BATCH_INDEX_N = "batch_index_n"
    Y_N = "y_n"
    TOTAL_MRNA_UMIS_N = "total_mrna_umis_n"
    VALIDATION_CELL_TYPE_INDEX_N = "validation_cell_type_index_n"


class ResultKey(StrEnum):
    """Default ``key_added`` values and the fields written under them."""

    HVG = "highly_variable"
    PCA = "X_pca_streaming"
    PCA_UNS = "pca_streaming"
    MEAN_VAR = "mean_var_streaming"
