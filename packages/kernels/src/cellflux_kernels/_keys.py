"""The AnnData keys cellflux-kernels reads and writes, in one place."""

from __future__ import annotations

from typing import Final

__all__ = ["Key"]


class Key:
    """Default keys (CellRank's names, so that existing AnnData objects work as they are)."""

    # inputs
    CONNECTIVITIES: Final = "connectivities"
    XKEY: Final = "Ms"
    VKEY: Final = "velocity"
    VARIANCE_SUFFIX: Final = "variance_"  # scVelo's ``variance_velocity``
    # outputs
    FORWARD: Final = "T_fwd"
    BACKWARD: Final = "T_bwd"
    CT_SCORE: Final = "ct_score"
    CT_PSEUDOTIME: Final = "ct_pseudotime"
    CT_NUM_EXP_GENES: Final = "ct_num_exp_genes"
    CT_GENE_CORR: Final = "ct_gene_corr"
    CT_CORRELATES: Final = "ct_correlates"
    CT_PARAMS: Final = "ct_params"
    # inside uns[key]
    INIT: Final = "init"
    KERNEL: Final = "kernel"
    EXPRESSION: Final = "expression"

    @staticmethod
    def transition(backward: bool | None, key: str | None = None) -> str:
        """``key`` if given, else ``"T_bwd"`` for a backward process and ``"T_fwd"`` otherwise."""
        if key is not None:
            return key
        return Key.BACKWARD if backward else Key.FORWARD

    @staticmethod
    def projection(key: str, basis: str) -> str:
        """Where the projection of ``obsp[key]`` onto ``basis`` goes: ``obsm[f"{key}_{basis}"]``."""
        return f"{key}_{basis.removeprefix('X_')}"

    @staticmethod
    def genes_mask(vkey: str) -> str:
        """ScVelo's ``var[f"{vkey}_genes"]`` mask of velocity genes."""
        return f"{vkey}_genes"
