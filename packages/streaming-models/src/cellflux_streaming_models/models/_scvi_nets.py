"""scVI's encoder and decoder networks, configured by cellarium-ml-style layer dictionaries.

A network configuration is a dict::

    {"hidden_layers": [{"class_path": "LinearWithBatch", "init_args": {"out_features": 128},
                        "dressing_init_args": {"use_batch_norm": True, "dropout_rate": 0.1}}],
     "final_layer": {"class_path": "torch.nn.Linear", "init_args": {}},
     "final_additive_bias": False}          # decoder only

Layer class paths are matched by their last component, so cellarium-ml's
(``cellarium.ml.models.scvi.LinearWithBatch``) and ours are both accepted: ``Linear``,
``LinearWithBatch``, ``LinearWithCovariates``, ``LinearWithBatchAndCovariates``. A layer "with
batch" adds a bias computed linearly from the cell's batch representation (the same as scvi-tools'
concatenation of the one-hot batch to the layer's input).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["CovariateLinear", "DecoderSCVI", "EncoderSCVI", "FullyConnected", "default_network"]

_LAYERS = {
    "Linear": (False, False),
    "LinearWithBatch": (True, False),
    "LinearWithCovariates": (False, True),
    "LinearWithBatchAndCovariates": (True, True),
}
_ACTIVATIONS = {
    "ReLU": nn.ReLU,
    "GELU": nn.GELU,
    "SiLU": nn.SiLU,
    "Tanh": nn.Tanh,
    "ELU": nn.ELU,
    "LeakyReLU": nn.LeakyReLU,
}


def default_network(n_hidden: int = 128, n_layers: int = 1, decoder: bool = False) -> dict[str, Any]:
    """scvi-tools' default network: ``n_layers`` hidden layers of ``n_hidden`` units (batch injected: decoder only)."""
    kind = "LinearWithBatch" if decoder else "Linear"
    config: dict[str, Any] = {
        "hidden_layers": [{"class_path": kind, "init_args": {"out_features": n_hidden}} for _ in range(n_layers)],
        "final_layer": {"class_path": "torch.nn.Linear", "init_args": {}},
    }
    if decoder:
        config["final_additive_bias"] = False
    return config


