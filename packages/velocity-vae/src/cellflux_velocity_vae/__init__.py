"""VELOVI: RNA velocity by variational inference on scvi-tools base classes.

This package is a skeleton: it registers with cellflux and its functionality lands with its own issue.
"""

from ._version import __version__

__all__ = ["__version__"]
