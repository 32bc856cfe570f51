"""Tail averaging of a model's parameters (Polyak-Ruppert) over the second half of each epoch."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["TailAverage"]


class TailAverage:
    """Average a module's parameters over the iterates of an epoch's second half, then install the average.

    Call :meth:`start_epoch` at the epoch's start, :meth:`observe` before each batch's step (with the
    number of cells the step will use, summed over processes) and :meth:`finish_epoch` at its end.
    The average is transient (not part of the state dict): a run resumed mid-epoch restarts it.

    Parameters
    ----------
    n_obs
        Cells per epoch: averaging starts after ``n_obs / 2``.
    """

    def __init__(self, n_obs: int) -> None:
        self.n_obs = n_obs
        self.seen = 0
        self.count = 0
        self.sums: dict[str, torch.Tensor] = {}

    def start_epoch(self) -> None:
        """Forget the previous epoch's average."""
        self.seen, self.count, self.sums = 0, 0, {}

    def _add(self, module: nn.Module) -> None:
        self.count += 1
        with torch.no_grad():
            for name, param in module.named_parameters():
                if name in self.sums:
                    self.sums[name].lerp_(param.detach(), 1.0 / self.count)
                else:
                    self.sums[name] = param.detach().clone()

    def observe(self, module: nn.Module, n_cells: int) -> None:
        """Add the current parameters (the previous step's result) once past half the epoch."""
        if self.seen >= self.n_obs / 2:
            self._add(module)
        self.seen += n_cells

    def finish_epoch(self, module: nn.Module) -> None:
        """Add the final parameters and replace the parameters by the average."""
        self._add(module)
        with torch.no_grad():
            for name, param in module.named_parameters():
                param.copy_(self.sums[name])
        self.start_epoch()
