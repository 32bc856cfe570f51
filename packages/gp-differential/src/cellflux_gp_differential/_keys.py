"""The AnnData keys this package reads and writes, in one place."""

from __future__ import annotations

from typing import Final

__all__ = ["Key"]


class Key:
    """Default keys and the suffixes of the fields written under ``key_added``."""

    PLUGIN: Final = "cellflux-gp-differential"
    # default key_added
    DA: Final = "gp_da"
    DE: Final = "gp_de"
    SMOOTH: Final = "gp_smooth"
    # default inputs
    OBSM: Final = "X_pca"
    # obs suffixes (differential abundance)
    LOG_FOLD_CHANGE: Final = "log_fold_change"
    ZSCORE: Final = "zscore"
    NEG_LOG10_PTP: Final = "neg_log10_ptp"
    DIRECTION: Final = "direction"
    UNCERTAINTY: Final = "log_fold_change_variance"
    LOG_DENSITY: Final = "log_density"
    # var suffixes (differential expression)
    MAHALANOBIS: Final = "mahalanobis"
    MEAN_LFC: Final = "mean_log_fold_change"
    PVALUE: Final = "pvalue"
    LOCAL_FDR: Final = "local_fdr"
    TAIL_FDR: Final = "tail_fdr"
    IS_DE: Final = "is_de"
    TESTED: Final = "tested"
    # layer suffixes
    FOLD_CHANGE: Final = "fold_change"
    IMPUTED: Final = "imputed"
    STD: Final = "std"
    DIRECTIONS: Final = ("down", "neutral", "up")

    @staticmethod
    def field(key: str, suffix: str, condition: str | None = None) -> str:
        """``"{key}_{suffix}"`` or ``"{key}_{suffix}_{condition}"``."""
        return f"{key}_{suffix}" if condition is None else f"{key}_{suffix}_{condition}"
