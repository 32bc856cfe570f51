"""GPCCA and CFLARE estimators: Schur/eigen decompositions, macrostates, terminal and initial states, fate probabilities, absorption times, lineage drivers and gene trends.

This package is a skeleton: it registers with cellflux and its functionality lands with its own issue.
"""

from ._version import __version__

__all__ = ["__version__"]
