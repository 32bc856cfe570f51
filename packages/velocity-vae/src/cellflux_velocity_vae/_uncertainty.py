"""Directional (intrinsic) uncertainty of velocity from posterior samples (engine, vectorised).

For each cell, every posterior velocity sample is compared with the cell's mean velocity by the
cosine similarity of the gene-centred vectors; the spread of these similarities (and of the
angles) over samples is the cell's directional uncertainty (veloVI's intrinsic uncertainty).
"""

from __future__ import annotations

import numpy as np

__all__ = ["STATISTICS", "directional_statistics"]

#: The columns returned by :func:`directional_statistics`, in order.
STATISTICS = (
    "directional_variance",
    "directional_difference",
    "directional_cosine_sim_variance",
    "directional_cosine_sim_difference",
    "directional_cosine_sim_mean",
)


def _centered_unit(v: np.ndarray) -> np.ndarray:
    v = v - v.mean(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return v / np.linalg.norm(v, axis=-1, keepdims=True)


def directional_statistics(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Directional statistics of velocity samples.

    Parameters
    ----------
    samples
        Velocity samples, ``(n_samples, n_cells, n_genes)``.

    Returns
    -------
    A ``(n_cells, 5)`` array with the columns of :data:`STATISTICS` and the ``(n_cells, n_samples)``
    cosine similarities of each sample with the cell's mean velocity.
    """
    samples = np.asarray(samples, dtype=np.float64)
    mean = _centered_unit(samples.mean(axis=0))
    cos = np.clip(np.einsum("scg,cg->sc", _centered_unit(samples), mean), -1.0, 1.0).T
    with np.errstate(invalid="ignore"):
        angles = np.arccos(cos)
    cos_lo, cos_hi = np.percentile(cos, [5, 95], axis=1)
    ang_lo, ang_hi = np.percentile(angles, [5, 95], axis=1)
    stats = np.column_stack([angles.var(axis=1), ang_hi - ang_lo, cos.var(axis=1), cos_hi - cos_lo, cos.mean(axis=1)])
    return stats, cos
