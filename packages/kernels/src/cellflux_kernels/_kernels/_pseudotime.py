"""PseudotimeKernel and PalantirKernel: a kNN graph biased towards increasing pseudotime."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
from anndata import AnnData
from scipy import sparse

from .._engine._pseudotime import _bias_with_keep, bias_callable, bias_hard, bias_soft
from .._keys import Key
from ._anndata import read_connectivities, warn_if_disconnected
from ._base import Kernel
from ._connectivity import density_normalize

__all__ = ["PalantirKernel", "PseudotimeKernel"]

logger = logging.getLogger(__name__)


class PseudotimeKernel(Kernel):
    """Transitions along the kNN graph biased towards later pseudotime.

    Parameters
    ----------
    adata
        Annotated data with a kNN graph and a pseudotime.
    time_key
        ``obs`` column of the pseudotime (e.g. ``"dpt_pseudotime"``, ``"latent_time"``).
    backward
        Direction of the process: a backward kernel uses ``max(t) - t``.
    conn_key
        ``obsp`` key of the kNN connectivities.
    """

    def __init__(
        self,
        adata: AnnData,
        time_key: str = "dpt_pseudotime",
        backward: bool = False,
        conn_key: str = Key.CONNECTIVITIES,
    ) -> None:
        super().__init__(adata, backward=backward)
        self._time_key, self._conn_key = time_key, conn_key
        self._conn = read_connectivities(adata, conn_key)
        self._pseudotime = self._read_time(time_key)

    def _read_time(self, time_key: str) -> np.ndarray | None:
        if time_key not in self.adata.obs:
            raise KeyError(
                f"adata.obs[{time_key!r}] (the pseudotime) is missing; compute one first "
                "(e.g. scanpy.tl.dpt, scvelo.tl.latent_time, or CytoTRACEKernel(adata).compute_cytotrace())."
            )
        t = np.asarray(self.adata.obs[time_key], dtype=np.float64)
        if np.isnan(t).any():
            raise ValueError(
                f"adata.obs[{time_key!r}] has {int(np.isnan(t).sum())} NaN values; "
                "the pseudotime must be defined for every cell."
            )
        if not np.isfinite(t).all():
            raise ValueError(f"adata.obs[{time_key!r}] has infinite values.")
        return t

    @property
    def connectivities(self) -> sparse.csr_matrix:
        """The kNN connectivities."""
        return self._conn

    @property
    def pseudotime(self) -> np.ndarray | None:
        """The pseudotime in the kernel's direction (``max - t`` when backward)."""
        if self._pseudotime is None:
            return None
        return self._pseudotime.max() - self._pseudotime if self.backward else self._pseudotime

    def _init_kwargs(self) -> dict[str, Any]:
        return {**super()._init_kwargs(), "time_key": self._time_key, "conn_key": self._conn_key}

    def compute_transition_matrix(
        self,
        threshold_scheme: Literal["hard", "soft"] | Callable[..., np.ndarray] = "hard",
        frac_to_keep: float = 0.3,
        b: float = 10.0,
        nu: float = 0.5,
        check_irreducibility: bool = False,
        show_progress_bar: bool = True,
        n_jobs: int | None = None,
        **kwargs: Any,
    ) -> PseudotimeKernel:
        """Bias the kNN graph by pseudotime and row-normalise it.

        Parameters
        ----------
        threshold_scheme
            ``"hard"`` (Palantir-like: drop edges into the past except each cell's ``frac_to_keep``
            strongest ones), ``"soft"`` (VIA-like: down-weight edges into the past by
            ``2 / (1 + exp(b * dt))**(1 / nu)``) or a callable
            ``f(cell_pseudotime, neighbor_pseudotime, neighbor_conn, **kwargs) -> biased_conn``.
        frac_to_keep
            Fraction of the strongest neighbours kept regardless of pseudotime (``"hard"``), in ``[0, 1]``.
        b, nu
            Steepness and shape of the logistic down-weighting (``"soft"``).
        check_irreducibility
            Also warn when the biased graph is not strongly connected.
        show_progress_bar, n_jobs
            Accepted for CellRank compatibility; the computation is vectorised.
        kwargs
            Passed to a callable ``threshold_scheme``.

        Returns
        -------
        ``self``, with :attr:`transition_matrix` and :attr:`params` updated.
        """
        t = self.pseudotime
        if t is None:
            raise ValueError("No pseudotime yet; for a CytoTRACEKernel, call compute_cytotrace() first.")
        if isinstance(threshold_scheme, str):
            if threshold_scheme == "hard":
                biased = bias_hard(self._conn, t, frac_to_keep=frac_to_keep)
                params: dict[str, Any] = {"threshold_scheme": "hard", "frac_to_keep": frac_to_keep}
            elif threshold_scheme == "soft":
                biased = bias_soft(self._conn, t, b=b, nu=nu)
                params = {"threshold_scheme": "soft", "b": b, "nu": nu}
            else:
                raise ValueError(f"threshold_scheme must be 'hard', 'soft' or a callable, got {threshold_scheme!r}.")
        elif callable(threshold_scheme):
            biased = bias_callable(self._conn, t, threshold_scheme, **kwargs)
            params = {"threshold_scheme": getattr(threshold_scheme, "__qualname__", "callable"), **kwargs}
        else:
            raise TypeError(
                f"threshold_scheme must be 'hard', 'soft' or a callable, got {type(threshold_scheme).__name__}."
            )
        self._finish(biased, params, check_irreducibility)
        return self

    def _finish(self, biased: sparse.csr_matrix, params: dict[str, Any], check_irreducibility: bool) -> None:
        empty = np.flatnonzero(np.diff(biased.indptr) == 0)
        if len(empty):
            raise ValueError(
                f"{len(empty)} cells lost every edge when biasing the graph "
                f"(e.g. {self.adata.obs_names[empty[:5]].tolist()}); "
                "keep more neighbours (frac_to_keep) or soften the scheme."
            )
        warn_if_disconnected(biased, "biased by pseudotime")
        if check_irreducibility:
            warn_if_disconnected(biased, "biased by pseudotime", connection="strong")
        self._set_transition_matrix(biased, {**params, "time_key": self._time_key})


