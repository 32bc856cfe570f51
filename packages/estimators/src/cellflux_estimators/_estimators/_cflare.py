"""CFLARE: terminal states from clusters of cells that stand out in the leading left eigenvectors."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats

from .._engine._cluster import cluster_rows
from .._engine._eigen import right_eigenvectors
from .._engine._states import name_from_clusters
from .._engine._threads import single_blas_thread
from ._decomposition import DecompositionMixin
from ._drivers import DriversMixin
from ._plots import PlotMixin

__all__ = ["CFLARE"]

logger = logging.getLogger(__name__)


class CFLARE(PlotMixin, DriversMixin, DecompositionMixin):
    """Clustering and Filtering Left Eigenvectors Appended with Restrictions (CFLARE).

    Parameters
    ----------
    obj
        A kernel or kernel expression, an AnnData holding the matrix in ``obsp``, or a row-stochastic matrix.
    adata
        The cells' AnnData.
    backward
        Direction (from the kernel when ``None``).
    obsp_key
        The ``obsp`` key of the matrix for an AnnData input.
    seed
        Seed of every random choice.
    """

    def predict(
        self,
        use: int | Sequence[int] | None = None,
        *,
        percentile: float | None = 98,
        method: Literal["kmeans", "leiden"] = "kmeans",
        cluster_key: str | None = None,
        n_clusters: int | None = None,
        n_neighbors: int = 20,
        resolution: float = 0.1,
        basis: str | None = None,
        n_comps: int = 5,
        scale: bool | None = None,
    ) -> CFLARE:
        """Find terminal states by clustering cells that are extreme in the leading left eigenvectors.

        Parameters
        ----------
        use
            Eigenvectors to use: a number (the first ``use``) or indices; ``None`` uses the eigengap.
        percentile
            Keep only cells above this percentile of ``|left eigenvector|`` in at least one eigenvector.
        method
            ``"kmeans"`` (seeded, no optional dependency) or ``"leiden"`` (needs the optional ``leidenalg`` and
            ``igraph``). CellRank's default is Leiden: pass ``method="leiden"`` for its partition, which
            k-means with ``len(use)`` clusters can coarsen.
        cluster_key
            Name the states after these clusters.
        n_clusters
            k-means clusters (default ``len(use)``, plus one without ``percentile``).
        n_neighbors, resolution
            Leiden's graph and resolution.
        basis, n_comps
            Append the first ``n_comps`` columns of ``adata.obsm[basis]`` to the eigenvectors (they must be finite).
        scale
            z-score the features (default: only with a ``basis``); constant features become 0.

        Returns
        -------
        Self; sets :attr:`terminal_states`.

        Raises
        ------
        ValueError
            If the basis has non-finite values (NaN or inf) in the columns used.
        """
        eig = self._eig
        if eig is None or eig.left is None:
            raise RuntimeError("Compute the eigendecomposition first (compute_eigendecomposition).")
        k = eig.left.shape[1]
        if use is None:
            use = eig.eigengap + 1
        use = list(range(use)) if isinstance(use, (int, np.integer)) else list(use)
        if not use:
            raise ValueError("No eigenvectors were selected.")
        if max(use) >= k:
            raise ValueError(
                f"Eigenvector {max(use)} was requested but only {k} were computed; "
                f"call compute_eigendecomposition(k={max(use) + 1})."
            )
        if eig.right is None or eig.right.shape[1] <= max(use):
            # only the right eigenvectors the prediction uses (fit computes none up front)
            right = right_eigenvectors(
                self.transition_matrix,
                max(use) + 1,
                which=eig.which,
                seed=self.seed,
                eigenvalues=eig.eigenvalues,
                left=eig.left,
            )
            eig = self._eig = dataclasses.replace(eig, right=right)
        left = eig.left[:, use]
        if np.abs(left.imag).max() > 1e-8:
            logger.warning("Some selected left eigenvectors are complex; using their real parts.")
        left = left.real
        x = eig.right[:, use].real
        if basis is not None:
            adata = self._require_adata("basis=")
            key = basis if basis in adata.obsm else f"X_{basis}"
            if key not in adata.obsm:
                raise KeyError(f"adata.obsm[{basis!r}] does not exist.")
            extra = np.asarray(adata.obsm[key], dtype=np.float64)[:, :n_comps]
            bad = ~np.isfinite(extra).all(axis=1)
            if bad.any():
                raise ValueError(
                    f"adata.obsm[{key!r}] (basis={basis!r}) has {int(bad.sum())} of its {len(extra)} cells with values "
                    f"that are not finite (NaN or inf) in the columns used (n_comps={n_comps}); impute them or pass "
                    "another basis."
                )
            x = np.concatenate([x, extra], axis=1)
        keep = np.ones(self.n_cells, dtype=bool)
        if percentile is not None:
            if not 0 <= percentile <= 100:
                raise ValueError(f"percentile must be in [0, 100], got {percentile}.")
            cutoffs = np.percentile(np.abs(left), percentile, axis=0)
            keep = np.any(np.abs(left) >= cutoffs, axis=1)
        x = x[keep]
        if scale if scale is not None else basis is not None:
            # a constant feature carries no information: 0, instead of the NaN of 0 / 0
            varies = np.ptp(x, axis=0) > 0
            x[:, varies] = stats.zscore(x[:, varies], axis=0)
            x[:, ~varies] = 0.0
        if method == "kmeans" and n_clusters is None:
            n_clusters = len(use) + (percentile is None)
        with single_blas_thread():  # tiny products: extra BLAS threads only spin on a shared machine
            labels = cluster_rows(
                x, method=method, n_clusters=n_clusters, n_neighbors=n_neighbors, resolution=resolution, seed=self.seed
            )
        full = np.full(self.n_cells, -1, dtype=np.int64)
        full[keep] = labels
        k_states = int(labels.max()) + 1
        names = self._names(full, k_states, cluster_key)
        series = pd.Series(pd.Categorical.from_codes(full, categories=names), index=self.obs_names)
        self._write_states("terminal", series, None, cluster_key=cluster_key)
        self.params["terminal_states"] = {"method": method, "use": use, "percentile": percentile}
        return self

    def _names(self, labels: np.ndarray, k: int, cluster_key: str | None) -> list[str]:
        if cluster_key is None:
            return [str(i) for i in range(k)]
        adata = self._require_adata("Naming states from clusters")
        if cluster_key not in adata.obs:
            raise KeyError(f"adata.obs[{cluster_key!r}] does not exist.")
        col = adata.obs[cluster_key]
        cats = [str(c) for c in col.cat.categories] if isinstance(col.dtype, pd.CategoricalDtype) else None
        return name_from_clusters(labels, col.astype(str).to_numpy(), k, cats)

    def fit(self, k: int = 20, **kwargs) -> CFLARE:
        """Compute the eigendecomposition and predict terminal states (``kwargs`` go to :meth:`predict`).

        Only the right eigenvectors that :meth:`predict` uses are computed (see ``n_right`` of
        :meth:`compute_eigendecomposition`).

        Returns
        -------
        Self.
        """
        self.compute_eigendecomposition(k, n_right=0)
        return self.predict(**kwargs)
