"""A plot function without a plotting library: a text histogram."""

from __future__ import annotations

import numpy as np


def dummy_score(adata, *, key="dummy_score", bins=10, width=40):
    """Draw a text histogram of ``obs[key]``.

    Parameters
    ----------
    adata
        Annotated data with ``obs[key]`` from ``cf.tl.dummy_score``.
    key
        The score to show.
    bins
        Number of bins.
    width
        Width of the longest bar in characters.

    Returns
    -------
    The histogram as text.
    """
    if key not in adata.obs:
        raise KeyError(f"obs[{key!r}] is missing; run cf.tl.dummy_score first.")
    counts, edges = np.histogram(adata.obs[key].to_numpy(), bins=bins)
    scale = width / max(counts.max(), 1)
    return "\n".join(f"{lo:10.1f} {'#' * round(c * scale)}" for lo, c in zip(edges[:-1], counts, strict=True))