class PalantirKernel(PseudotimeKernel):
    """The Palantir-style pseudotime kernel (CellRank 1's ``PalantirKernel``).

    The connectivities are density-normalised, then every edge into the pseudotemporal past is
    removed except each cell's ``floor(degree / k) - 1`` strongest ones (at most 30), so that the graph
    stays connected. Built with the same parameters as :class:`PseudotimeKernel`; its
    :meth:`compute_transition_matrix` has its own (``k``, ``density_normalize``), not
    ``threshold_scheme``, ``frac_to_keep``, ``b`` or ``nu``.
    """

    def compute_transition_matrix(  # type: ignore[override]
        self,
        k: int = 3,
        density_normalize: bool = True,
        check_irreducibility: bool = False,
        show_progress_bar: bool = True,
        n_jobs: int | None = None,
        **kwargs: Any,
    ) -> PalantirKernel:
        """Bias the (density-normalised) graph Palantir's way.

        Parameters
        ----------
        k
            Keep ``floor(degree / k) - 1`` (at most 30) strongest neighbours whatever their pseudotime.
        density_normalize
            Density-normalise the connectivities first.
        check_irreducibility
            Also warn when the biased graph is not strongly connected.
        show_progress_bar, n_jobs
            Accepted for CellRank compatibility; the computation is vectorised.
        kwargs
            Not supported: :class:`PseudotimeKernel`'s ``threshold_scheme``, ``frac_to_keep``, ``b``
            and ``nu`` (or any other keyword) raise a :class:`TypeError` rather than being ignored.

        Returns
        -------
        ``self``, with :attr:`transition_matrix` and :attr:`params` updated.

        Raises
        ------
        TypeError
            For any keyword not listed above.
        """
        if kwargs:
            raise TypeError(
                f"PalantirKernel.compute_transition_matrix() does not take {sorted(kwargs)}: the Palantir scheme "
                "is set by k and density_normalize only. For threshold_scheme, frac_to_keep, b or nu use "
                "PseudotimeKernel."
            )
        if k < 1:
            raise ValueError(f"k must be a positive integer, got {k}.")
        conn = density_normalize_conn(self._conn) if density_normalize else self._conn
        degree = np.diff(conn.indptr)
        n_keep = np.clip(np.floor(degree / k).astype(np.int64) - 1, 0, 30)
        biased = _bias_with_keep(conn, self.pseudotime, n_keep)
        self._finish(biased, {"k": k, "density_normalize": bool(density_normalize)}, check_irreducibility)
        return self


def density_normalize_conn(conn: sparse.csr_matrix) -> sparse.csr_matrix:
    """The connectivities density-normalised by themselves."""
    out = density_normalize(conn, conn)
    out.sort_indices()
    return out
