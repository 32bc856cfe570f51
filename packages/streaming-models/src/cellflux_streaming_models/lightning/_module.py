"""The Lightning module: transforms, a streaming model and an optimiser, DDP-safe buffers."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn

from .._keys import BatchKey
from ..models import StreamingModel
from ..transforms import apply_transforms, augmenting, call_with_batch

__all__ = ["StreamingModule"]


class StreamingModule(pl.LightningModule):
    """Bind transforms, a :class:`~cellflux_streaming_models.models.StreamingModel` and an optimiser.

    Works with Lightning's plain ``strategy="ddp"``: the model's buffers (its per-process streaming
    state) are excluded from DDP's buffer broadcast, and the model reduces them itself at the end
    of each epoch.

    Parameters
    ----------
    model
        The streaming model.
    transforms
        Modules applied to each batch in order (e.g. ``NormalizeTotal``, ``Log1p``).
    optim_fn
        Optimiser class for trainable models (e.g. :class:`torch.optim.Adam`); by default the
        model's ``default_optimizer`` for the data module's batch size.
    optim_kwargs
        Its keyword arguments.
    validation
        Define Lightning's ``validation_step``: score the data module's validation batches (its
        ``val_paths``) with the model's ``validate`` (e.g. scVI's metrics), or with the scalar outputs
        of a trainable model's ``forward`` (logged as ``val_loss``, ``val_accuracy``, ...), and log the
        model's epoch metrics (``on_validation_epoch_end``). ``cellflux stream`` sets it when
        ``data.val_paths`` is given. Lightning validates at the end of a training epoch before
        ``on_train_epoch_end``: models that average their weights there (``average=True``) are
        validated with the epoch's last weights, not the average.
    """

    def __init__(
        self,
        model: StreamingModel,
        transforms: Iterable[nn.Module] | None = None,
        optim_fn: Callable[..., torch.optim.Optimizer] | None = None,
        optim_kwargs: dict[str, Any] | None = None,
        validation: bool = False,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.model = model
        self.transforms = nn.ModuleList(list(transforms or []))
        self.optim_fn = optim_fn
        self.optim_kwargs = dict(optim_kwargs or {})
        if model.trainable and optim_fn is None and type(model).default_optimizer is StreamingModel.default_optimizer:
            raise ValueError(f"{type(model).__name__} is trainable; pass optim_fn (e.g. torch.optim.Adam).")
        if validation:  # Lightning runs (and asks for) validation data only with a validation_step
            self.validation_step = self._validation_step
        # Per-process state must not be overwritten by DDP's broadcast from rank 0.
        self._ddp_params_and_buffers_to_ignore = [f"model.{name}" for name, _ in model.named_buffers()] + [
            f"transforms.{name}" for name, _ in self.transforms.named_buffers()
        ]

    def forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Apply the transforms and the model to a batch."""
        return call_with_batch(self.model, apply_transforms(self.transforms, batch))

    def configure_optimizers(self) -> Any:
        if self.optim_fn is None:
            if not self.model.trainable:
                return []
            batch_size = getattr(getattr(self.trainer, "datamodule", None), "batch_size", 1000)
            return self.model.default_optimizer(int(batch_size))
        return self.optim_fn(self.model.parameters(), **self.optim_kwargs)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        if self.model.trainable:
            optimizer = self.optimizers()
            optimizer.zero_grad()
            out = self(batch)
            loss = out["loss"]
            self.manual_backward(loss)
            optimizer.step()
            n = batch[BatchKey.X_NG].shape[0]
            self.log("train_loss", loss.detach(), prog_bar=True, batch_size=n)
            for key, value in out.items():
                if key != "loss" and isinstance(value, torch.Tensor) and value.ndim == 0:
                    self.log(f"train_{key}", value.detach(), batch_size=n)
        else:
            with torch.no_grad():
                self(batch)
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and hasattr(datamodule, "batches_consumed"):
            datamodule.batches_consumed = batch_idx + 1

    def _validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Score a validation batch with the model's ``validate``, or with a trainable model's ``forward``.

        Per-batch values are logged as epoch means (weighted by the batch sizes); ``forward``'s scalar
        outputs as ``val_<key>`` (``val_loss``, ...), not in Lightning's sanity check. ``Duplicate``
        and the augmentations act as in training (:func:`~cellflux_streaming_models.transforms.augmenting`):
        a contrastive model's ``val_loss`` is its two-view loss.
        """
        n = batch[BatchKey.X_NG].shape[0]
        with augmenting(self.transforms):
            batch = apply_transforms(self.transforms, batch)
        if hasattr(self.model, "validate"):
            values = call_with_batch(self.model.validate, batch)
        elif self.model.trainable and not self.trainer.sanity_checking:  # a model may start from its first batch
            out = call_with_batch(self.model, batch)
            values = {f"val_{k}": v for k, v in out.items() if isinstance(v, torch.Tensor) and v.ndim == 0}
        else:
            return
        for key, value in values.items():
            self.log(key, value.detach(), on_step=False, on_epoch=True, sync_dist=True, batch_size=n)

    def on_validation_epoch_start(self) -> None:
        self.model.on_validation_epoch_start()

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        for key, value in self.model.on_validation_epoch_end().items():
            # every process computed the same value from the merged sums: the synced mean is that value
            self.log(key, float(value), sync_dist=True)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        if not hasattr(self.model, "predict"):
            raise TypeError(f"{type(self.model).__name__} has no predict.")
        out = call_with_batch(self.model.predict, apply_transforms(self.transforms, batch))
        for key in (BatchKey.CELL_INDEX_N, BatchKey.SHARD_INDEX_N, BatchKey.OBS_NAMES_N):
            if key in batch:
                out[key.value] = batch[key]
        return out

    # epoch hooks ---------------------------------------------------------------------------------
    def on_train_start(self) -> None:
        epochs = self.model.n_epochs
        if epochs is not None and self.trainer.max_epochs is not None and self.trainer.max_epochs != epochs:
            raise ValueError(f"{type(self.model).__name__} needs max_epochs={epochs}, got {self.trainer.max_epochs}.")
        self.model.on_train_start()

    def on_train_epoch_start(self) -> None:
        epoch = self.current_epoch
        loader = self.trainer.train_dataloader
        dataset = getattr(loader, "dataset", None)
        if hasattr(dataset, "set_epoch") and getattr(dataset, "epoch", None) != epoch:
            dataset.set_epoch(epoch)
        self.model.on_train_epoch_start(epoch)

    def on_train_epoch_end(self) -> None:
        self.model.on_train_epoch_end(self.current_epoch)
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and hasattr(datamodule, "batches_consumed"):
            datamodule.batches_consumed = 0

    def on_train_end(self) -> None:
        self.model.on_train_end()
