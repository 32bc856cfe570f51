"""The base class of streaming models: state in buffers, reductions in epoch-end hooks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["StreamingModel", "check_var_names"]


def check_var_names(model_var_names: np.ndarray, var_names_g: np.ndarray | Sequence[str], n_columns: int) -> None:
    """Refuse a batch whose genes differ from the model's (naming the first mismatch)."""
    var_names_g = np.asarray(var_names_g, dtype=object)
    if len(var_names_g) != n_columns:
        raise ValueError(f"x_ng has {n_columns} columns but var_names_g has {len(var_names_g)} names.")
    if var_names_g is model_var_names:
        return
    if len(var_names_g) != len(model_var_names) or not np.array_equal(var_names_g, model_var_names):
        common = min(len(var_names_g), len(model_var_names))
        diff = np.flatnonzero(var_names_g[:common] != model_var_names[:common])
        where = (
            f"first mismatch at {int(diff[0])}: {var_names_g[diff[0]]!r} vs {model_var_names[diff[0]]!r}"
            if len(diff)
            else ""
        )
        raise ValueError(
            f"The batch's genes ({len(var_names_g)}) differ from the model's ({len(model_var_names)}) {where}."
        )


class StreamingModel(nn.Module):
    """A model trained by streaming batches through ``forward``.

    Streaming state lives in buffers, which every process accumulates on its own; the
    :class:`~cellflux_streaming_models.StreamingModule` asks Lightning's DDP not to broadcast them
    (so the plain ``strategy="ddp"`` works) and the model reduces them across processes in
    :meth:`on_train_epoch_end`.

    Attributes
    ----------
    n_epochs
        Epochs the model needs (``None``: as many as the trainer runs).
    trainable
        Whether ``forward`` returns a loss for an optimiser.
    """

    n_epochs: int | None = 1
    trainable: bool = False

    def __init__(self, var_names_g: Sequence[str]) -> None:
        super().__init__()
        self.var_names_g = np.asarray(var_names_g, dtype=object)
        if self.var_names_g.ndim != 1 or len(self.var_names_g) == 0:
            raise ValueError("var_names_g must be a non-empty list of gene names.")
        self.n_vars = len(self.var_names_g)
        self.current_epoch = 0
        if not self.trainable:
            # DDP refuses a module without trainable parameters; this one is never used.
            self._dummy_param = nn.Parameter(torch.zeros(()))

    def check_batch(self, x_ng: torch.Tensor, var_names_g: np.ndarray) -> None:
        """Refuse a batch with other genes than the model's."""
        check_var_names(self.var_names_g, var_names_g, x_ng.shape[1])

    def default_optimizer(self, batch_size: int) -> torch.optim.Optimizer | None:
        """The optimiser used when none is given (``None``: the user must give one)."""
        return None

    # hooks called by the Lightning module (and by the in-memory drivers) -------------------------
    def on_train_start(self) -> None:
        """Called once before the first epoch."""

    def on_train_epoch_start(self, epoch: int) -> None:
        """Called before each epoch."""
        self.current_epoch = epoch

    def on_train_epoch_end(self, epoch: int) -> None:
        """Called after each epoch: reduce the state across processes here."""

    def on_train_end(self) -> None:
        """Called once after training."""

    def on_validation_epoch_start(self) -> None:
        """Called before each validation epoch (models with a ``validate`` method reset their sums here)."""

    def on_validation_epoch_end(self) -> dict[str, float]:
        """Called after each validation epoch on every process: reduce across processes, return metrics to log."""
        return {}

    def get_extra_state(self) -> Any:
        return {"current_epoch": self.current_epoch}

    def set_extra_state(self, state: Any) -> None:
        self.current_epoch = int(state.get("current_epoch", 0))
