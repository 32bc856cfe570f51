"""Out-of-core models over collections of h5ad shards, trained with PyTorch Lightning and DDP.

This package is a skeleton: it registers with cellflux and its functionality lands with its own issue.
"""

from ._version import __version__

__all__ = ["__version__"]
