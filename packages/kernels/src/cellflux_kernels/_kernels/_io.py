"""Reading any kernel written with ``write_to_adata`` (or ``cf.tl.transition_matrix``) back."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._keys import Key

if TYPE_CHECKING:
    from anndata import AnnData

    from ._base import Kernel

__all__ = ["read_kernel"]


def read_kernel(adata: AnnData, key: str = Key.FORWARD, *, copy: bool = False) -> Kernel:
    """Rebuild the kernel stored at ``obsp[key]`` / ``uns[key]``.

    A base kernel comes back as its own class (re-reading its inputs from ``adata``); an expression,
    or a kernel whose inputs are gone, as a :class:`PrecomputedKernel` carrying the stored parameters.

    Parameters
    ----------
    adata
        The annotated data.
    key
        The key the kernel was written to.
    copy
        Copy the matrix.

    Returns
    -------
    The kernel.
    """
    from ._connectivity import ConnectivityKernel
    from ._cytotrace import CytoTRACEKernel
    from ._precomputed import PrecomputedKernel
    from ._pseudotime import PalantirKernel, PseudotimeKernel
    from ._realtime import RealTimeKernel
    from ._velocity import VelocityKernel

    kinds = (VelocityKernel, ConnectivityKernel, PseudotimeKernel, PalantirKernel, CytoTRACEKernel, RealTimeKernel)
    classes = {c.__name__: c for c in kinds}
    if key not in adata.obsp:
        raise KeyError(f"adata.obsp[{key!r}] is missing; write a kernel there with kernel.write_to_adata(key={key!r}).")
    name = adata.uns.get(key, {}).get(Key.KERNEL)
    if name in classes and Key.INIT in adata.uns[key]:
        try:
            return classes[name].from_adata(adata, key, copy=copy)
        except KeyError:
            pass
    return PrecomputedKernel.from_adata(adata, key, copy=copy)