class CovariateLinear(nn.Module):
    """``y = x W^T + b + c B^T``: a linear layer plus a bias linear in the batch/covariate representation ``c``.

    Parameters
    ----------
    in_features, out_features
        Sizes.
    n_covariates
        Width of ``c`` (batch representation and/or one-hot categorical covariates); 0: plain linear.
    bias
        Learn ``b``.
    label_to_bias_hidden_layers
        Only ``[]`` (a linear map from ``c``) is implemented.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        n_covariates: int = 0,
        bias: bool = True,
        label_to_bias_hidden_layers: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if label_to_bias_hidden_layers:
            raise NotImplementedError(
                "label_to_bias_hidden_layers other than [] (a linear bias map) is not implemented."
            )
        self.in_features, self.out_features = in_features, out_features
        self.linear = nn.Linear(in_features, out_features, bias=bias)
        self.covariate = nn.Linear(n_covariates, out_features, bias=False) if n_covariates else None

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        out = self.linear(x)
        if self.covariate is not None:
            if c is None:
                raise ValueError("This layer needs the batch/covariate representation.")
            out = out + self.covariate(c)
        return out


def _make_layer(
    spec: Mapping[str, Any], in_features: int, out_features: int | None, widths: tuple[int, int]
) -> tuple[CovariateLinear, tuple[bool, bool]]:
    spec = dict(spec)
    unknown = set(spec) - {"class_path", "init_args", "dressing_init_args"}
    if unknown or "class_path" not in spec:
        raise ValueError(f"A layer needs class_path (and init_args, dressing_init_args); got keys {sorted(spec)}.")
    name = str(spec["class_path"]).rsplit(".", 1)[-1]
    if name not in _LAYERS:
        raise ValueError(f"Unknown layer class {spec['class_path']!r}; use one of {sorted(_LAYERS)}.")
    uses = _LAYERS[name]
    args = {
        k: v
        for k, v in dict(spec.get("init_args") or {}).items()
        if k not in ("n_batch", "categorical_covariate_dimensions")
    }
    out = args.pop("out_features", out_features)
    if out is None:
        raise ValueError(f"Hidden layer {spec['class_path']!r} needs init_args.out_features.")
    if uses[0] and widths[0] == 0:
        raise ValueError(f"{name} needs a batch representation: set n_batch > 0.")
    if uses[1] and widths[1] == 0:
        raise ValueError(f"{name} needs categorical covariates: set n_cats_per_cov.")
    n_cov = (widths[0] if uses[0] else 0) + (widths[1] if uses[1] else 0)
    bias = bool(args.pop("bias", True))
    hidden = args.pop("label_to_bias_hidden_layers", None)
    args.pop("label_to_bias_dressing_init_kwargs", None)
    if args:
        raise ValueError(f"Unknown init_args for {name}: {sorted(args)}.")
    return CovariateLinear(in_features, int(out), n_cov, bias=bias, label_to_bias_hidden_layers=hidden), uses


class _Dressed(nn.Module):
    """A layer followed by batch or layer norm, an activation and dropout."""

    def __init__(self, layer: CovariateLinear, uses: tuple[bool, bool], dressing: Mapping[str, Any]) -> None:
        super().__init__()
        dressing = dict(dressing)
        self.layer, self.uses = layer, uses
        n = layer.out_features
        use_bn = bool(dressing.pop("use_batch_norm", False))
        use_ln = bool(dressing.pop("use_layer_norm", False))
        if use_bn and use_ln:
            raise ValueError("Use batch norm or layer norm in a layer, not both.")
        # scvi-tools' settings: slow running statistics, no affine layer norm
        self.norm = (
            nn.BatchNorm1d(n, eps=1e-3, momentum=0.01)
            if use_bn
            else nn.LayerNorm(n, elementwise_affine=False)
            if use_ln
            else None
        )
        activation = dressing.pop("activation_fn", "ReLU")
        if isinstance(activation, str):
            key = activation.rsplit(".", 1)[-1]
            if key not in _ACTIVATIONS:
                raise NotImplementedError(
                    f"activation_fn {activation!r} is not implemented; use one of {sorted(_ACTIVATIONS)}."
                )
            activation = _ACTIVATIONS[key]
        self.activation = activation() if activation is not None else None
        rate = float(dressing.pop("dropout_rate", 0.0))
        self.dropout = nn.Dropout(rate) if rate > 0 else None
        if dressing:
            raise ValueError(f"Unknown dressing_init_args: {sorted(dressing)}.")

    def forward(self, x: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        x = self.layer(x, c)
        if self.norm is not None:
            x = self.norm(x)
        if self.activation is not None:
            x = self.activation(x)
        if self.dropout is not None:
            x = self.dropout(x)
        return x


def _covariates(
    batch_nb: torch.Tensor | None, cat_np: torch.Tensor | None, uses: tuple[bool, bool]
) -> torch.Tensor | None:
    parts = [t for t, use in zip((batch_nb, cat_np), uses, strict=True) if use and t is not None]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)


class FullyConnected(nn.Module):
    """Hidden layers (possibly none) with the batch/covariates injected where the configuration asks.

    Parameters
    ----------
    in_features
        Input width.
    layers
        Hidden layer specifications (see the module's docstring).
    widths
        Widths of the batch representation and of the one-hot categorical covariates.
    defaults
        ``dressing_init_args`` used where a layer does not set them.
    """

    def __init__(
        self,
        in_features: int,
        layers: Sequence[Mapping[str, Any]],
        widths: tuple[int, int],
        defaults: Mapping[str, Any],
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList()
        current = in_features
        for spec in layers:
            layer, uses = _make_layer(spec, current, None, widths)
            dressing = {**defaults, **dict(spec.get("dressing_init_args") or {})}
            self.layers.append(_Dressed(layer, uses, dressing))
            current = layer.out_features
        self.out_features = current

    def forward(self, x: torch.Tensor, batch_nb: torch.Tensor | None, cat_np: torch.Tensor | None) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, _covariates(batch_nb, cat_np, layer.uses))
        return x


def _check_network(config: Mapping[str, Any], name: str, decoder: bool) -> dict[str, Any]:
    config = copy.deepcopy(dict(config))
    allowed = {"hidden_layers", "final_layer"} | ({"final_additive_bias"} if decoder else set())
    unknown = set(config) - allowed
    if unknown or "hidden_layers" not in config or "final_layer" not in config:
        raise ValueError(f"{name} needs keys {sorted(allowed)}; got {sorted(config)}.")
    if not isinstance(config["hidden_layers"], list):
        raise ValueError(f"{name}.hidden_layers must be a list of layer specifications.")
    return config


class EncoderSCVI(nn.Module):
    """``q(z | x, batch) = Normal(mean(h), sqrt(exp(logvar(h)) + var_eps))`` with ``h`` the hidden layers' output."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        config: Mapping[str, Any],
        widths: tuple[int, int],
        defaults: Mapping[str, Any],
        var_eps: float = 1e-4,
    ) -> None:
        super().__init__()
        config = _check_network(config, "encoder", decoder=False)
        self.fully_connected = FullyConnected(in_features, config["hidden_layers"], widths, defaults)
        n = self.fully_connected.out_features
        self.mean_encoder, self.uses = _make_layer(config["final_layer"], n, out_features, widths)
        self.var_encoder, _ = _make_layer(config["final_layer"], n, out_features, widths)
        self.var_eps = var_eps

    def forward(
        self, x: torch.Tensor, batch_nb: torch.Tensor | None, cat_np: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and standard deviation."""
        h = self.fully_connected(x, batch_nb, cat_np)
        c = _covariates(batch_nb, cat_np, self.uses)
        mean = self.mean_encoder(h, c)
        std = torch.sqrt(torch.exp(self.var_encoder(h, c)) + self.var_eps)
        return mean, std


class DecoderSCVI(nn.Module):
    """The generative network: latent ``z`` (and batch) to normalised expression, dispersions and zero inflation.

    Returns the scale (softmax over genes, or softplus when the library comes from a size factor),
    the per-cell log-inverse-dispersions (``"gene-cell"`` only) and the zero-inflation logits
    (``"zinb"`` only).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        config: Mapping[str, Any],
        widths: tuple[int, int],
        defaults: Mapping[str, Any],
        *,
        gene_cell_dispersion: bool,
        zero_inflation: bool,
        scale_activation: str = "softmax",
    ) -> None:
        super().__init__()
        config = _check_network(config, "decoder", decoder=True)
        hidden = []
        for spec in config["hidden_layers"]:  # scvi-tools uses no dropout in the decoder
            spec = copy.deepcopy(dict(spec))
            spec.setdefault("dressing_init_args", {})
            spec["dressing_init_args"] = {**spec["dressing_init_args"], "dropout_rate": 0.0}
            hidden.append(spec)
        self.fully_connected = FullyConnected(in_features, hidden, widths, defaults)
        n = self.fully_connected.out_features
        self.scale_decoder, self.uses = _make_layer(config["final_layer"], n, out_features, widths)
        self.softmax = scale_activation == "softmax"
        self.theta_decoder = nn.Linear(n, out_features) if gene_cell_dispersion else None
        self.dropout_decoder = nn.Linear(n, out_features) if zero_inflation else None
        self.additive_bias = (
            nn.Linear(widths[0] + widths[1], out_features) if config.get("final_additive_bias", False) else None
        )
        if self.additive_bias is not None and widths[0] + widths[1] == 0:
            raise ValueError("final_additive_bias needs a batch or categorical covariates.")

    def forward(
        self, z: torch.Tensor, batch_nb: torch.Tensor | None, cat_np: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        """``(scale, additive, log_theta, zi_logits)``: ``mu = exp(library) * scale + additive``."""
        h = self.fully_connected(z, batch_nb, cat_np)
        logits = self.scale_decoder(h, _covariates(batch_nb, cat_np, self.uses))
        scale = torch.softmax(logits, dim=-1) if self.softmax else nn.functional.softplus(logits)
        additive = None
        if self.additive_bias is not None:
            additive = torch.relu(self.additive_bias(_covariates(batch_nb, cat_np, (True, True))))
        log_theta = self.theta_decoder(h) if self.theta_decoder is not None else None
        zi = self.dropout_decoder(h) if self.dropout_decoder is not None else None
        return scale, additive, log_theta, zi


def init_weights(module: nn.Module) -> None:
    """Xavier-normal linear weights, zero biases, batch-norm scales near one (cellarium-ml's initialisation)."""
    for m in module.modules():
        if isinstance(m, nn.BatchNorm1d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.xavier_normal_(m.weight) if m.weight.shape[1] else None
            if m.bias is not None:
                nn.init.zeros_(m.bias)
