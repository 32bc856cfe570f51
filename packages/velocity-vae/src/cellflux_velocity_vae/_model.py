"""VELOVI on scvi-tools' base classes: setup, initialisation, training, weights-only save/load.

The posterior queries live in :mod:`._queries`; the module (pure torch) in :mod:`._module`.
"""

from __future__ import annotations

import logging
import os
import warnings
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from scvi.data import AnnDataManager
from scvi.data.fields import LayerField
from scvi.dataloaders import DataSplitter
from scvi.model.base import BaseModelClass, UnsupervisedTrainingMixin, VAEMixin
from scvi.model.base._constants import SAVE_KEYS
from scvi.train import TrainingPlan, TrainRunner

from ._constants import REGISTRY_KEYS
from ._module import VELOVAE
from ._queries import VelocityQueriesMixin
from ._serialize import from_plain, to_plain
from ._validate import check_layers, check_same_genes, dense

if TYPE_CHECKING:
    from collections.abc import Iterable

    from anndata import AnnData

__all__ = ["VELOVI", "default_max_epochs"]

logger = logging.getLogger(__name__)

#: Lightning warnings that say nothing about the user's data (workers, logging intervals).
_NOISY = (
    r".*does not have many workers.*",
    r".*number of training batches.*is smaller than the logging interval.*",
    r".*GPU available but not used.*",
    r".*litlogger.*",
    r".*isinstance\(treespec, LeafSpec\).*",
)


def default_max_epochs(n_cells: int) -> int:
    """VeloVI's default: ``min(round(20000 / n_cells * 400), 400)`` epochs."""
    return int(min(round(20000 / max(n_cells, 1) * 400), 400))


