"""Streaming a model over batches without Lightning (one process): the engine the AnnData layer uses."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from .models import StreamingModel
from .transforms import apply_transforms, call_with_batch

__all__ = ["stream_fit"]


def stream_fit(
    model: StreamingModel,
    batches: Callable[[int], Iterable[dict[str, Any]]],
    *,
    transforms: Sequence[nn.Module] = (),
    n_epochs: int | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    show_progress: bool = False,
) -> StreamingModel:
    """Train ``model`` by streaming batches through it, calling its epoch hooks.

    Parameters
    ----------
    model
        A streaming model.
    batches
        ``batches(epoch)`` returns the epoch's batches (dicts with ``x_ng``, ``var_names_g``, ...).
    transforms
        Applied to each batch before the model.
    n_epochs
        Epochs; by default the model's ``n_epochs``.
    optimizer
        For trainable models: stepped on the loss each batch returns (default: the model's
        ``default_optimizer`` for the first batch's size).
    show_progress
        Show a progress bar per epoch.

    Returns
    -------
    The trained model.
    """
    n_epochs = n_epochs or model.n_epochs or 1
    model.on_train_start()
    for epoch in range(n_epochs):
        model.on_train_epoch_start(epoch)
        for batch in tqdm(batches(epoch), disable=not show_progress, desc=f"epoch {epoch}", unit="batch"):
            batch = apply_transforms(transforms, batch)
            if model.trainable:
                if optimizer is None:
                    optimizer = model.default_optimizer(int(batch["x_ng"].shape[0]))
                    if optimizer is None:
                        raise ValueError(f"{type(model).__name__} is trainable; pass an optimizer.")
                optimizer.zero_grad()
                loss = call_with_batch(model, batch)["loss"]
                loss.backward()
                optimizer.step()
            else:
                with torch.no_grad():
                    call_with_batch(model, batch)
        model.on_train_epoch_end(epoch)
    model.on_train_end()
    return model
