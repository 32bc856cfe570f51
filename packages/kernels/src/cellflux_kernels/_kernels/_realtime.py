"""RealTimeKernel: transitions across experimental time points from optimal-transport couplings."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from .._engine._neighbors import knn_connectivities
from .._engine._realtime import entropic_coupling, sparsify_couplings, stitch
from .._keys import Key
from ._anndata import read_connectivities
from ._base import Kernel
from ._connectivity import density_normalize

__all__ = ["RealTimeKernel"]

logger = logging.getLogger(__name__)

Coupling = np.ndarray | sparse.spmatrix | AnnData
SelfTransitions = Literal["connectivities", "all", "diagonal", "uniform"]


class RealTimeKernel(Kernel):
    """Transitions between experimental time points from optimal-transport couplings (CellRank 2's kernel).

    Cells of time point ``t_a`` move to the cells of the next time point ``t_b`` in proportion to the
    coupling ``P[(t_a, t_b)]`` (e.g. from moscot, or computed here with ott-jax); within a time point
    they move along the kNN graph. Forward only.

    Parameters
    ----------
    adata
        Annotated data.
    time_key
        ``obs`` column with the experimental time (numeric or ordered categorical).
    couplings
        ``{(t_a, t_b): coupling}`` with a coupling of shape ``(n cells at t_a, n cells at t_b)``
        (cells in their order in ``adata``), a ``scipy.sparse`` matrix, or an AnnData whose
        ``obs_names``/``var_names`` name the source/target cells. ``None``: the pairs come from
        ``policy`` and :meth:`compute_transition_matrix` computes the couplings with ott-jax.
    policy
        Pairs when ``couplings=None``: ``"sequential"`` (``(t_1, t_2), (t_2, t_3), ...``) or ``"triu"``
        (every ``t_a < t_b``).
    conn_key
        ``obsp`` key of the kNN graph used within time points.
    """

    invertible = False

    def __invert__(self) -> RealTimeKernel:
        """Real time runs forward only."""
        raise TypeError("A RealTimeKernel runs forward in experimental time; it cannot be inverted.")

    def __init__(
        self,
        adata: AnnData,
        time_key: str,
        couplings: Mapping[tuple[Any, Any], Coupling | None] | None = None,
        *,
        policy: Literal["sequential", "triu"] = "sequential",
        conn_key: str = Key.CONNECTIVITIES,
    ) -> None:
        super().__init__(adata)
        if time_key not in adata.obs:
            raise KeyError(f"adata.obs[{time_key!r}] (the experimental time) is missing.")
        time = adata.obs[time_key]
        if time.isna().any():
            raise ValueError(f"adata.obs[{time_key!r}] has {int(time.isna().sum())} missing values.")
        if isinstance(time.dtype, pd.CategoricalDtype):
            points = [c for c in time.cat.categories if (time == c).any()]
        else:
            points = sorted(pd.unique(time))
        if len(points) < 2:
            raise ValueError(f"adata.obs[{time_key!r}] has {len(points)} time point(s); a time course needs two.")
        self._time_key, self._conn_key, self._policy = time_key, conn_key, policy
        self._points = list(points)
        self._codes = np.full(adata.n_obs, -1)
        for a, p in enumerate(points):
            self._codes[(time == p).to_numpy()] = a
        if couplings is None:
            if policy == "sequential":
                pairs = list(itertools.pairwise(points))
            elif policy == "triu":
                pairs = list(itertools.combinations(points, 2))
            else:
                raise ValueError(f"policy must be 'sequential' or 'triu', got {policy!r}.")
            couplings = dict.fromkeys(pairs)
        self._couplings: dict[tuple[Any, Any], Any] = {
            self._check_pair(pair): (None if c is None else self._read_coupling(pair, c))
            for pair, c in dict(couplings).items()
        }

    # -- inputs ------------------------------------------------------------------------------------
    def _index(self, point: Any) -> int:
        matches = [a for a, p in enumerate(self._points) if p == point]
        if not matches:
            raise KeyError(f"Time point {point!r} is not in adata.obs[{self._time_key!r}] (has {self._points}).")
        return matches[0]

    def _check_pair(self, pair: Any) -> tuple[Any, Any]:
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise TypeError(f"Coupling keys must be (source, target) time points, got {pair!r}.")
        a, b = self._index(pair[0]), self._index(pair[1])
        if a >= b:
            raise ValueError(f"A coupling must go forward in time; {pair!r} does not.")
        return pair

    def _cells(self, point: Any) -> np.ndarray:
        return np.flatnonzero(self._codes == self._index(point))

    def _read_coupling(self, pair: tuple[Any, Any], coupling: Coupling) -> np.ndarray | sparse.csr_matrix:
        src, tgt = self._cells(pair[0]), self._cells(pair[1])
        if isinstance(coupling, AnnData):
            names = self.adata.obs_names
            try:
                rows = coupling.obs_names.get_indexer(names[src])
                cols = coupling.var_names.get_indexer(names[tgt])
            except Exception as err:  # pragma: no cover - pandas raises for non-unique names
                raise ValueError(f"The coupling {pair!r} has non-unique obs/var names.") from err
            if (rows < 0).any() or (cols < 0).any() or coupling.shape != (len(src), len(tgt)):
                raise ValueError(
                    f"The coupling AnnData for {pair!r} must have the {len(src)} source cells as obs_names and "
                    f"the {len(tgt)} target cells as var_names; got shape {coupling.shape}."
                )
            matrix = coupling.X[rows][:, cols]
        else:
            matrix = coupling
        if not sparse.issparse(matrix):
            matrix = np.asarray(matrix, dtype=np.float64)
        if matrix.shape != (len(src), len(tgt)):
            raise ValueError(
                f"The coupling {pair!r} has shape {matrix.shape}; expected ({len(src)}, {len(tgt)}) "
                f"(cells at {pair[0]!r} x cells at {pair[1]!r})."
            )
        data = matrix.data if sparse.issparse(matrix) else matrix
        if not np.all(np.isfinite(data)) or np.any(data < 0):
            raise ValueError(f"The coupling {pair!r} has negative, NaN or infinite entries.")
        return sparse.csr_matrix(matrix, dtype=np.float64) if sparse.issparse(matrix) else matrix

    @property
    def time(self) -> pd.Series:
        """The experimental time of every cell."""
        return self.adata.obs[self._time_key]

    @property
    def couplings(self) -> dict[tuple[Any, Any], Any]:
        """The couplings by ``(source, target)`` (``None`` where not computed yet)."""
        return self._couplings

    _nullable_params = ("threshold", "conn_weight")

    def _init_kwargs(self) -> dict[str, Any]:
        return {"time_key": self._time_key, "policy": self._policy, "conn_key": self._conn_key}

    # -- computation -------------------------------------------------------------------------------
    def compute_coupling(self, src: Any, tgt: Any, *, use_rep: str = "X_pca", **kwargs: Any) -> np.ndarray:
        """An entropic OT coupling between two time points on ``obsm[use_rep]`` (needs ott-jax).

        Parameters
        ----------
        src, tgt
            Source and target time points.
        use_rep
            ``obsm`` key of the coordinates (squared Euclidean cost).
        kwargs
            Passed to the solver: ``epsilon``, ``tau_a``, ``tau_b``, ``max_iterations``, marginals ``a``, ``b``.

        Returns
        -------
        The dense coupling, shape ``(n cells at src, n cells at tgt)``.
        """
        if use_rep not in self.adata.obsm:
            raise KeyError(f"adata.obsm[{use_rep!r}] is missing; compute a PCA first (scanpy.pp.pca).")
        Y = np.asarray(self.adata.obsm[use_rep])
        return entropic_coupling(Y[self._cells(src)], Y[self._cells(tgt)], **kwargs)

    def _within(self, point: Any, conn_kwargs: Mapping[str, Any]) -> sparse.csr_matrix:
        """Row-stochastic transitions within one time point: the density-normalised kNN graph on its cells."""
        cells = self._cells(point)
        use_rep = conn_kwargs.get("use_rep", "X_pca")
        if use_rep is not None:
            if use_rep not in self.adata.obsm:
                raise KeyError(
                    f"adata.obsm[{use_rep!r}] is missing; compute a PCA, or pass conn_kwargs={{'use_rep': None}} "
                    f"to use adata.obsp[{self._conn_key!r}] restricted to each time point."
                )
            Y = np.asarray(self.adata.obsm[use_rep])[cells]
            conn, _ = knn_connectivities(Y, int(conn_kwargs.get("n_neighbors", 15)))
        else:
            full = read_connectivities(self.adata, self._conn_key, check=False)
            conn = full[cells][:, cells].tocsr()
        lonely = np.diff(conn.indptr) == 0
        if lonely.any():
            raise ValueError(
                f"{int(lonely.sum())} cells of time point {point!r} have no neighbour at the same time point in "
                f"adata.obsp[{self._conn_key!r}]; use conn_kwargs={{'use_rep': 'X_pca'}} (the default) to build a "
                "kNN graph per time point."
            )
        if conn_kwargs.get("density_normalize", True):
            conn = density_normalize(conn, conn)
        sums = np.asarray(conn.sum(axis=1)).ravel()
        return sparse.csr_matrix(sparse.diags(1.0 / sums) @ conn)

    def compute_transition_matrix(
        self,
        threshold: Literal["auto", "auto_local"] | float | None = "auto",
        self_transitions: SelfTransitions | Sequence[Any] = "connectivities",
        conn_weight: float | None = None,
        conn_kwargs: Mapping[str, Any] | None = None,
        show_progress_bar: bool = True,
        **kwargs: Any,
    ) -> RealTimeKernel:
        """Stitch the couplings into one transition matrix.

        Parameters
        ----------
        threshold
            Removal of small entries of dense couplings: ``"auto"`` (the largest cut that leaves every
            row of every coupling an entry), ``"auto_local"`` (per coupling), a percentile in
            ``[0, 100]``, or ``None``.
        self_transitions
            Transitions within time points: ``"connectivities"`` (only the last time point moves
            within itself, along the kNN graph; CellRank's default), ``"all"`` (every time point mixes
            ``conn_weight`` of within-time-point transitions with ``1 - conn_weight`` of its coupling),
            a sequence of source time points to mix that way, ``"diagonal"`` (the last time point
            stays put) or ``"uniform"`` (the last time point moves uniformly within itself).
        conn_weight
            Weight of the within-time-point transitions, in ``(0, 1)``; needed for ``"all"`` or a sequence.
        conn_kwargs
            How to build the within-time-point graph: by default a kNN graph per time point on
            ``obsm["X_pca"]`` (``{"use_rep": "X_pca", "n_neighbors": 15}``, as CellRank does with scanpy;
            Gaussian connectivities, see the README); ``{"use_rep": None}`` restricts ``obsp[conn_key]``
            to each time point instead; ``density_normalize`` (default ``True``).
        show_progress_bar
            Show a progress bar while couplings are computed.
        kwargs
            Passed to :meth:`compute_coupling` for couplings not given at construction.

        Returns
        -------
        ``self``, with :attr:`transition_matrix`, :attr:`couplings` and :attr:`params` updated.
        """
        from tqdm.auto import tqdm

        conn_kwargs = dict(conn_kwargs or {})
        if isinstance(self_transitions, str):
            if self_transitions not in ("connectivities", "all", "diagonal", "uniform"):
                raise ValueError(
                    "self_transitions must be 'connectivities', 'all', 'diagonal', 'uniform' or a sequence of "
                    f"time points, got {self_transitions!r}."
                )
            mixed_points = [src for src, _ in self._couplings] if self_transitions == "all" else []
        else:
            mixed_points = list(self_transitions)
            for p in mixed_points:
                self._index(p)
        if mixed_points and (conn_weight is None or not 0 < conn_weight < 1):
            raise ValueError(
                f"conn_weight must be in (0, 1) when time points mix in self-transitions, got {conn_weight!r}."
            )
        missing = [pair for pair, c in self._couplings.items() if c is None]
        for src, tgt in tqdm(missing, unit="time pair", disable=not show_progress_bar, leave=False):
            self._couplings[(src, tgt)] = self.compute_coupling(src, tgt, **kwargs)
        coded = {(self._index(a), self._index(b)): c for (a, b), c in self._couplings.items()}
        sparse_couplings = sparsify_couplings(coded, threshold)
        sources = {a for a, _ in coded}
        last = [a for a in range(len(self._points)) if a not in sources]
        within: dict[int, sparse.csr_matrix] = {}
        for a in sorted(set(last) | {self._index(p) for p in mixed_points}):
            n_a = int((self._codes == a).sum())
            if a in last and self_transitions == "diagonal":
                within[a] = sparse.identity(n_a, format="csr")
            elif a in last and self_transitions == "uniform":
                within[a] = sparse.csr_matrix(np.full((n_a, n_a), 1.0 / n_a))
            else:
                within[a] = self._within(self._points[a], conn_kwargs)
        matrix, empty = stitch(
            self._codes,
            sparse_couplings,
            within,
            mixed=[self._index(p) for p in mixed_points],
            conn_weight=conn_weight,
        )
        for (a, b), count in empty.items():
            logger.warning(
                "The coupling (%r, %r) has %d empty rows (unbalanced transport or zero marginals); "
                "they move uniformly to the target time point.",
                self._points[a],
                self._points[b],
                count,
            )
        params = {
            "threshold": threshold,
            "self_transitions": self_transitions if isinstance(self_transitions, str) else list(self_transitions),
            "conn_weight": conn_weight,
            "time_key": self._time_key,
            "time_points": [str(p) for p in self._points],
        }
        self._set_transition_matrix(matrix, params)
        return self
