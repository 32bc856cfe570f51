"""VelocityKernel: transition probabilities from RNA velocity over the kNN graph."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
from anndata import AnnData
from scipy import sparse

from .._engine._edges import nonfinite_columns, row_center_norm
from .._engine._montecarlo import monte_carlo_probabilities, sample_velocities
from .._engine._neighbors import moments
from .._engine._velocity import (
    SIMILARITIES,
    EdgeResult,
    edges_to_csr,
    estimate_softmax_scale,
    similarity_callable,
    similarity_logits,
    softmax_from_logits,
    stochastic_probabilities,
)
from .._keys import Key
from ._anndata import read_connectivities, read_matrix, resolve_gene_subset
from ._base import Kernel

__all__ = ["VelocityKernel"]

logger = logging.getLogger(__name__)

Mode = Literal["deterministic", "stochastic", "monte_carlo", "sampling"]
MODES = ("deterministic", "stochastic", "monte_carlo", "sampling")


def _dense(A: Any) -> np.ndarray:
    """A C-contiguous dense float32/float64 array, without a copy when ``A`` already is one."""
    A = A.toarray() if sparse.issparse(A) else np.asarray(A)
    if A.dtype not in (np.float32, np.float64):
        A = A.astype(np.float64)
    return np.ascontiguousarray(A)


class VelocityKernel(Kernel):
    """Transition probabilities from how well each cell's velocity points at its neighbours.

    For every edge ``(i, j)`` of the kNN graph the displacement ``x_j - x_i`` is compared with the
    velocity ``v_i`` (Pearson correlation, cosine similarity or dot product), and a softmax with
    ``softmax_scale`` over the neighbours gives the probabilities, as CellRank's ``VelocityKernel``.
    A cell with zero velocity, or whose every similarity is undefined (all its neighbours have its
    expression, so every displacement is zero), moves uniformly to its neighbours in every mode.

    Parameters
    ----------
    adata
        Annotated data with expression, velocity and a kNN graph.
    backward
        Direction of the process.
    attr
        ``"layers"`` or ``"obsm"``: where ``xkey`` and ``vkey`` live.
    xkey
        Expression (e.g. scVelo's first moments ``"Ms"``).
    vkey
        Velocity.
    gene_subset
        Genes to use: names, a boolean mask or a ``var`` column; by default ``var[f"{vkey}_genes"]`` when present.
        :meth:`write_to_adata` stores the selected gene names, so :func:`read_kernel` uses the same genes.
    conn_key
        ``obsp`` key of the kNN connectivities whose non-zeros are the candidate transitions.
    """

    def __init__(
        self,
        adata: AnnData,
        backward: bool = False,
        attr: Literal["layers", "obsm"] = "layers",
        xkey: str = Key.XKEY,
        vkey: str = Key.VKEY,
        gene_subset: Sequence[str] | np.ndarray | str | None = None,
        conn_key: str = Key.CONNECTIVITIES,
    ) -> None:
        super().__init__(adata, backward=backward)
        self._attr, self._xkey, self._vkey, self._conn_key = attr, xkey, vkey, conn_key
        self._gene_subset = gene_subset
        self._conn = read_connectivities(adata, conn_key)
        X = read_matrix(adata, xkey, attr)
        V = read_matrix(adata, vkey, attr)
        if attr == "layers":
            if gene_subset is None and Key.genes_mask(vkey) in adata.var:
                gene_subset = Key.genes_mask(vkey)
            mask = resolve_gene_subset(adata, gene_subset)
        else:
            mask = None
        # the genes selected (by name), stored by write_to_adata so that read_kernel selects them again
        self._subset_names = None if mask is None or mask.all() else [str(g) for g in np.asarray(adata.var_names[mask])]
        self._X, self._V, self.genes = self._read_xv(X, V, mask)
        self._logits_cache: dict[tuple[str, str | None], EdgeResult] = {}
        self._moments: tuple[np.ndarray, np.ndarray] | None = None
        self._logits: np.ndarray | None = None

    def _read_xv(self, X: Any, V: Any, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        where_x, where_v = f"adata.{self._attr}[{self._xkey!r}]", f"adata.{self._attr}[{self._vkey!r}]"
        if X.shape != V.shape:
            raise ValueError(f"{where_x} has shape {X.shape} but {where_v} has shape {V.shape}; they must match.")
        if X.shape[0] != self.adata.n_obs:
            raise ValueError(f"{where_x} has {X.shape[0]} rows, expected n_obs={self.adata.n_obs}.")
        if mask is not None and not mask.all():
            X, V = X[:, mask], V[:, mask]
        X, V = _dense(X), _dense(V)
        genes = (
            np.asarray(self.adata.var_names[mask] if mask is not None else self.adata.var_names)
            if self._attr == "layers"
            else np.arange(V.shape[1]).astype(str)
        )
        bad = nonfinite_columns(V)
        if bad.all():
            raise ValueError(f"{where_v} is NaN or infinite in every gene; recompute the velocity.")
        if bad.any():
            warnings.warn(
                f"{int(bad.sum())} of {len(bad)} genes have NaN or infinite values in {where_v}; they are dropped.",
                UserWarning,
                stacklevel=3,
            )
            X, V, genes = X[:, ~bad], V[:, ~bad], genes[~bad]
        bad_x = nonfinite_columns(X)
        if bad_x.any():
            n_bad = int(bad_x.sum())
            raise ValueError(f"{where_x} has NaN or infinite values in {n_bad} genes; impute or filter them first.")
        zero = row_center_norm(V, center=False)[2]
        if zero.any():
            logger.info(
                "%d cells have zero velocity; their transitions are uniform over their neighbours.", int(zero.sum())
            )
        return X, V, genes

    @property
    def connectivities(self) -> sparse.csr_matrix:
        """The kNN connectivities the kernel works on."""
        return self._conn

    @property
    def logits(self) -> sparse.csr_matrix | None:
        """The similarities (before the softmax) of the last computation, as CSR."""
        if self._logits is None:
            return None
        return edges_to_csr(self._logits, self._conn.indptr, self._conn.indices, self.shape[0])

    def _on_invert(self) -> None:
        self._logits = None
        self._requested = None

    def _init_kwargs(self) -> dict[str, Any]:
        return {
            **super()._init_kwargs(),
            "attr": self._attr,
            "xkey": self._xkey,
            "vkey": self._vkey,
            "conn_key": self._conn_key,
            # None (all genes) is not stored; an empty list is not possible (a subset selects >= 1 gene)
            "gene_subset": self._subset_names,
        }

    def _edge_logits(self, similarity: str, backward_mode: str | None, show: bool) -> EdgeResult:
        key = (similarity, backward_mode)
        if key not in self._logits_cache:
            self._logits_cache[key] = similarity_logits(
                self._conn.indptr,
                self._conn.indices,
                self._X,
                self._V,
                similarity=similarity,  # type: ignore[arg-type]
                backward_mode=backward_mode,  # type: ignore[arg-type]
                show_progress_bar=show,
            )
        return self._logits_cache[key]

    def _velocity_moments(self, variance_key: str | None) -> tuple[np.ndarray, np.ndarray]:
        if variance_key is not None:
            var = read_matrix(self.adata, variance_key, self._attr)
            var = var.toarray() if sparse.issparse(var) else np.asarray(var, dtype=np.float64)
            if self._attr == "layers":
                var = var[:, np.isin(self.adata.var_names, self.genes)]
            if var.shape != self._V.shape:
                raise ValueError(
                    f"adata.{self._attr}[{variance_key!r}] has shape {var.shape}, expected {self._V.shape}."
                )
            if not np.isfinite(var).all() or np.any(var < 0):
                raise ValueError(f"adata.{self._attr}[{variance_key!r}] has negative, NaN or infinite variances.")
            return self._V, np.asarray(var, dtype=np.float64)
        if self._moments is None:
            self._moments = moments(self._conn, self._V)
        return self._moments

    def compute_transition_matrix(
        self,
        mode: Mode = "deterministic",
        backward_mode: Literal["transpose", "negate"] = "transpose",
        similarity: Literal["correlation", "cosine", "dot_product"]
        | Callable[..., tuple[np.ndarray, np.ndarray]] = "correlation",
        softmax_scale: float | None = None,
        n_samples: int = 1000,
        seed: int | None = None,
        show_progress_bar: bool = True,
        n_jobs: int | None = None,
        *,
        variance_key: str | None = None,
        model: Mode | None = None,
    ) -> VelocityKernel:
        """Compute the transition matrix from velocities.

        Parameters
        ----------
        mode
            ``"deterministic"`` (the velocity as it is), ``"stochastic"`` (the expectation under Gaussian
            velocity uncertainty, second-order closed form), ``"monte_carlo"`` (the average over
            ``n_samples`` sampled velocities) or ``"sampling"`` (one sampled velocity per cell).
        backward_mode
            For a backward kernel: ``"transpose"`` (compare each neighbour's velocity with the
            displacement back to this cell) or ``"negate"`` (negate the velocity).
        similarity
            ``"correlation"``, ``"cosine"``, ``"dot_product"`` or a callable
            ``f(v, D, softmax_scale) -> (probabilities, logits)`` applied row by row. :attr:`params`
            stores a callable's name; a later call reuses the matrix only for the same callable object.
        softmax_scale
            Scale of the softmax; ``None`` estimates it as ``1 / median(|logits|)`` of a deterministic run.
        n_samples
            Samples per cell for ``mode="monte_carlo"``.
        seed
            Random seed for ``"monte_carlo"`` and ``"sampling"``.
        show_progress_bar
            Show a progress bar.
        n_jobs
            Accepted for CellRank compatibility; the computation is vectorised and ignores it.
        variance_key
            Velocity variance per cell and gene (e.g. scVelo's ``"variance_velocity"`` or a VAE's
            posterior variance) for the non-deterministic modes. ``None`` uses the mean and variance of
            the velocity over each cell's neighbourhood, as CellRank does.
        model
            CellRank 2's name for ``mode``; overrides it when given.

        Returns
        -------
        ``self``, with :attr:`transition_matrix`, :attr:`logits` and :attr:`params` updated.
        """
        mode = model if model is not None else mode
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
        if backward_mode not in ("transpose", "negate"):
            raise ValueError(f"backward_mode must be 'transpose' or 'negate', got {backward_mode!r}.")
        custom = callable(similarity)
        if not custom and similarity not in SIMILARITIES:
            raise ValueError(f"similarity must be one of {tuple(SIMILARITIES)} or a callable, got {similarity!r}.")
        bmode = backward_mode if self.backward else None
        if bmode == "transpose" and mode != "deterministic":
            logger.warning("mode=%r is not defined for backward_mode='transpose'; using mode='deterministic'.", mode)
            mode = "deterministic"
        if custom and mode == "stochastic":
            logger.warning("A custom similarity has no closed-form expectation; using mode='monte_carlo'.")
            mode = "monte_carlo"
        params: dict[str, Any] = {
            "softmax_scale": softmax_scale,
            "mode": mode,
            "similarity": similarity if not custom else getattr(similarity, "__qualname__", "callable"),
        }
        if self.backward:
            params["backward_mode"] = backward_mode
        if mode in ("monte_carlo", "sampling"):
            params["n_samples"] = n_samples if mode == "monte_carlo" else 1
            params["seed"] = seed
        if variance_key is not None and mode != "deterministic":
            params["variance_key"] = variance_key
        # what the reuse check compares: the parameters, with a custom similarity as the callable itself
        # (params keep only its name, which h5ad can store but two different callables may share)
        requested = {**params, "similarity": similarity}
        if (
            self._transition_matrix is not None
            and self._requested == requested
            and (mode == "deterministic" or seed is not None)
        ):
            logger.debug("Reusing the transition matrix computed with the same parameters.")
            return self

        indptr, indices, n = self._conn.indptr, self._conn.indices, self.shape[0]
        if softmax_scale is None:
            if custom:
                _, logits = similarity_callable(indptr, indices, self._X, self._V, similarity, 1.0, backward_mode=bmode)
            else:
                logits = self._edge_logits(similarity, bmode, show_progress_bar).logits  # type: ignore[arg-type]
            softmax_scale = estimate_softmax_scale(logits)
            logger.info("Using softmax_scale=%.4f", softmax_scale)
            params["softmax_scale"] = softmax_scale

        if mode == "deterministic":
            if custom:
                probs, logits = similarity_callable(
                    indptr,
                    indices,
                    self._X,
                    self._V,
                    similarity,
                    softmax_scale,
                    backward_mode=bmode,
                    show_progress_bar=show_progress_bar,
                )
            else:
                result = self._edge_logits(similarity, bmode, show_progress_bar)  # type: ignore[arg-type]
                probs, logits = softmax_from_logits(result, indptr, softmax_scale), result.logits
        else:
            mean, var = self._velocity_moments(variance_key)
            if bmode == "negate":
                mean = -mean
            rng = np.random.default_rng(seed)
            if mode == "stochastic":
                probs, logits = stochastic_probabilities(
                    indptr,
                    indices,
                    self._X,
                    mean,
                    var,
                    softmax_scale,
                    similarity=similarity,
                    show_progress_bar=show_progress_bar,  # type: ignore[arg-type]
                )
            else:
                # CellRank draws N(mean, scale=var) (the variance used as the standard deviation); see the README
                spread = np.abs(var) if variance_key is None else np.sqrt(var)
                if mode == "sampling":
                    sample = sample_velocities(mean, spread, rng)
                    result = (
                        similarity_logits(indptr, indices, self._X, sample, similarity=similarity)
                        if not custom
                        else None
                    )  # type: ignore[arg-type]
                    if result is None:
                        probs, logits = similarity_callable(indptr, indices, self._X, sample, similarity, softmax_scale)
                    else:
                        probs, logits = softmax_from_logits(result, indptr, softmax_scale), result.logits
                elif custom:
                    probs, logits = self._monte_carlo_callable(
                        similarity, mean, spread, softmax_scale, n_samples, rng, show_progress_bar
                    )
                else:
                    probs, logits = monte_carlo_probabilities(
                        indptr,
                        indices,
                        self._X,
                        mean,
                        spread,
                        softmax_scale,
                        n_samples=n_samples,
                        similarity=similarity,
                        rng=rng,
                        show_progress_bar=show_progress_bar,  # type: ignore[arg-type]
                    )
        matrix = edges_to_csr(probs, indptr, indices, n)
        self._set_transition_matrix(matrix, params)
        self._requested = requested
        self._logits = logits
        return self

    _requested: dict[str, Any] | None = None

    def _monte_carlo_callable(
        self,
        similarity: Callable[..., tuple[np.ndarray, np.ndarray]],
        mean: np.ndarray,
        spread: np.ndarray,
        softmax_scale: float,
        n_samples: int,
        rng: np.random.Generator,
        show: bool,
    ) -> tuple[np.ndarray, np.ndarray]:
        indptr, indices = self._conn.indptr, self._conn.indices
        probs = np.zeros(len(indices))
        logits = np.zeros(len(indices))
        for _ in range(n_samples):
            sample = sample_velocities(mean, spread, rng)
            p, c = similarity_callable(indptr, indices, self._X, sample, similarity, softmax_scale)
            probs += p
            logits += c
        return probs / n_samples, logits / n_samples
