"""``cellflux stream fit|predict --config CONFIG.yaml``: a jsonargparse command line over Lightning.

A configuration has four sections::

    data:                       # StreamDataModule arguments
      paths: shards/*.h5ad
      batch_size: 1000
      val_paths: null           # validation shards (logged metrics: val_loss, model-specific ones)
    model:                      # a streaming model; var_names_g (n_obs, y_categories) come from the data
      class_path: cellflux_streaming_models.models.IncrementalPCA
      init_args: {n_components: 50}
    transforms:                 # optional modules applied to each batch
      - class_path: cellflux_streaming_models.transforms.NormalizeTotal
      - class_path: cellflux_streaming_models.transforms.Log1p
      # - class_path: cellflux_streaming_models.transforms.ZScore.from_csv  # a class method works too
      #   init_args: {path: stats.csv}   # what OnePassMeanVarStd(output_path=stats.csv) wrote
    trainer:                    # lightning.pytorch.Trainer arguments
      max_epochs: 1
      default_root_dir: run/
    ckpt_path: null             # resume from a checkpoint (fit) or load it (predict)
    output_dir: null            # predict: one file of per-cell outputs per shard

Unknown keys are errors. ``fit`` saves ``<default_root_dir>/model.ckpt`` at the end; earlier
checkpoints are never overwritten by a failed run. With ``data.val_paths``, the logged values (training
losses and the model's validation metrics) are written to ``<default_root_dir>/logs/version_*/metrics.csv``.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main"]

logger = logging.getLogger(__name__)


def _parser() -> Any:
    from jsonargparse import ActionConfigFile, ArgumentParser
    from lightning.pytorch import Trainer

    from ._datamodule import StreamDataModule

    parser = ArgumentParser(prog="cellflux stream", description="Train or apply a streaming model over h5ad shards.")
    parser.add_argument("--config", action=ActionConfigFile, help="YAML configuration")
    parser.add_class_arguments(StreamDataModule, "data")
    parser.add_argument("--model.class_path", type=str, required=True, help="import path of the model class")
    parser.add_argument("--model.init_args", type=dict, default={}, help="model arguments (var_names_g: from data)")
    parser.add_argument("--transforms", type=list[dict], default=[], help="[{class_path, init_args}, ...]")
    parser.add_argument("--optim_fn", type=str | None, default=None, help="optimiser class path")
    parser.add_argument("--optim_kwargs", type=dict, default={}, help="optimiser arguments")
    parser.add_class_arguments(Trainer, "trainer", skip={"callbacks", "plugins", "logger"})
    parser.add_argument("--ckpt_path", type=str | None, default=None)
    parser.add_argument("--output_dir", type=str | None, default=None)
    return parser


def _load(path: str) -> Any:
    """The object at an import path: ``package.module.Class`` or a class method of it.

    E.g. ``package.module.Class.from_csv``: the longest importable module prefix, then attributes.
    """
    parts = path.split(".")
    if len(parts) < 2 or not all(parts):
        raise ValueError(f"{path!r} is not an import path such as 'package.module.Class'.")
    error: Exception | None = None
    for cut in range(len(parts) - 1, 0, -1):
        name = ".".join(parts[:cut])
        try:
            target = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name is None or not (name == err.name or name.startswith(err.name + ".")):
                # the module exists but needs something missing: say so, not "no attribute"
                raise ValueError(f"Cannot import {path!r}: {err}") from err
            error = error or err  # this prefix is not a module: try a shorter one
            continue
        except ImportError as err:
            raise ValueError(f"Cannot import {path!r}: {err}") from err
        try:
            for attr in parts[cut:]:
                target = getattr(target, attr)
        except AttributeError as err:
            raise ValueError(f"Cannot import {path!r}: {err}") from err
        return target
    raise ValueError(f"Cannot import {path!r}: {error}") from error


def _from_data(model_cls: type, init_args: dict[str, Any], data: Any) -> dict[str, Any]:
    """Model arguments from the data, unless given.

    ``n_obs``, ``n_batch``, ``y_categories`` (of the obs column delivered as ``y_n``) and
    ``cell_type_categories`` (of the column delivered as ``validation_cell_type_index_n``).
    """
    import inspect

    params = inspect.signature(model_cls).parameters
    filled: dict[str, Any] = {}
    if "n_obs" in params and "n_obs" not in init_args and getattr(model_cls, "n_obs_is_cells", True):
        filled["n_obs"] = data.collection.n_obs
    batch_column = data.collection.obs_columns.get("batch_index_n")
    if "n_batch" in params and "n_batch" not in init_args and batch_column in data.collection.categories:
        filled["n_batch"] = len(data.collection.categories[batch_column])
    cell_type_column = data.collection.obs_columns.get("validation_cell_type_index_n")
    if (
        "cell_type_categories" in params
        and "cell_type_categories" not in init_args
        and cell_type_column in data.collection.categories
    ):
        filled["cell_type_categories"] = list(data.collection.categories[cell_type_column])
    if "y_categories" in params and "y_categories" not in init_args:
        column = data.collection.obs_columns.get("y_n")
        if column is None or column not in data.collection.categories:
            raise ValueError(
                f"{model_cls.__name__} needs labels: add data.obs_columns: {{y_n: <categorical obs column>}}."
            )
        filled["y_categories"] = list(data.collection.categories[column])
    return filled


def _build(cfg: Any, callbacks: Sequence[Any] = ()) -> tuple[Any, Any, Any]:
    from lightning.pytorch import Trainer

    from ..models import StreamingModel
    from ._datamodule import StreamDataModule
    from ._module import StreamingModule

    data = StreamDataModule(**cfg.data.as_dict())
    model_cls = _load(cfg.model.class_path)
    if not (isinstance(model_cls, type) and issubclass(model_cls, StreamingModel)):
        raise ValueError(f"model.class_path {cfg.model.class_path!r} is not a StreamingModel.")
    init_args = dict(cfg.model.init_args or {})
    if "var_names_g" in init_args:
        raise ValueError("model.init_args.var_names_g comes from the data; remove it from the configuration.")
    init_args.update(_from_data(model_cls, init_args, data))
    model = model_cls(var_names_g=data.var_names_g, **init_args)
    transforms = []
    for spec in cfg.transforms or []:
        unknown = set(spec) - {"class_path", "init_args"}
        if unknown or "class_path" not in spec:
            raise ValueError(f"A transform needs class_path (and optionally init_args); got keys {sorted(spec)}.")
        transforms.append(_load(spec["class_path"])(**dict(spec.get("init_args") or {})))
    optim_fn = _load(cfg.optim_fn) if cfg.optim_fn else None
    module = StreamingModule(
        model, transforms, optim_fn=optim_fn, optim_kwargs=cfg.optim_kwargs, validation=data.val_collection is not None
    )
    trainer_args = cfg.trainer.as_dict()
    trainer_args.setdefault("enable_checkpointing", False)
    logger: Any = False
    if data.val_collection is not None:  # validation metrics go to <default_root_dir>/logs/version_*/metrics.csv
        from lightning.pytorch.loggers import CSVLogger

        logger = CSVLogger(trainer_args.get("default_root_dir") or ".", name="logs")
    trainer = Trainer(**trainer_args, logger=logger, callbacks=list(callbacks))
    return data, module, trainer


def _fit(cfg: Any) -> int:
    import torch

    data, module, trainer = _build(cfg)
    trainer.fit(module, datamodule=data, ckpt_path=cfg.ckpt_path)
    if trainer.is_global_zero:
        root = Path(trainer.default_root_dir)
        root.mkdir(parents=True, exist_ok=True)
        final, partial = root / "model.ckpt", root / "model.ckpt.partial"
        trainer.save_checkpoint(partial)
        partial.replace(final)  # atomic: an earlier checkpoint survives a failed save
        torch.save(module.model.state_dict(), root / "model_state.pt")
        print(f"saved {final}")
    return 0


def _predict(cfg: Any) -> int:
    import torch

    from ._writer import ShardCSVWriter

    if not cfg.ckpt_path:
        raise ValueError("predict needs ckpt_path: the checkpoint written by `cellflux stream fit`.")
    if not cfg.output_dir:
        raise ValueError("predict needs output_dir: a folder for one output file per shard.")
    out_dir = Path(cfg.output_dir)
    writer = ShardCSVWriter(out_dir)  # written batch by batch: no outputs kept in memory
    data, module, trainer = _build(cfg, callbacks=[writer])
    state = torch.load(cfg.ckpt_path, map_location="cpu", weights_only=False)["state_dict"]
    module.load_state_dict(state)
    trainer.predict(module, datamodule=data, return_predictions=False)
    print(f"wrote {len(data.collection.paths)} files to {out_dir}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``cellflux stream fit|predict --config CONFIG.yaml``.

    Parameters
    ----------
    argv
        The arguments after ``stream``.

    Returns
    -------
    The exit status.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("fit", "predict"):
        print("usage: cellflux stream {fit,predict} --config CONFIG.yaml [--section.key value ...]", file=sys.stderr)
        return 2
    command, rest = argv[0], argv[1:]
    cfg = _parser().parse_args(rest)
    return _fit(cfg) if command == "fit" else _predict(cfg)
