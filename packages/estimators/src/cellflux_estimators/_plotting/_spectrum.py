"""The spectrum: eigenvalues in the complex plane or their real parts with the eigengap."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from .._engine._eigen import eigengap
from ._source import eigenvalues, finish, source

__all__ = ["spectrum"]


def spectrum(
    adata: Any,
    *,
    key: str = "macrostates_fwd",
    n: int | None = None,
    real_only: bool | None = None,
    show_eigengap: bool = True,
    alpha: float = 1.0,
    figsize: tuple[float, float] = (5, 4),
    save: str | Path | None = None,
) -> plt.Figure:
    """Plot the top eigenvalues of the transition matrix.

    Parameters
    ----------
    adata
        AnnData with eigenvalues from ``cf.tl.macrostates`` (``uns[key]``) or an estimator (its own eigenvalues
        are plotted, whatever ``key``).
    key
        Where the eigenvalues are: ``uns[key]``, else the estimator written with ``to_adata`` in the direction
        the key's suffix names (``uns["estimator_fwd"]`` for ``_fwd``, ``uns["estimator_bwd"]`` for ``_bwd``).
    n
        Number of eigenvalues (all by default).
    real_only
        Plot the real parts against their index (default when all are real); else the complex plane.
    show_eigengap
        Mark the eigengap (real plot).
    alpha
        Eigengap weight.
    figsize
        Figure size.
    save
        Path to save the figure to.

    Returns
    -------
    The matplotlib figure.
    """
    ad, own = source(adata)
    ev = eigenvalues(ad, key, own)
    ev = ev[: n or len(ev)]
    if real_only is None:
        real_only = bool(np.all(np.abs(ev.imag) < 1e-12))
    fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    if real_only:
        ax.scatter(np.arange(len(ev)), ev.real, color="black", s=20)
        if show_eigengap and len(ev) > 1:
            gap = eigengap(ev, alpha)
            ax.axvline(gap + 0.5, ls="--", color="tab:red", label=f"eigengap: {gap + 1} states")
            ax.legend(loc="lower left")
        ax.set(xlabel="index", ylabel="Re(λ)", title="real spectrum")
    else:
        theta = np.linspace(0, 2 * np.pi, 200)
        ax.plot(np.cos(theta), np.sin(theta), color="lightgray", lw=1)
        ax.scatter(ev.real, ev.imag, c=np.arange(len(ev)), cmap="viridis", s=25)
        ax.set(xlabel="Re(λ)", ylabel="Im(λ)", title="spectrum", aspect="equal")
    return finish(fig, save)
