"""CellariumGPT: a transformer over gene-value, gene-id and metadata tokens, trained to predict the queried ones."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from .._dist import all_reduce_sum, world
from ._base import StreamingModel
from ._gpt_layers import LRGroup, Readout, TokenEmbedding, Transformer, depth_scale, prompt_diagonal_mask, trunc_normal

__all__ = ["CellariumGPT"]

_CONTINUOUS = ("gene_value", "gene_query_mask", "total_mrna_umis")


class CellariumGPT(StreamingModel):
    """A transformer that predicts the queried tokens of a cell (gene counts, metadata) from its prompt tokens.

    Each cell is a set of tokens (see :class:`~cellflux_streaming_models.models.CellariumGPTTokenizer`):
    gene tokens, each the sum of an embedding of the gene's id, a linear embedding of its
    ``log1p`` count (zero for queried genes), of the query flag and of the cell's ``log1p`` total
    count, and metadata tokens (e.g. cell type), embedded from their code or a mask code when
    queried. Every token attends to the prompt tokens and to itself only, so each query is
    predicted from the prompt. Heads predict, for every token type in ``loss_scale_dict``, a
    categorical distribution (for ``gene_value``: the count, clipped to the vocabulary).

    The loss is, per token type, the cross-entropy summed over the query tokens of the batch
    divided by their number (counted over all DDP processes, so two processes train exactly as
    one with their batches put together), then combined with the weights ``loss_scale_dict``.

    muP (maximal update parametrisation): with ``mup_base_d_model`` (``mup_base_d_ffn``), the
    initial standard deviations of the input (output) projections shrink as ``width_mult**-0.5``,
    output logits as ``1 / width_mult`` and the learning rates of the hidden matrices as ``1 /
    width_mult`` (:meth:`param_groups`, used by :meth:`default_optimizer`), so hyper-parameters tuned
    at the base width transfer to wider models. Attention logits are scaled by ``1 / d_head``
    (muP) times ``attention_logits_scale``; residual output projections start ``1 / sqrt(2 n_blocks)``
    smaller.

    Parameters
    ----------
    categorical_token_size_dict
        Vocabulary sizes: ``gene_value`` (count classes), ``gene_id`` (genes; default from
        ``var_names_g``) and one per metadata token (e.g. ``cell_type``).
    d_model
        Width of embeddings and hidden states.
    d_ffn
        Width of the feed-forward layers.
    n_heads
        Attention heads (dividing ``d_model``).
    n_blocks
        Transformer blocks.
    dropout_p
        Dropout probability.
    use_bias
        Biases in linear and layer-norm layers.
    attention_backend
        ``"torch"`` (explicit softmax), ``"math"`` or ``"mem_efficient"`` (PyTorch's scaled dot
        product attention kernels; the memory-efficient one falls back to math where unavailable, e.g.
        on CPU), or ``"flex"`` (flex attention, no dropout; its backward needs a GPU, and without
        ``torch.compile`` PyTorch runs it unfused, with a warning).
    attention_softmax_fp32
        With the ``"torch"`` backend, compute the softmax in float32 under lower precision.
    loss_scale_dict
        The predicted token types and the weights of their losses.
    initializer_range
        Standard deviation of the (truncated normal) initial weights.
    embeddings_scale, attention_logits_scale, output_logits_scale
        Multipliers of the embeddings, attention logits and output logits.
    mup_base_d_model, mup_base_d_ffn
        Base widths of muP (``None``: standard parametrisation).
    var_names_g
        The genes (default ``gene_0, gene_1, ...``; the command line passes the data's).
    seed
        Seed of the initial weights.
    lr
        Base learning rate of :meth:`default_optimizer`.
    """

    trainable = True
    n_epochs = None

    def __init__(
        self,
        categorical_token_size_dict: Mapping[str, int],
        d_model: int,
        d_ffn: int,
        n_heads: int,
        n_blocks: int,
        dropout_p: float,
        use_bias: bool,
        attention_backend: str,
        attention_softmax_fp32: bool,
        loss_scale_dict: Mapping[str, float],
        initializer_range: float = 0.02,
        embeddings_scale: float = 1.0,
        attention_logits_scale: float = 1.0,
        output_logits_scale: float = 1.0,
        mup_base_d_model: int | None = None,
        mup_base_d_ffn: int | None = None,
        *,
        var_names_g: Sequence[str] | None = None,
        seed: int = 0,
        lr: float = 1e-3,
    ) -> None:
        sizes = {str(k): int(v) for k, v in dict(categorical_token_size_dict).items()}
        if var_names_g is None:
            if "gene_id" not in sizes:
                raise ValueError("categorical_token_size_dict needs 'gene_id' (or pass var_names_g).")
            var_names_g = [f"gene_{i}" for i in range(sizes["gene_id"])]
        super().__init__(var_names_g)
        sizes.setdefault("gene_id", self.n_vars)
        if sizes["gene_id"] != self.n_vars:
            raise ValueError(
                f"categorical_token_size_dict['gene_id'] = {sizes['gene_id']} but there are {self.n_vars} genes."
            )
        if "gene_value" not in sizes:
            raise ValueError("categorical_token_size_dict needs 'gene_value' (count classes of the gene-value head).")
        if any(v < 1 for v in sizes.values()):
            raise ValueError(f"Vocabulary sizes must be positive: {sizes}.")
        loss_scale = {str(k): float(v) for k, v in dict(loss_scale_dict).items()}
        if not loss_scale or set(loss_scale) - set(sizes) or "gene_id" in loss_scale:
            raise ValueError(
                f"loss_scale_dict must name predicted token types among {sorted(set(sizes) - {'gene_id'})}, "
                f"got {sorted(loss_scale)}."
            )
        for name, value in (("d_model", d_model), ("d_ffn", d_ffn), ("n_heads", n_heads), ("n_blocks", n_blocks)):
            if not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        if not 0 <= dropout_p < 1:
            raise ValueError(f"dropout_p must be in [0, 1), got {dropout_p}.")
        self.categorical_token_size_dict = sizes
        self.loss_scale_dict = loss_scale
        self.d_model, self.d_ffn, self.n_heads, self.n_blocks = int(d_model), int(d_ffn), int(n_heads), int(n_blocks)
        self.initializer_range = float(initializer_range)
        self.embeddings_scale = float(embeddings_scale)
        self.seed = seed
        self.lr = lr
        # muP
        width = d_model / mup_base_d_model if mup_base_d_model else 1.0
        width_ffn = d_ffn / mup_base_d_ffn if mup_base_d_ffn else 1.0
        self.width_mult, self.width_mult_ffn = width, width_ffn
        self.output_logits_scale = float(output_logits_scale) / width
        self.lr_groups = {
            "embedding": LRGroup(("*embedding*weight", "*continuous*weight")),
            "attention": LRGroup(("*attention.W*weight",), 1.0 / width),
            "input_ffn": LRGroup(("*dense1.weight",), 1.0 / width),
            "output_ffn": LRGroup(("*dense2.weight",), 1.0 / width_ffn),
        }
        embedded = {k: v + 1 for k, v in sizes.items() if k in loss_scale and k != "gene_value"}
        embedded |= {k: v for k, v in sizes.items() if k not in loss_scale and k != "gene_value"}
        self.embedding_sizes = embedded
        self.token_embedding = TokenEmbedding(embedded, _CONTINUOUS, d_model)
        self.transformer = Transformer(
            n_blocks,
            d_model,
            use_bias,
            d_ffn=d_ffn,
            n_heads=n_heads,
            dropout_p=dropout_p,
            attention_logits_scale=attention_logits_scale,
            attention_backend=attention_backend,
            attention_softmax_fp32=attention_softmax_fp32,
        )
        self.head = Readout({k: sizes[k] for k in loss_scale}, d_model, use_bias, self.output_logits_scale)
        self.reset_parameters()

    @property
    def attention_backend(self) -> str:
        """The attention implementation (settable, e.g. ``"math"`` for inference)."""
        return self.transformer.blocks[0].attention.attention_backend

    @attention_backend.setter
    def attention_backend(self, value: str) -> None:
        for block in self.transformer.blocks:
            block.attention.attention_backend = value

    def reset_parameters(self) -> None:
        """Draw the initial weights from ``seed`` (truncated normal, muP- and depth-scaled)."""
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(self.seed)
        try:
            std = self.initializer_range
            w_in, w_ffn, depth = self.width_mult**-0.5, self.width_mult_ffn**-0.5, depth_scale(self.n_blocks)
            for module in [*self.token_embedding.embedding.values(), *self.token_embedding.continuous.values()]:
                trunc_normal(module.weight, std)
            for block in self.transformer.blocks:
                for linear, scale in (
                    (block.attention.Wq, w_in),
                    (block.attention.Wk, w_in),
                    (block.attention.Wv, w_in),
                    (block.attention.Wo, w_in * depth),
                    (block.dense1, w_in),
                    (block.dense2, w_ffn * depth),
                ):
                    trunc_normal(linear.weight, std * scale)
                    if linear.bias is not None:
                        torch.nn.init.zeros_(linear.bias)
                block.ln1.reset_parameters()
                block.ln2.reset_parameters()
            self.transformer.ln.reset_parameters()
            for head in self.head.heads.values():
                trunc_normal(head.weight, std)
                if head.bias is not None:
                    torch.nn.init.zeros_(head.bias)
        finally:
            torch.random.set_rng_state(generator_state)

    def param_groups(self, lr: float) -> list[dict[str, object]]:
        """Optimiser parameter groups with muP's per-group learning rates (``lr`` times the group's scale)."""
        groups: dict[float, list[torch.nn.Parameter]] = {}
        for name, param in self.named_parameters():
            scale = next((g.scale for g in self.lr_groups.values() if g.matches(name)), 1.0)
            groups.setdefault(scale, []).append(param)
        return [{"params": params, "lr": lr * scale} for scale, params in groups.items()]

    def default_optimizer(self, batch_size: int) -> torch.optim.Optimizer:
        """Adam over :meth:`param_groups` with the base rate ``lr``."""
        return torch.optim.Adam(self.param_groups(self.lr), lr=self.lr)

    # -- the network --------------------------------------------------------------------------------
    def _check_tokens(self, token_value_nc_dict: Mapping[str, torch.Tensor], prompt_mask_nc: torch.Tensor) -> None:
        for key, value in token_value_nc_dict.items():
            if value.shape != prompt_mask_nc.shape:
                raise ValueError(
                    f"Token {key!r} has shape {tuple(value.shape)}, prompt_mask_nc {tuple(prompt_mask_nc.shape)}."
                )
            size = self.embedding_sizes.get(key)
            if size is not None and value.numel() and (int(value.max()) >= size or int(value.min()) < 0):
                raise ValueError(f"Token {key!r} has ids outside [0, {size}).")

    def predict(
        self,
        token_value_nc_dict: Mapping[str, torch.Tensor],
        token_mask_nc_dict: Mapping[str, torch.Tensor],
        prompt_mask_nc: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Logits of every predicted token type at every token: ``{key: (cells, tokens, vocabulary)}``.

        Only the query tokens' logits are meaningful (a prompt token sees its own value).
        """
        self._check_tokens(token_value_nc_dict, prompt_mask_nc)
        missing = set(token_value_nc_dict) - set(token_mask_nc_dict)
        if missing:
            raise ValueError(f"token_mask_nc_dict lacks {sorted(missing)}.")
        hidden = self.token_embedding(token_value_nc_dict, token_mask_nc_dict) * self.embeddings_scale
        hidden = self.transformer(hidden, prompt_diagonal_mask(prompt_mask_nc))
        return self.head(hidden)

    def forward(
        self,
        token_value_nc_dict: Mapping[str, torch.Tensor],
        token_mask_nc_dict: Mapping[str, torch.Tensor],
        prompt_mask_nc: torch.Tensor,
        label_nc_dict: Mapping[str, torch.Tensor],
        label_weight_nc_dict: Mapping[str, torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        """The loss (``loss``) and each token type's mean query cross-entropy (``loss_<type>``, detached).

        Under DDP (with gradients) both are scaled like ``loss``: their means over the processes are
        the global batch's values.
        """
        if not set(self.loss_scale_dict) == set(label_nc_dict) == set(label_weight_nc_dict):
            raise ValueError(
                "label_nc_dict and label_weight_nc_dict must have the keys of loss_scale_dict "
                f"{sorted(self.loss_scale_dict)}."
            )
        logits = self.predict(token_value_nc_dict, token_mask_nc_dict, prompt_mask_nc)
        keys = sorted(self.loss_scale_dict)
        sums, weights = [], []
        for key in keys:
            logits_nck = logits[key]
            labels = label_nc_dict[key].long()
            if labels.numel() and (int(labels.max()) >= logits_nck.shape[-1] or int(labels.min()) < 0):
                raise ValueError(f"Labels of {key!r} are outside [0, {logits_nck.shape[-1]}).")
            ce = F.cross_entropy(logits_nck.reshape(-1, logits_nck.shape[-1]), labels.reshape(-1), reduction="none")
            weight = label_weight_nc_dict[key].reshape(-1).to(ce.dtype)
            sums.append((ce * weight).sum())
            weights.append(weight.sum().detach())
        totals = torch.stack(weights)
        if torch.is_grad_enabled():
            all_reduce_sum(totals)
            size = world()[1]
        else:
            size = 1
        out: dict[str, torch.Tensor] = {}
        loss = logits[keys[0]].sum() * 0.0
        for key, total, total_weight in zip(keys, sums, totals, strict=True):
            # under DDP: this process's share of the global weighted mean, times the world size, so that
            # the mean over processes (what DDP averages and sync_dist logs) is the global mean
            term = total * size / total_weight.clamp(min=1e-12)
            out[f"loss_{key}"] = term.detach()
            loss = loss + self.loss_scale_dict[key] * term
        out["loss"] = loss
        return out

    @staticmethod
    def expected_value(logits_nck: torch.Tensor) -> torch.Tensor:
        """The mean of the predicted categorical distribution over ``0..k-1`` (e.g. the expected count)."""
        probs = torch.softmax(logits_nck, dim=-1)
        return probs @ torch.arange(logits_nck.shape[-1], dtype=probs.dtype, device=probs.device)

    def extra_repr(self) -> str:
        return (
            f"d_model={self.d_model}, d_ffn={self.d_ffn}, n_heads={self.n_heads}, n_blocks={self.n_blocks}, "
            f"width_mult={self.width_mult:g}, heads={sorted(self.loss_scale_dict)}"
        )
