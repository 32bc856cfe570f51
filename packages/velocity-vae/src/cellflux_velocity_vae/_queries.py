"""Posterior queries of VELOVI (velocity, latent time, states, fits, uncertainty, permutation scores).

A mixin for :class:`~cellflux_velocity_vae.VELOVI`: each query validates the AnnData, then runs the
batched engine of :mod:`._posterior` (all Monte Carlo draws of a chunk of cells in one pass).
The signatures and return values follow scvi-tools' ``VELOVI``.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import torch
from scipy.stats import ttest_ind

from . import _posterior as post
from ._constants import REGISTRY_KEYS, STATES
from ._uncertainty import STATISTICS, directional_statistics
from ._validate import check_same_genes, dense

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["STATE_WEIGHTS", "VelocityQueriesMixin"]

#: How posterior queries treat the Dirichlet state weights of each latent draw.
STATE_WEIGHTS = ("auto", "expected", "sampled")


logger = logging.getLogger(__name__)


class VelocityQueriesMixin:
    """Posterior queries over the batched engine (``self`` is a :class:`VELOVI`)."""

    # ------------------------------------------------------------------ helpers
    def _query_setup(
        self: Any,
        adata: AnnData | None,
        indices: Sequence[int] | None,
        gene_list: Sequence[str] | None,
        n_samples: int,
        return_mean: bool,
        return_numpy: bool | None,
    ) -> tuple[AnnData, np.ndarray, Any, Any, np.ndarray | slice, bool | None]:
        if adata is not None:
            check_same_genes(self.adata.var_names, adata)
        adata = self._validate_anndata(adata)
        manager = self.get_anndata_manager(adata, required=True)
        spliced = manager.get_from_registry(REGISTRY_KEYS.X_KEY)
        unspliced = manager.get_from_registry(REGISTRY_KEYS.U_KEY)
        indices = np.arange(adata.n_obs) if indices is None else np.asarray(indices)
        if indices.dtype == bool:
            indices = np.flatnonzero(indices)
        if int(n_samples) < 1:
            raise ValueError(f"n_samples must be at least 1, got {n_samples}.")
        if gene_list is None:
            gene_mask: np.ndarray | slice = slice(None)
        else:
            genes = set(gene_list)
            unknown = genes.difference(adata.var_names)
            if unknown:
                raise KeyError(f"gene_list has genes the model does not know: {sorted(unknown)[:5]}.")
            gene_mask = np.asarray([g in genes for g in adata.var_names])
        if n_samples > 1 and return_mean is False:
            if return_numpy is False:
                warnings.warn(
                    "return_numpy must be True if n_samples > 1 and return_mean is False, returning np.ndarray",
                    UserWarning,
                    stacklevel=3,
                )
            return_numpy = True
        return adata, indices, spliced, unspliced, gene_mask, return_numpy

    def _chunks(
        self: Any, spliced: Any, unspliced: Any, indices: np.ndarray, n_samples: int, batch_size: int | None, **kw: Any
    ):
        return post.iterate_posterior(self.module, spliced, unspliced, indices, n_samples, batch_size=batch_size, **kw)

    @staticmethod
    def _expected_states(state_weights: str, linear: bool) -> bool:
        """Whether a query uses the expected state weights (see ``state_weights`` of the queries)."""
        if state_weights not in STATE_WEIGHTS:
            raise ValueError(f"state_weights must be one of {STATE_WEIGHTS}, got {state_weights!r}.")
        if state_weights == "expected" and not linear:
            raise ValueError(
                "state_weights='expected' needs a statistic that is linear in the state weights and averaged "
                "over samples: use return_mean=True and the 'mean' statistic, or state_weights='sampled'."
            )
        return state_weights == "expected" or (state_weights == "auto" and linear)

    @staticmethod
    def _as_frame(
        values: np.ndarray,
        adata: AnnData,
        indices: np.ndarray,
        gene_mask: np.ndarray | slice,
        return_numpy: bool | None,
    ):
        if return_numpy:
            return values
        return pd.DataFrame(values, columns=adata.var_names[gene_mask], index=adata.obs_names[indices])

    def _subsample(self: Any, indices: np.ndarray, n_samples_overall: int | None) -> np.ndarray:
        if n_samples_overall is None:
            return indices
        pick = torch.randint(len(indices), (int(n_samples_overall),)).numpy()
        return indices[pick]

    # ------------------------------------------------------------------ queries
    @torch.inference_mode()
    def get_state_assignment(
        self: Any,
        adata: AnnData | None = None,
        indices: Sequence[int] | None = None,
        gene_list: Sequence[str] | None = None,
        hard_assignment: bool = False,
        n_samples: int = 20,
        batch_size: int | None = None,
        return_mean: bool = True,
        return_numpy: bool | None = None,
        state_weights: Literal["auto", "expected", "sampled"] = "auto",
    ) -> tuple[np.ndarray | pd.DataFrame, list[str]]:
        """Posterior probabilities of the four kinetic states per cell and gene.

        Parameters
        ----------
        adata
            AnnData with the model's genes; by default the one the model was set up with.
        indices
            Cells to use; all by default.
        gene_list
            Restrict to these genes.
        hard_assignment
            Return the most probable state's name per cell and gene (with ``return_mean``).
        n_samples
            Posterior samples per cell.
        batch_size
            Cells per chunk (by default as many as fit a fixed memory budget).
        return_mean
            Average over samples.
        return_numpy
            Kept for scvi-tools compatibility.
        state_weights
            ``"sampled"``: a Dirichlet draw of the four state weights per latent draw, as scvi-tools
            does; ``"expected"``: their expectation ``alpha / sum(alpha)`` given the latent draw, the
            Rao–Blackwellised estimator of the same posterior mean (less Monte Carlo noise, several
            times faster); ``"auto"`` (default): ``"expected"`` where the result is an average over
            samples of a quantity linear in the weights, else ``"sampled"``.

        Returns
        -------
        The ``(cells, genes, 4)`` probabilities (``(samples, cells, genes, 4)`` without
        ``return_mean``) or, with ``hard_assignment``, a cells x genes DataFrame of state names;
        and the state names.
        """
        adata, indices, s, u, mask, return_numpy = self._query_setup(
            adata, indices, gene_list, n_samples, return_mean, return_numpy
        )
        expected = self._expected_states(state_weights, return_mean)
        states = post.reduce_samples(
            self._chunks(s, u, indices, n_samples, batch_size, expected_states=expected),
            lambda c: c.pi[..., mask, :],
            len(indices),
            n_samples,
            None,
            return_mean,
        )
        names = list(STATES)
        if hard_assignment and return_mean:
            labels = np.asarray(names, dtype=object)[states.argmax(-1)]
            return pd.DataFrame(labels, index=adata.obs_names[indices], columns=adata.var_names[mask]), names
        return states, names

    @torch.inference_mode()
    def get_latent_time(
        self: Any,
        adata: AnnData | None = None,
        indices: Sequence[int] | None = None,
        gene_list: Sequence[str] | None = None,
        time_statistic: Literal["mean", "max"] = "mean",
        n_samples: int = 1,
        n_samples_overall: int | None = None,
        batch_size: int | None = None,
        return_mean: bool = True,
        return_numpy: bool | None = None,
        state_weights: Literal["auto", "expected", "sampled"] = "auto",
    ) -> np.ndarray | pd.DataFrame:
        """Gene-wise latent time of each cell (in ``[0, t_max]``).

        Parameters
        ----------
        adata, indices, gene_list, n_samples, batch_size, return_mean, return_numpy
            As in :meth:`get_state_assignment`.
        time_statistic
            ``"mean"``: expected time over the states; ``"max"``: time of the most probable state.
        n_samples_overall
            Draw this many cells (with replacement) instead of using ``indices``.
        state_weights
            As in :meth:`get_state_assignment`.

        Returns
        -------
        Cells x genes DataFrame (``(samples, cells, genes)`` array without ``return_mean``).
        """
        adata, indices, s, u, mask, return_numpy = self._query_setup(
            adata, indices, gene_list, n_samples, return_mean, return_numpy
        )
        indices = self._subsample(indices, n_samples_overall)
        expected = self._expected_states(state_weights, return_mean and time_statistic == "mean")
        values = post.reduce_samples(
            self._chunks(s, u, indices, n_samples, batch_size, expected_states=expected),
            lambda c: post.latent_time(self.module, c, time_statistic),
            len(indices),
            n_samples,
            mask,
            return_mean,
        )
        return self._as_frame(values, adata, indices, mask, return_numpy)

    @torch.inference_mode()
    def get_velocity(
        self: Any,
        adata: AnnData | None = None,
        indices: Sequence[int] | None = None,
        gene_list: Sequence[str] | None = None,
        n_samples: int = 1,
        n_samples_overall: int | None = None,
        batch_size: int | None = None,
        return_mean: bool = True,
        return_numpy: bool | None = None,
        velo_statistic: Literal["mean", "max"] = "mean",
        velo_mode: Literal["spliced", "unspliced"] = "spliced",
        clip: bool = True,
        state_weights: Literal["auto", "expected", "sampled"] = "auto",
    ) -> np.ndarray | pd.DataFrame:
        """Velocity of each cell and gene.

        Parameters
        ----------
        adata, indices, gene_list, n_samples, n_samples_overall, batch_size, return_mean, return_numpy
            As in :meth:`get_latent_time` (``n_samples_overall`` forces ``n_samples=1``).
        velo_statistic
            ``"mean"``: expected velocity over the states; ``"max"``: velocity of the most probable state.
        velo_mode
            ``"spliced"`` for ``ds/dt``, ``"unspliced"`` for ``du/dt``.
        clip
            Clip velocities below ``-s`` (a step of one time unit cannot make ``s`` negative), per
            latent draw.
        state_weights
            As in :meth:`get_state_assignment`.

        Returns
        -------
        Cells x genes DataFrame (``(samples, cells, genes)`` array without ``return_mean``).
        """
        if n_samples_overall is not None:
            n_samples = 1
        if velo_mode not in ("spliced", "unspliced"):
            raise ValueError(f"velo_mode must be 'spliced' or 'unspliced', got {velo_mode!r}.")
        adata, indices, s, u, mask, return_numpy = self._query_setup(
            adata, indices, gene_list, n_samples, return_mean, return_numpy
        )
        indices = self._subsample(indices, n_samples_overall)

        def compute(chunk: post.PosteriorChunk) -> torch.Tensor:
            v = post.velocity(self.module, chunk, velo_statistic, velo_mode)
            if clip:
                v = torch.maximum(v, -chunk.spliced)
            return v

        expected = self._expected_states(state_weights, return_mean and velo_statistic == "mean")
        chunks = self._chunks(s, u, indices, n_samples, batch_size, expected_states=expected)
        values = post.reduce_samples(chunks, compute, len(indices), n_samples, mask, return_mean)
        return self._as_frame(values, adata, indices, mask, return_numpy)

    @torch.inference_mode()
    def get_expression_fit(
        self: Any,
        adata: AnnData | None = None,
        indices: Sequence[int] | None = None,
        gene_list: Sequence[str] | None = None,
        n_samples: int = 1,
        batch_size: int | None = None,
        return_mean: bool = True,
        return_numpy: bool | None = None,
        restrict_to_latent_dim: int | None = None,
        state_weights: Literal["auto", "expected", "sampled"] = "auto",
    ) -> tuple[np.ndarray | pd.DataFrame, np.ndarray | pd.DataFrame]:
        """The fitted spliced and unspliced abundances ``s(t)``, ``u(t)`` (means of the state mixture).

        Parameters
        ----------
        adata, indices, gene_list, n_samples, batch_size, return_mean, return_numpy
            As in :meth:`get_state_assignment`.
        restrict_to_latent_dim
            Decode time from this latent dimension only.
        state_weights
            As in :meth:`get_state_assignment`.

        Returns
        -------
        The spliced and the unspliced fit, each cells x genes.
        """
        adata, indices, s, u, mask, return_numpy = self._query_setup(
            adata, indices, gene_list, n_samples, return_mean, return_numpy
        )
        out_s, out_u = [], []

        def compute(chunk: post.PosteriorChunk) -> torch.Tensor:
            fit_s, fit_u = post.expression_fit(self.module, chunk)
            return torch.stack((fit_s, fit_u), dim=-1)

        expected = self._expected_states(state_weights, return_mean)
        chunks = self._chunks(
            s, u, indices, n_samples, batch_size, latent_dim=restrict_to_latent_dim, expected_states=expected
        )
        both = post.reduce_samples(
            chunks,
            lambda c: compute(c)[..., mask, :],
            len(indices),
            n_samples,
            None,
            return_mean,
        )
        out_s, out_u = both[..., 0], both[..., 1]
        return (
            self._as_frame(out_s, adata, indices, mask, return_numpy),
            self._as_frame(out_u, adata, indices, mask, return_numpy),
        )

    @torch.inference_mode()
    def get_gene_likelihood(
        self: Any,
        adata: AnnData | None = None,
        indices: Sequence[int] | None = None,
        gene_list: Sequence[str] | None = None,
        n_samples: int = 1,
        batch_size: int | None = None,
        return_mean: bool = True,
        return_numpy: bool | None = None,
    ) -> np.ndarray:
        """Log likelihood of each cell's spliced and unspliced abundance per gene (higher is better).

        Parameters
        ----------
        adata, indices, gene_list, n_samples, batch_size, return_mean, return_numpy
            As in :meth:`get_state_assignment`.

        Returns
        -------
        A cells x genes array (``(samples, cells, genes)`` without ``return_mean``).
        """
        adata, indices, s, u, mask, _ = self._query_setup(
            adata, indices, gene_list, n_samples, return_mean, return_numpy
        )
        return post.reduce_samples(
            self._chunks(s, u, indices, n_samples, batch_size),
            lambda c: post.gene_likelihood(self.module, c),
            len(indices),
            n_samples,
            mask,
            return_mean,
        )

    @torch.inference_mode()
    def get_rates(self: Any) -> dict[str, np.ndarray]:
        """The kinetic rates per gene: ``beta``, ``gamma``, ``alpha``, ``alpha_1``, ``lambda_alpha``.

        Returns
        -------
        A dict of arrays, one value per gene.
        """
        gamma, beta, alpha, alpha_1, lambda_alpha = self.module._get_rates()
        as_np = lambda t: t.detach().cpu().numpy()  # noqa: E731
        return {
            "beta": as_np(beta),
            "gamma": as_np(gamma),
            "alpha": as_np(alpha),
            "alpha_1": as_np(alpha_1),
            "lambda_alpha": as_np(lambda_alpha),
        }

    @torch.inference_mode()
    def get_directional_uncertainty(
        self: Any,
        adata: AnnData | None = None,
        n_samples: int = 50,
        gene_list: Iterable[str] | None = None,
        n_jobs: int = -1,
        batch_size: int | None = None,
    ) -> tuple[pd.DataFrame, np.ndarray]:
        """Intrinsic directional uncertainty of each cell's velocity.

        Streams over chunks of cells: the ``samples x cells x genes`` velocity tensor of all cells is
        never held in memory.

        Parameters
        ----------
        adata
            AnnData with the model's genes; by default the one the model was set up with.
        n_samples
            Posterior velocity samples per cell.
        gene_list
            Restrict to these genes.
        n_jobs
            Unused: the computation is vectorised (kept for scvi-tools compatibility).
        batch_size
            Cells per chunk.

        Returns
        -------
        A DataFrame (cells x the five directional statistics) and the ``(cells, samples)`` cosine
        similarities of each sample with the mean velocity.
        """
        gene_list = list(gene_list) if gene_list is not None else None
        adata, indices, s, u, mask, _ = self._query_setup(adata, None, gene_list, n_samples, False, True)
        stats = np.empty((len(indices), len(STATISTICS)))
        cosines = np.empty((len(indices), n_samples))
        for chunk in self._chunks(s, u, indices, n_samples, batch_size):
            v = torch.maximum(post.velocity(self.module, chunk), -chunk.spliced)[..., mask]
            stats[chunk.rows], cosines[chunk.rows] = directional_statistics(v.cpu().numpy())
        return pd.DataFrame(stats, index=adata.obs_names, columns=list(STATISTICS)), cosines

    def get_permutation_scores(
        self: Any, labels_key: str, adata: AnnData | None = None, seed: int | None = None, n_cells: int = 200
    ) -> tuple[pd.DataFrame, AnnData]:
        """How much worse the fit gets when each gene's abundances are permuted within a cell type.

        Parameters
        ----------
        labels_key
            Column of ``adata.obs`` with cell types.
        adata
            AnnData with the model's genes; by default the one the model was set up with.
        seed
            Seed of the permutation (by default drawn from torch's generator).
        n_cells
            Cells per type entering the t-test (scvi-tools uses 200).

        Returns
        -------
        A genes x cell types DataFrame of t statistics (permuted minus observed absolute error)
        and the permuted AnnData.
        """
        if adata is not None:
            check_same_genes(self.adata.var_names, adata)
        adata = self._validate_anndata(adata)
        if labels_key not in adata.obs:
            raise KeyError(f"adata.obs[{labels_key!r}] is missing; pass the obs column with cell types.")
        manager = self.get_anndata_manager(adata, required=True)
        labels = np.asarray(adata.obs[labels_key])
        seed = int(torch.randint(2**31 - 1, (1,)).item()) if seed is None else seed
        rng = np.random.default_rng(seed)
        bdata = adata.copy()
        for key in (REGISTRY_KEYS.X_KEY, REGISTRY_KEYS.U_KEY):
            registry = manager.data_registry[key]
            values = np.array(dense(manager.get_from_registry(key)), dtype=np.float32)
            for label in pd.unique(labels):
                rows = np.flatnonzero(labels == label)
                order = rng.random((rows.size, values.shape[1])).argsort(axis=0)
                values[rows] = np.take_along_axis(values[rows], order, axis=0)
            getattr(bdata, registry.attr_name)[registry.attr_key] = values
        from scvi.data._constants import _SCVI_UUID_KEY

        bdata.uns.pop(_SCVI_UUID_KEY, None)
        self._validate_anndata(bdata)

        def abs_error(data: AnnData) -> np.ndarray:
            m = self.get_anndata_manager(data, required=True)
            fit_s, fit_u = self.get_expression_fit(data, n_samples=10, return_numpy=True)
            obs_s, obs_u = (dense(m.get_from_registry(k)) for k in (REGISTRY_KEYS.X_KEY, REGISTRY_KEYS.U_KEY))
            return np.abs(fit_s - obs_s) + np.abs(fit_u - obs_u)

        error, error_p = abs_error(adata), abs_error(bdata)
        types = np.unique(labels)
        scores = np.zeros((adata.n_vars, types.size))
        for j, label in enumerate(types):
            rows = np.flatnonzero(labels == label)[:n_cells]
            scores[:, j] = ttest_ind(error_p[rows], error[rows], axis=0)[0]
        return pd.DataFrame(scores, index=adata.var_names, columns=types), bdata
