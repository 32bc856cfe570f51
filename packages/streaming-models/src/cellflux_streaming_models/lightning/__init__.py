"""PyTorch Lightning: the module, the data module and the ``cellflux stream`` command line."""

from ._datamodule import StreamDataModule
from ._module import StreamingModule

__all__ = ["StreamDataModule", "StreamingModule"]
