"""Every AnnData key the estimators read and write, in one place."""

from __future__ import annotations

from typing import Final

__all__ = ["Key"]


def _d(backward: bool) -> str:
    return "bwd" if backward else "fwd"


class Key:
    """Key names; ``backward`` selects the ``_bwd`` variant."""

    TRANSITION: Final = "T"
    CLUSTERS: Final = "clusters"

    @staticmethod
    def transition(backward: bool = False) -> str:
        """``obsp`` key of the transition matrix (CellRank's convention)."""
        return f"T_{_d(backward)}"

    @staticmethod
    def macrostates(backward: bool = False) -> str:
        """``obs`` key of the macrostates; memberships in ``obsm[<key>_memberships]``."""
        return f"macrostates_{_d(backward)}"

    @staticmethod
    def terminal(backward: bool = False) -> str:
        """``obs`` key of the terminal states (initial states when ``backward``)."""
        return f"term_states_{_d(backward)}"

    @staticmethod
    def initial(backward: bool = False) -> str:
        """``obs`` key of the initial states."""
        return f"init_states_{_d(backward)}"

    @staticmethod
    def fate_probabilities(backward: bool = False) -> str:
        """``obsm`` key of the fate probabilities (a DataFrame, one column per lineage)."""
        return f"lineages_{_d(backward)}"

    @staticmethod
    def absorption_times(backward: bool = False) -> str:
        """``obsm`` key of the absorption times."""
        return f"absorption_times_{_d(backward)}"

    @staticmethod
    def priming(backward: bool = False) -> str:
        """``obs`` key of the priming degree."""
        return f"priming_degree_{_d(backward)}"

    @staticmethod
    def drivers(backward: bool = False) -> str:
        """Prefix of the lineage-driver columns in ``var``."""
        return f"drivers_{_d(backward)}"

    @staticmethod
    def schur(backward: bool = False) -> str:
        """``obsm`` key of the Schur vectors."""
        return f"schur_vectors_{_d(backward)}"

    @staticmethod
    def estimator(backward: bool = False) -> str:
        """``uns`` key of the estimator's state (names, colours, coarse chain, spectra, parameters)."""
        return f"estimator_{_d(backward)}"

    @staticmethod
    def direction(key: str) -> bool | None:
        """The direction a key names by its suffix.

        Parameters
        ----------
        key
            A key such as ``"macrostates_bwd"``.

        Returns
        -------
        ``False`` for a ``_fwd`` key, ``True`` for a ``_bwd`` key, ``None`` for a key without either suffix.
        """
        if key.endswith("_fwd"):
            return False
        if key.endswith("_bwd"):
            return True
        return None

    @staticmethod
    def memberships(key: str) -> str:
        """``obsm`` key of the memberships of the states in ``obs[key]``."""
        return f"{key}_memberships"

    @staticmethod
    def probs(key: str) -> str:
        """``obs`` key of the state probabilities of ``obs[key]``."""
        return f"{key}_probs"

    @staticmethod
    def colors(key: str) -> str:
        """``uns`` key of the colours of ``obs[key]`` (scanpy's convention)."""
        return f"{key}_colors"

    @staticmethod
    def driver_column(prefix: str, lineage: str, stat: str) -> str:
        """``var`` column of one statistic of one lineage's drivers."""
        return f"{prefix}_{lineage}_{stat}"
