"""Registry keys of the VELOVI data fields (scvi-tools' ``REGISTRY_KEYS`` pattern)."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["REGISTRY_KEYS", "STATES"]


class _RegistryKeys(NamedTuple):
    X_KEY: str = "X"
    U_KEY: str = "U"


#: Names under which :meth:`VELOVI.setup_anndata` registers the spliced and unspliced layers.
REGISTRY_KEYS = _RegistryKeys()

#: The four kinetic states of the mixture, in the order of the last axis of ``px_pi``.
STATES = ("induction", "induction_steady", "repression", "repression_steady")
