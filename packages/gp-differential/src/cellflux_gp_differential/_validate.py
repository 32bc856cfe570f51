"""Input checks shared by the model classes: clear errors that name the argument and the fix."""

from __future__ import annotations

import logging

import numpy as np
from scipy import sparse

__all__ = [
    "MIN_CELLS",
    "check_cells",
    "check_expression",
    "check_landmarks",
    "check_n_landmarks",
    "check_groups",
    "replicate_samples",
]

logger = logging.getLogger(__name__)

#: Fewest cells a condition (or sample) needs for a GP fit.
MIN_CELLS = 10


def check_cells(x, name: str, *, n_features: int | None = None, min_cells: int = MIN_CELLS) -> np.ndarray:
    """``x`` as a finite float64 ``(n_cells, n_features)`` array with at least ``min_cells`` rows."""
    if sparse.issparse(x):
        raise TypeError(
            f"{name} must be a dense cell-state representation (e.g. PCA or diffusion components), not sparse."
        )
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name} must be two-dimensional (cells x features), got shape {x.shape}.")
    if n_features is not None and x.shape[1] != n_features:
        raise ValueError(
            f"{name} has {x.shape[1]} features but the other inputs have {n_features}; use the same representation."
        )
    if x.shape[0] < min_cells:
        raise ValueError(f"{name} has {x.shape[0]} cells; at least {min_cells} are needed for a GP fit.")
    if not np.all(np.isfinite(x)):
        bad = int(np.sum(~np.isfinite(x).all(axis=1)))
        raise ValueError(f"{name} contains NaN or inf in {bad} cells; remove or impute them first.")
    return np.ascontiguousarray(x)


def check_expression(y, name: str, n_cells: int):
    """``y`` (dense or sparse) with ``n_cells`` rows and finite values; dense inputs become float64."""
    if sparse.issparse(y):
        y = sparse.csr_matrix(y, dtype=np.float64)
        values = y.data
    else:
        y = np.asarray(y, dtype=np.float64)
        if y.ndim == 1:
            y = y[:, None]
        values = y
    if y.ndim != 2 or y.shape[0] != n_cells:
        raise ValueError(f"{name} has shape {y.shape}; expected {n_cells} rows (one per cell).")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} contains NaN or inf; clean the expression matrix first.")
    return y


def check_positive(value, name: str) -> float | None:
    """``value`` as a float if it is a finite positive number (``None`` passes through), else a ``ValueError``.

    A zero, negative or NaN length scale or noise would otherwise run to the end and return NaN everywhere.
    """
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number, got {value!r}.") from None
    if isinstance(value, bool) or not np.isfinite(number) or number <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}.")
    return number


def check_n_landmarks(n_landmarks: int | None, n_cells: int | None, name: str = "n_landmarks") -> None:
    """Refuse more landmarks than cells (unless ``n_cells`` is None), or fewer than two.

    ``name``: the argument named in the error.
    """
    if n_landmarks is None:
        return
    if isinstance(n_landmarks, bool) or not isinstance(n_landmarks, (int, np.integer)) or n_landmarks < 2:
        raise ValueError(f"{name} must be an integer >= 2 or None, got {n_landmarks!r}.")
    if n_cells is not None and n_landmarks > n_cells:
        raise ValueError(f"{name}={n_landmarks} is larger than the {n_cells} cells; pass {name} <= {n_cells} or None.")


def check_landmarks(landmarks, n_features: int) -> np.ndarray:
    """Landmarks as a finite float64 ``(m, n_features)`` array."""
    u = np.asarray(landmarks, dtype=np.float64)
    if u.ndim != 2 or u.shape[1] != n_features or u.shape[0] < 2:
        raise ValueError(f"landmarks must have shape (m >= 2, {n_features}), got {u.shape}.")
    if not np.all(np.isfinite(u)):
        raise ValueError("landmarks contain NaN or inf.")
    return u


def replicate_samples(groups: np.ndarray, min_cells: int) -> list:
    """The sample labels with at least ``min_cells`` cells (others skipped with a warning); at least two.

    Raises
    ------
    ValueError
        Fewer than two such samples.
    """
    labels, counts = np.unique(groups, return_counts=True)
    for g, c in zip(labels, counts, strict=True):
        if c < min_cells:
            logger.warning("Skipping sample %r: %d cells < %d.", g, c, min_cells)
    valid = [g for g, c in zip(labels, counts, strict=True) if c >= min_cells]
    if len(valid) < 2:
        raise ValueError(
            f"Sample variance needs at least 2 samples with >= {min_cells} cells, found {len(valid)} "
            f"({dict(zip(labels.tolist(), counts.tolist(), strict=True))}); pass sample labels with replicates "
            "or drop the sample key."
        )
    return valid


def check_groups(groups, n_cells: int, name: str) -> np.ndarray:
    """Sample labels as a length-``n_cells`` array."""
    g = np.asarray(groups)
    if g.ndim != 1 or g.shape[0] != n_cells:
        raise ValueError(f"{name} must have one label per cell ({n_cells}), got shape {g.shape}.")
    return g
