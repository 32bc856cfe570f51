"""Cells of one block: attribute draws, counts and true velocities, sparse rows and ``obs``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse

from cellflux._keys import TruthKey

from .._kinetics import sample_negative_binomial, solve
from ._constants import BLOCK_SIZE, PROGENITOR, STREAM_CELLS, STREAM_COUNTS, generator
from ._model import Model

__all__ = [
    "CELL_FIELDS",
    "BlockResult",
    "Cells",
    "SparseRows",
    "build_obs",
    "concat_rows",
    "csr",
    "draw_cells",
    "simulate_block",
    "sparse_rows",
]

_DA_TOL = 1e-8
_SIZE_LOG_SD = 0.3
# cells x genes per kinetics/sampling batch (keeps the temporaries in cache)
_BATCH_ELEMENTS = 1 << 16
#: Fields of :class:`Cells`, in order.
CELL_FIELDS = ("time", "sample", "lineage", "cc_phase", "size")


@dataclass(frozen=True)
class Cells:
    """Per-cell draws of a block (or of a chunk once concatenated)."""

    time: np.ndarray
    sample: np.ndarray
    lineage: np.ndarray
    cc_phase: np.ndarray
    size: np.ndarray


def draw_cells(model: Model, block: int) -> Cells:
    """Draw the attributes of all :data:`BLOCK_SIZE` cells of a block.

    Parameters
    ----------
    model
        The model.
    block
        Block index.

    Returns
    -------
    Cells
        Time ``~ U(0, 1)``, sample (uniform), lineage (from the sample's weights), cell-cycle phase
        ``~ U(0, 2 pi)`` and size factor ``exp(N(shift_sample, 0.3**2))``.
    """
    rng = generator(model.config.seed, STREAM_CELLS, block)
    n = BLOCK_SIZE
    time = rng.random(n)
    sample = rng.integers(0, len(model.sample_names), n)
    fate_u = rng.random(n)
    cc_phase = rng.uniform(0.0, 2.0 * np.pi, n)
    log_size = rng.normal(0.0, _SIZE_LOG_SD, n)
    cumulative = np.cumsum(model.sample_weights, axis=1)[:, :-1]
    lineage = (fate_u[:, None] >= cumulative[sample]).sum(axis=1)
    size = np.exp(log_size + model.sample_log_size[sample])
    return Cells(time=time, sample=sample, lineage=lineage, cc_phase=cc_phase, size=size)


@dataclass(frozen=True)
class SparseRows:
    """Consecutive rows of a CSR matrix: values, column indices and the number of values per row."""

    data: np.ndarray  # int32
    indices: np.ndarray  # int32
    row_nnz: np.ndarray  # int64


def sparse_rows(counts: np.ndarray) -> SparseRows:
    """Sparsify dense integer counts row by row.

    Parameters
    ----------
    counts
        ``(m, n_genes)`` integer counts.

    Returns
    -------
    SparseRows
        The non-zero values in row-major order.
    """
    rows, cols = np.nonzero(counts)
    return SparseRows(
        data=counts[rows, cols].astype(np.int32, copy=False),
        indices=cols.astype(np.int32),
        row_nnz=np.bincount(rows, minlength=counts.shape[0]),
    )


def concat_rows(parts: list[SparseRows]) -> SparseRows:
    """Concatenate consecutive row groups.

    Parameters
    ----------
    parts
        Row groups in order.

    Returns
    -------
    SparseRows
        All rows.
    """
    return SparseRows(
        data=np.concatenate([p.data for p in parts]),
        indices=np.concatenate([p.indices for p in parts]),
        row_nnz=np.concatenate([p.row_nnz for p in parts]),
    )


@dataclass(frozen=True)
class BlockResult:
    """Simulated rows of one block (the velocities, if kept, are written to the caller's arrays)."""

    cells: Cells
    spliced: SparseRows
    unspliced: SparseRows


def simulate_block(
    model: Model, block: int, lo: int, hi: int, velocity: np.ndarray | None, velocity_u: np.ndarray | None
) -> BlockResult:
    """Simulate rows ``lo:hi`` of a block.

    The rows are processed in cache-sized batches; the count streams are consumed row by row from the
    first row of the block, so rows ``< lo`` are simulated and dropped and the result for a row does
    not depend on ``lo`` or ``hi``.

    Parameters
    ----------
    model
        The model.
    block
        Block index.
    lo, hi
        Row range inside the block.
    velocity, velocity_u
        ``(hi - lo, n_genes)`` float32 outputs for the true spliced and unspliced velocities, or
        ``None`` not to store them (the counts and every random draw are the same either way).

    Returns
    -------
    BlockResult
        Cells and counts of rows ``lo:hi``.
    """
    config, genes = model.config, model.genes
    drawn = draw_cells(model, block)
    cells = Cells(**{k: getattr(drawn, k)[lo:hi] for k in CELL_FIELDS})
    path = model.sample_condition[drawn.sample[:hi]] * config.n_lineages + drawn.lineage[:hi]
    scale_u = genes.scale * config.unspliced_ratio
    (cc,) = np.nonzero(genes.cell_cycle)
    streams = [generator(config.seed, STREAM_COUNTS, block, j) for j in range(4)]
    step = max(1, _BATCH_ELEMENTS // config.n_genes)
    spliced, unspliced = [], []
    for r0 in range(0, hi, step):
        r1 = min(r0 + step, hi)
        state = solve(model.schedule, path[r0:r1], drawn.time[r0:r1])
        mu_s, mu_u = state.s, state.u
        mu_s *= genes.scale
        mu_s *= drawn.size[r0:r1, None]
        mu_u *= scale_u
        mu_u *= drawn.size[r0:r1, None]
        if cc.size:
            factor = np.exp(genes.cc_amplitude[cc] * np.sin(drawn.cc_phase[r0:r1, None] - genes.cc_phase[cc]))
            mu_s[:, cc] *= factor
            mu_u[:, cc] *= factor
        counts_s = sample_negative_binomial(mu_s, genes.theta, streams[0], streams[1])
        counts_u = sample_negative_binomial(mu_u, genes.theta, streams[2], streams[3])
        if r1 <= lo:
            continue
        keep, out = slice(max(lo - r0, 0), r1 - r0), slice(max(r0, lo) - lo, r1 - lo)
        spliced.append(sparse_rows(counts_s[keep]))
        unspliced.append(sparse_rows(counts_u[keep]))
        if velocity is not None and velocity_u is not None:
            np.multiply(state.velocity_s[keep], genes.scale, out=velocity[out], casting="same_kind")
            np.multiply(state.velocity_u[keep], scale_u, out=velocity_u[out], casting="same_kind")
    return BlockResult(cells, concat_rows(spliced), concat_rows(unspliced))


def csr(rows: SparseRows, n_genes: int, dtype: type = np.int32, *, copy: bool = True) -> sparse.csr_matrix:
    """Build a CSR matrix from row-major sparse rows.

    Parameters
    ----------
    rows
        The rows.
    n_genes
        Number of columns.
    dtype
        Value dtype.
    copy
        Copy the values and indices even when their dtypes already match (``False`` shares them with
        ``rows``).

    Returns
    -------
    scipy.sparse.csr_matrix
        With sorted indices; int32 indices unless the number of values needs int64.
    """
    indptr = np.zeros(rows.row_nnz.size + 1, dtype=np.int64)
    np.cumsum(rows.row_nnz, out=indptr[1:])
    index_dtype = np.int32 if indptr[-1] < np.iinfo(np.int32).max else np.int64
    matrix = sparse.csr_matrix(
        (
            rows.data.astype(dtype, copy=copy),
            rows.indices.astype(index_dtype, copy=copy),
            indptr.astype(index_dtype, copy=False),
        ),
        shape=(rows.row_nnz.size, n_genes),
    )
    matrix.has_sorted_indices = True
    return matrix


def build_obs(model: Model, cells: Cells, start: int) -> tuple[pd.DataFrame, np.ndarray]:
    """The cell annotation and fate probabilities of a chunk.

    Parameters
    ----------
    model
        The model.
    cells
        The chunk's cells.
    start
        Global index of the chunk's first cell.

    Returns
    -------
    obs, fate_probabilities
        The obs DataFrame and the ``(n, n_lineages)`` float64 fate probabilities.
    """
    config = model.config
    n, n_lineages = cells.time.size, config.n_lineages
    lineages = list(config.lineage_names)
    branch = cells.time >= config.t_branch
    condition = model.sample_condition[cells.sample]

    state = np.where(branch, cells.lineage + 1, 0)
    late = np.where(branch, cells.time >= 0.5 * (1.0 + config.t_branch), cells.time >= 0.5 * config.t_branch)
    clusters = state * 2 + late
    cluster_names = [f"{s}_{stage}" for s in [PROGENITOR, *lineages] for stage in ("early", "late")]

    fate = model.condition_weights[condition].copy()
    fate[branch] = np.eye(n_lineages)[cells.lineage[branch]]
    da_lfc = np.where(branch, model.da_log_fold_change[cells.lineage], 0.0)
    de_region = (cells.lineage == config.de_lineage) & (cells.time >= config.de_time_start) & (model.de_genes.size > 0)

    width = max(7, len(str(config.n_cells - 1)))
    names = np.char.add("cell_", np.char.zfill(np.arange(start, start + n).astype(str), width)).astype(object)
    obs = pd.DataFrame(
        {
            TruthKey.TIME: cells.time,
            TruthKey.LINEAGE: pd.Categorical.from_codes(cells.lineage, categories=lineages),
            TruthKey.STATE: pd.Categorical.from_codes(state, categories=[PROGENITOR, *lineages]),
            TruthKey.CLUSTERS: pd.Categorical.from_codes(clusters, categories=cluster_names),
            TruthKey.TERMINAL: branch & (cells.time >= config.terminal_time),
            TruthKey.INITIAL: cells.time <= config.initial_time,
            TruthKey.CONDITION: pd.Categorical.from_codes(condition, categories=list(config.condition_names)),
            TruthKey.SAMPLE: pd.Categorical.from_codes(cells.sample, categories=list(model.sample_names)),
            TruthKey.CELL_CYCLE_PHASE: cells.cc_phase if config.cell_cycle else np.full(n, np.nan),
            TruthKey.SIZE_FACTOR: cells.size,
            TruthKey.DA_LOG_FOLD_CHANGE: da_lfc,
            TruthKey.DA: np.abs(da_lfc) > _DA_TOL,
            TruthKey.DE_REGION: de_region,
        },
        index=pd.Index(names),
    )
    return obs, fate
