"""Cell-to-cell transition matrices (velocity, connectivity, pseudotime, CytoTRACE, real-time, precomputed) and their algebra.

This package is a skeleton: it registers with cellflux and its functionality lands with its own issue.
"""

from ._version import __version__

__all__ = ["__version__"]