def _softplus_inverse(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.where(x > 20, x, np.log(np.expm1(np.minimum(x, 20))))


#: Unconstrained degradation rate where the data cannot set one (the module's own default).
_DEFAULT_GAMMA_UNCONSTR = -1.0


def initial_rates(
    us_upper: np.ndarray, ms_upper: np.ndarray, gamma_init_data: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """Unconstrained transcription and (optionally) degradation rates to start from, per gene.

    As VeloVI: ``alpha = us_upper`` and ``gamma = us_upper / ms_upper`` (softplus-inverse, ``gamma``'s
    capped at 10). Where a switching target is zero (a gene with unspliced counts in fewer than about
    0.5% of cells) VeloVI starts from ``-inf`` (or NaN for ``gamma``, ``0 / 0``), which never trains and,
    with ``gamma_init_data``, turns the first step's parameters into NaN; such genes start from the
    module's defaults here (``alpha_unconstr = 0``, ``gamma_unconstr = -1``). Every other gene starts
    where VeloVI's would.

    Returns
    -------
    ``(alpha_unconstr, gamma_unconstr)``; ``gamma_unconstr`` is ``None`` unless ``gamma_init_data``.
    """
    us_upper = np.asarray(us_upper, dtype=np.float64)
    ms_upper = np.asarray(ms_upper, dtype=np.float64)
    alpha = np.where(us_upper > 0, _softplus_inverse(np.where(us_upper > 0, us_upper, 1.0)), 0.0)
    if not gamma_init_data:
        return alpha, None
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = us_upper / ms_upper
    usable = ratio > 0  # NaN (0 / 0) is not; +inf (no spliced in the top cells) is capped at 10 as in VeloVI
    gamma = np.where(usable, np.minimum(_softplus_inverse(np.where(usable, ratio, 1.0)), 10.0), _DEFAULT_GAMMA_UNCONSTR)
    return alpha, gamma


def switch_targets(spliced: np.ndarray, unspliced: np.ndarray, quantile: float = 0.99) -> tuple[np.ndarray, np.ndarray]:
    """Per gene, the median ``u`` and ``s`` of the cells in the top ``1 - quantile`` of ``u``."""
    order = np.argsort(unspliced, axis=0)
    top = order[int(unspliced.shape[0] * quantile) :, :]
    us_upper = np.median(np.take_along_axis(unspliced, top, axis=0), axis=0)
    ms_upper = np.median(np.take_along_axis(spliced, top, axis=0), axis=0)
    return us_upper, ms_upper


def _adamw(params: Iterable[torch.nn.Parameter], lr: float, eps: float, weight_decay: float) -> torch.optim.AdamW:
    """scvi-tools' AdamW (same hyper-parameters), with torch's fused kernel where the device has one."""
    params = list(params)
    fused = bool(params) and all(p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.AdamW(params, lr=lr, eps=eps, weight_decay=weight_decay, fused=fused)


def _plan_with_fused_adamw(plan: dict) -> dict:
    """Swap scvi-tools' ``optimizer="AdamW"`` for the same update with a fused kernel (one pass over all parameters)."""
    if plan.get("optimizer") != "AdamW" or plan.get("optimizer_creator") is not None:
        return plan
    creator = partial(_adamw, lr=plan["lr"], eps=plan.get("eps", 0.01), weight_decay=plan["weight_decay"])
    return {**plan, "optimizer": "Custom", "optimizer_creator": creator}


class VELOVI(VelocityQueriesMixin, VAEMixin, UnsupervisedTrainingMixin, BaseModelClass):
    """Velocity variational inference :cite:p:`GayosoWeiler23` on scvi-tools' base classes.

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata` (min-max scaled moments, see
        :func:`~cellflux_velocity_vae.preprocess_data`).
    n_hidden
        Nodes per hidden layer.
    n_latent
        Dimension of the latent space.
    n_layers
        Hidden layers of the encoder and decoder.
    dropout_rate
        Dropout rate.
    gamma_init_data
        Initialise the degradation rates from the data (ratio of the switching targets).
    linear_decoder
        Linear decoder from the latent space to time.
    **model_kwargs
        Keyword arguments of :class:`~cellflux_velocity_vae.VELOVAE`.
    """

    _module_cls = VELOVAE

    def __init__(
        self,
        adata: AnnData | None = None,
        n_hidden: int = 256,
        n_latent: int = 10,
        n_layers: int = 1,
        dropout_rate: float = 0.1,
        gamma_init_data: bool = False,
        linear_decoder: bool = False,
        **model_kwargs: Any,
    ) -> None:
        super().__init__(adata)
        self.n_latent = n_latent
        spliced = dense(self.adata_manager.get_from_registry(REGISTRY_KEYS.X_KEY))
        unspliced = dense(self.adata_manager.get_from_registry(REGISTRY_KEYS.U_KEY))
        us_upper, ms_upper = switch_targets(spliced, unspliced)
        alpha_unconstr, gamma_unconstr = initial_rates(us_upper, ms_upper, gamma_init_data)
        self.module = self._module_cls(
            n_input=self.summary_stats["n_vars"],
            n_hidden=n_hidden,
            n_latent=n_latent,
            n_layers=n_layers,
            dropout_rate=dropout_rate,
            gamma_unconstr_init=gamma_unconstr,
            alpha_unconstr_init=alpha_unconstr,
            alpha_1_unconstr_init=np.zeros(us_upper.shape),
            lambda_alpha_unconstr_init=np.zeros(us_upper.shape),
            switch_spliced=ms_upper,
            switch_unspliced=us_upper,
            linear_decoder=linear_decoder,
            **model_kwargs,
        )
        self._model_summary_string = (
            f"VELOVI Model with the following params: \nn_hidden: {n_hidden}, n_latent: {n_latent}, "
            f"n_layers: {n_layers}, dropout_rate: {dropout_rate}"
        )
        self.init_params_ = {
            "kwargs": {"model_kwargs": dict(model_kwargs)},
            "non_kwargs": {
                "n_hidden": n_hidden,
                "n_latent": n_latent,
                "n_layers": n_layers,
                "dropout_rate": dropout_rate,
                "gamma_init_data": gamma_init_data,
                "linear_decoder": linear_decoder,
            },
        }

    @classmethod
    def setup_anndata(
        cls, adata: AnnData, spliced_layer: str = "Ms", unspliced_layer: str = "Mu", **kwargs: Any
    ) -> None:
        """Register the spliced and unspliced layers of ``adata`` for VELOVI.

        Parameters
        ----------
        adata
            The AnnData.
        spliced_layer
            Layer with (scaled) spliced abundances.
        unspliced_layer
            Layer with (scaled) unspliced abundances.
        **kwargs
            Passed to :meth:`scvi.data.AnnDataManager.register_fields`.

        Returns
        -------
        Nothing; ``adata`` is registered (``uns["_scvi_uuid"]``, ``uns["_scvi_manager_uuid"]``).
        """
        check_layers(adata, spliced_layer, unspliced_layer, warn_unscaled=kwargs.get("source_registry") is None)
        setup_method_args = {
            "model_name": cls.__name__,
            "setup_args": {"spliced_layer": spliced_layer, "unspliced_layer": unspliced_layer},
        }
        fields = [
            LayerField(REGISTRY_KEYS.X_KEY, spliced_layer, is_count_data=False),
            LayerField(REGISTRY_KEYS.U_KEY, unspliced_layer, is_count_data=False),
        ]
        manager = AnnDataManager(fields=fields, setup_method_args=setup_method_args)
        manager.register_fields(adata, **kwargs)
        cls.register_manager(manager)

    def _validate_anndata(self, adata: AnnData | None = None, copy_if_view: bool = True) -> AnnData:
        if adata is not None and self.adata is not None and adata is not self.adata:
            check_same_genes(self.adata.var_names, adata)
        return super()._validate_anndata(adata, copy_if_view=copy_if_view)

    def train(
        self,
        max_epochs: int | None = 500,
        lr: float = 1e-2,
        weight_decay: float = 1e-2,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        train_size: float | None = None,
        validation_size: float | None = None,
        batch_size: int = 256,
        early_stopping: bool = True,
        gradient_clip_val: float = 10,
        plan_kwargs: dict | None = None,
        external_indexing: list[np.ndarray] | None = None,
        **trainer_kwargs: Any,
    ) -> Any:
        """Train the model with AdamW, a KL warm-up and early stopping on the validation ELBO.

        Parameters
        ----------
        max_epochs
            Passes through the data; ``None`` scales with the number of cells
            (:func:`default_max_epochs`).
        lr
            Learning rate.
        weight_decay
            AdamW weight decay.
        accelerator
            ``"auto"`` trains on a GPU when one is present.
        devices
            Lightning devices.
        train_size, validation_size
            Fractions of cells for training and validation (scvi-tools' defaults: 0.9 / 0.1).
        batch_size
            Cells per minibatch.
        early_stopping
            Stop when the validation ELBO stops improving.
        gradient_clip_val
            Gradient clipping.
        plan_kwargs
            Keyword arguments of :class:`scvi.train.TrainingPlan` (override ``lr``/``weight_decay``).
        external_indexing
            Train, validation (and test) indices in that order.
        **trainer_kwargs
            Keyword arguments of :class:`scvi.train.Trainer`.

        Returns
        -------
        What :class:`scvi.train.TrainRunner` returns; the history is in :attr:`history`.
        """
        n_cells = self.adata.n_obs
        if max_epochs is None:
            max_epochs = default_max_epochs(n_cells)
        n_train = (
            len(external_indexing[0]) if external_indexing is not None else int(np.ceil((train_size or 0.9) * n_cells))
        )
        if n_train < 2:
            raise ValueError(
                f"Too few cells to train: {n_cells} cells give {n_train} training cells; veloVI needs more."
            )
        if n_cells < batch_size:
            raise ValueError(
                f"adata has {n_cells} cells, fewer than one batch (batch_size={batch_size}); "
                "pass a smaller batch_size (e.g. batch_size=min(256, n_cells // 2))."
            )
        plan = _plan_with_fused_adamw(
            {"lr": lr, "weight_decay": weight_decay, "optimizer": "AdamW", **(plan_kwargs or {})}
        )
        trainer_kwargs = {"gradient_clip_val": gradient_clip_val, "early_stopping": early_stopping, **trainer_kwargs}
        data_splitter = DataSplitter(
            self.adata_manager,
            train_size=train_size,
            validation_size=validation_size,
            batch_size=batch_size,
            external_indexing=external_indexing,
        )
        runner = TrainRunner(
            self,
            training_plan=TrainingPlan(self.module, **plan),
            data_splitter=data_splitter,
            max_epochs=max_epochs,
            accelerator=accelerator,
            devices=devices,
            **trainer_kwargs,
        )
        with warnings.catch_warnings():
            for pattern in _NOISY:
                warnings.filterwarnings("ignore", message=pattern)
            return runner()

    # ------------------------------------------------------------------ save / load (weights only)
    def save(
        self,
        dir_path: str,
        prefix: str | None = None,
        overwrite: bool = False,
        save_anndata: bool = False,
        save_kwargs: dict | None = None,
        **anndata_write_kwargs: Any,
    ) -> None:
        """Save the weights, the gene names and the setup to ``dir_path`` (loadable with ``weights_only=True``).

        Parameters
        ----------
        dir_path
            Folder to write into.
        prefix
            Prefix of the file names.
        overwrite
            Overwrite an existing folder.
        save_anndata
            Also write the AnnData (``adata.h5ad``).
        save_kwargs
            Keyword arguments of :func:`torch.save`.
        **anndata_write_kwargs
            Keyword arguments of :meth:`anndata.AnnData.write_h5ad`.
        """
        if os.path.exists(dir_path) and not overwrite:
            raise ValueError(f"{dir_path} already exists. Pass overwrite=True or another directory.")
        os.makedirs(dir_path, exist_ok=True)
        prefix = prefix or ""
        if save_anndata:
            self.adata.write_h5ad(os.path.join(dir_path, f"{prefix}{SAVE_KEYS.ADATA_FNAME}"), **anndata_write_kwargs)
        attributes = {name: value for name, value in self._get_user_attributes() if name.endswith("_")}
        payload = {
            SAVE_KEYS.MODEL_STATE_DICT_KEY: {k: v.detach().cpu() for k, v in self.module.state_dict().items()},
            SAVE_KEYS.VAR_NAMES_KEY: [str(v) for v in self.adata.var_names],
            SAVE_KEYS.ATTR_DICT_KEY: to_plain(attributes),
        }
        torch.save(payload, os.path.join(dir_path, f"{prefix}{SAVE_KEYS.MODEL_FNAME}"), **(save_kwargs or {}))

    @classmethod
    def load(
        cls,
        dir_path: str,
        adata: AnnData | None = None,
        accelerator: str = "auto",
        device: int | str = "auto",
        prefix: str | None = None,
        backup_url: str | None = None,
    ) -> VELOVI:
        """Load a saved model; the file is read with ``torch.load(weights_only=True)`` (no code runs).

        Parameters
        ----------
        dir_path
            Folder written by :meth:`save`.
        adata
            AnnData with the model's genes; by default the one saved with the model.
        accelerator, device
            Where to put the model.
        prefix
            Prefix of the file names.
        backup_url
            Not supported (no downloads); must be ``None``.

        Returns
        -------
        The model with its trained weights.
        """
        import anndata as ad
        from scvi.model._utils import parse_device_args
        from scvi.model.base._save_load import _initialize_model

        if backup_url is not None:
            raise ValueError("backup_url is not supported: copy the saved folder locally and pass dir_path.")
        prefix = prefix or ""
        path = os.path.join(dir_path, f"{prefix}{SAVE_KEYS.MODEL_FNAME}")
        if not os.path.exists(path):
            raise FileNotFoundError(f"No saved model at {path}.")
        payload = torch.load(path, map_location="cpu", weights_only=True)
        state = payload[SAVE_KEYS.MODEL_STATE_DICT_KEY]
        var_names = np.asarray(payload[SAVE_KEYS.VAR_NAMES_KEY], dtype=object)
        attributes = from_plain(payload[SAVE_KEYS.ATTR_DICT_KEY])
        if adata is None:
            adata_path = os.path.join(dir_path, f"{prefix}{SAVE_KEYS.ADATA_FNAME}")
            if not os.path.exists(adata_path):
                raise ValueError(f"No AnnData saved in {dir_path}; pass adata= (with the model's genes).")
            adata = ad.read_h5ad(adata_path)
        check_same_genes(var_names, adata)
        registry = attributes.pop("registry_")
        if registry.get("model_name", cls.__name__) != cls.__name__:
            raise ValueError(f"The saved model is a {registry['model_name']}, not a {cls.__name__}.")
        cls.setup_anndata(adata, source_registry=registry, **registry["setup_args"])
        model = _initialize_model(cls, adata, registry, attributes, None)
        model.module.load_state_dict(state)
        _, _, torch_device = parse_device_args(
            accelerator=accelerator, devices=device, return_device="torch", validate_single_device=True
        )
        model.to_device(torch_device)
        model.module.eval()
        model._validate_anndata(adata)
        return model
