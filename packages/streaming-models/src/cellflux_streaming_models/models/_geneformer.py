"""Geneformer: a BERT over each cell's genes in rank-value order, pre-trained by masked-gene prediction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from .._dist import all_reduce_sum, world
from ._base import StreamingModel
from ._tokenizers import (
    MASK_TOKEN,
    N_SPECIAL_TOKENS,
    PAD_TOKEN,
    apply_feature_map,
    cell_uniforms,
    perturb_expression,
    rank_value_tokens,
)

__all__ = ["Geneformer"]


class Geneformer(StreamingModel):
    """Geneformer (Theodoris et al., Nature 2023): masked-gene pre-training on rank-value encoded cells.

    A cell is the sequence of its expressed genes sorted by expression, highest first (its
    *rank-value encoding*; divide the counts by each gene's non-zero median over the corpus first,
    e.g. with ``gene_median_g``, so that ranks favour genes expressed above their usual level). The
    sequence is cut at ``max_position_embeddings`` genes. Tokens are gene position + 2 (0 pads, 1
    masks). A Hugging Face ``transformers`` ``BertForMaskedLM``, built from a configuration (no
    download), learns to predict masked genes: ``mlm_probability`` of each cell's tokens are
    chosen, 80% of them replaced by the mask token, 10% by a random gene, 10% kept.

    The masks of a cell are drawn from (``seed``, epoch, cell index), so they do not depend on the
    batch or process the cell lands in; the loss is the cross-entropy summed over the masked tokens
    divided by their number over all DDP processes, so two processes train like one process on the
    batches put together (exactly so without dropout).

    Parameters
    ----------
    var_names_g
        The genes (the vocabulary).
    hidden_size, num_hidden_layers, num_attention_heads, intermediate_size, hidden_act
        Width, depth, heads, feed-forward width and activation of the BERT encoder.
    hidden_dropout_prob, attention_probs_dropout_prob
        Dropout of hidden states and attention probabilities.
    max_position_embeddings
        Longest sequence (genes per cell kept).
    type_vocab_size, initializer_range, position_embedding_type, layer_norm_eps
        As in ``transformers.BertConfig``.
    mlm_probability
        Fraction of each cell's tokens to predict.
    gene_median_g
        Optional per-gene scale: expression is divided by it before ranking (Geneformer's
        non-zero median normalisation).
    seed
        Seed of the initial weights and of the masks.
    lr
        Learning rate of :meth:`default_optimizer` (AdamW).

    Attributes
    ----------
    bert
        The ``transformers.BertForMaskedLM``.
    """

    trainable = True
    n_epochs = None

    def __init__(
        self,
        var_names_g: Sequence[str],
        hidden_size: int = 256,
        num_hidden_layers: int = 6,
        num_attention_heads: int = 4,
        intermediate_size: int = 512,
        hidden_act: str = "relu",
        hidden_dropout_prob: float = 0.02,
        attention_probs_dropout_prob: float = 0.02,
        max_position_embeddings: int = 2048,
        type_vocab_size: int = 2,
        initializer_range: float = 0.02,
        position_embedding_type: str = "absolute",
        layer_norm_eps: float = 1e-12,
        mlm_probability: float = 0.15,
        *,
        gene_median_g: Sequence[float] | np.ndarray | None = None,
        seed: int = 0,
        lr: float = 1e-3,
    ) -> None:
        super().__init__(var_names_g)
        try:
            from transformers import BertConfig, BertForMaskedLM
        except ImportError as error:  # pragma: no cover - exercised without the extra
            raise ImportError(
                "Geneformer needs Hugging Face transformers: pip install 'cellflux-streaming-models[geneformer]'."
            ) from error
        if hidden_size % num_attention_heads:
            raise ValueError(
                f"hidden_size ({hidden_size}) must be divisible by num_attention_heads ({num_attention_heads})."
            )
        if not 0 < mlm_probability < 1:
            raise ValueError(f"mlm_probability must be in (0, 1), got {mlm_probability}.")
        if max_position_embeddings < 1:
            raise ValueError("max_position_embeddings must be positive.")
        self.mlm_probability = float(mlm_probability)
        self.seed = int(seed)
        self.lr = lr
        config = BertConfig(
            vocab_size=self.n_vars + N_SPECIAL_TOKENS,
            hidden_size=hidden_size,
            num_hidden_layers=num_hidden_layers,
            num_attention_heads=num_attention_heads,
            intermediate_size=intermediate_size,
            hidden_act=hidden_act,
            hidden_dropout_prob=hidden_dropout_prob,
            attention_probs_dropout_prob=attention_probs_dropout_prob,
            max_position_embeddings=max_position_embeddings,
            type_vocab_size=type_vocab_size,
            initializer_range=initializer_range,
            position_embedding_type=position_embedding_type,
            layer_norm_eps=layer_norm_eps,
            pad_token_id=0,
        )
        # the eager implementation returns attention probabilities (predict's output_attentions)
        config._attn_implementation = "eager"
        self.config = config
        state = torch.random.get_rng_state()
        torch.manual_seed(self.seed)
        try:
            self.bert = BertForMaskedLM(config)
        finally:
            torch.random.set_rng_state(state)
        if gene_median_g is None:
            median = torch.ones(self.n_vars)
        else:
            median = torch.as_tensor(np.asarray(gene_median_g, dtype=np.float64), dtype=torch.float32)
            if median.shape != (self.n_vars,) or not bool((median > 0).all()):
                raise ValueError(f"gene_median_g must hold {self.n_vars} positive values.")
        self.register_buffer("gene_median_g", median)

    def default_optimizer(self, batch_size: int) -> torch.optim.Optimizer:
        """AdamW with learning rate ``lr`` (no weight decay on biases and layer norms)."""
        decay, no_decay = [], []
        for name, param in self.named_parameters():
            (no_decay if name.endswith("bias") or "LayerNorm" in name else decay).append(param)
        groups = [{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=self.lr)

    # -- tokens --------------------------------------------------------------------------------------
    def tokenize(self, x_ng: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rank-value token ids and attention mask (``(cells, length)``) of a batch."""
        return rank_value_tokens(x_ng / self.gene_median_g.to(x_ng.dtype), self.config.max_position_embeddings)

    def tokenize_with_perturbations(
        self,
        x_ng: torch.Tensor,
        feature_activation: Sequence[str] | None = None,
        feature_deletion: Sequence[str] | None = None,
        feature_map: Mapping[str, int] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens after in-silico perturbations (see :meth:`predict`); ``x_ng`` is not modified."""
        x_ng = perturb_expression(
            x_ng / self.gene_median_g.to(x_ng.dtype), self.var_names_g, feature_activation, feature_deletion
        )
        input_ids, attention_mask = rank_value_tokens(x_ng, self.config.max_position_embeddings)
        if feature_map:
            input_ids = apply_feature_map(input_ids, self.var_names_g, feature_map)
            # a gene mapped to the pad token is padding: not attended to, not in the cell's embedding
            attention_mask = attention_mask & (input_ids != PAD_TOKEN)
        return input_ids, attention_mask

    def _mask(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, cell_index_n: torch.Tensor | None):
        n, length = input_ids.shape
        if cell_index_n is None:
            u_choose, u_how, u_gene = torch.rand(3, n, length, device=input_ids.device)
        else:
            # three streams per epoch; a position's draw does not depend on the batch's sequence length
            u_choose, u_how, u_gene = (
                cell_uniforms(
                    cell_index_n, length, seed=self.seed, stream=3 * self.current_epoch + k, device=input_ids.device
                )
                for k in range(3)
            )
        chosen = (u_choose < self.mlm_probability) & attention_mask
        labels = torch.where(chosen, input_ids, torch.full_like(input_ids, -100))
        replace = chosen & (u_how < 0.8)
        randomise = chosen & ~replace & (u_how < 0.9)
        random_ids = N_SPECIAL_TOKENS + (u_gene * self.n_vars).long().clamp(max=self.n_vars - 1)
        masked = torch.where(replace, torch.full_like(input_ids, MASK_TOKEN), input_ids)
        masked = torch.where(randomise, random_ids, masked)
        return masked, labels

    def forward(
        self, x_ng: torch.Tensor, var_names_g: np.ndarray, cell_index_n: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """The masked-gene loss of a batch (``{"loss": ..., "n_masked": ...}``)."""
        self.check_batch(x_ng, var_names_g)
        input_ids, attention_mask = self.tokenize(x_ng)
        masked_ids, labels = self._mask(input_ids, attention_mask, cell_index_n)
        logits = self.bert(input_ids=masked_ids, attention_mask=attention_mask.long()).logits
        chosen = labels != -100
        ce = torch.nn.functional.cross_entropy(logits[chosen], labels[chosen], reduction="sum")
        count = chosen.sum().to(logits.dtype).reshape(1)
        if torch.is_grad_enabled():
            all_reduce_sum(count)
            size = world()[1]
        else:
            size = 1
        loss = ce * size / count.clamp(min=1).squeeze() + logits.sum() * 0.0
        return {"loss": loss, "n_masked": chosen.sum().detach().to(torch.float32)}

    # -- inference ------------------------------------------------------------------------------------
    def predict(
        self,
        x_ng: torch.Tensor,
        var_names_g: np.ndarray,
        output_hidden_states: bool = True,
        output_attentions: bool = True,
        output_input_ids: bool = True,
        output_attention_mask: bool = True,
        feature_activation: Sequence[str] | None = None,
        feature_deletion: Sequence[str] | None = None,
        feature_map: Mapping[str, int] | None = None,
    ) -> dict[str, Any]:
        """Run cells through the model, optionally perturbed in silico.

        Three perturbations, as in Geneformer's in-silico perturbation analyses:

        - ``feature_deletion``: the genes are removed from the cells (set to zero before ranking),
          so the following genes move up;
        - ``feature_activation``: the genes are put at the top of the ranking, in the listed order;
        - ``feature_map``: after ranking, a gene's token is replaced by another token id (``1``
          masks it, ``0`` pads it: the position is then left out of the attention and of the
          embedding, like the padding after a cell's last expressed gene).

        Parameters
        ----------
        x_ng, var_names_g
            Expression and its genes.
        output_hidden_states, output_attentions
            Return every layer's hidden states / attention probabilities.
        output_input_ids, output_attention_mask
            Return the (perturbed) token ids and mask.
        feature_activation, feature_deletion, feature_map
            In-silico perturbations.

        Returns
        -------
        ``logits`` (cells x length x vocabulary), ``x_ng`` (cell embeddings: the mean of the last
        hidden states over the cell's tokens), ``var_names_g`` (their column names), and as asked
        ``hidden_states`` (tuple of ``num_hidden_layers + 1`` tensors, cells x length x hidden),
        ``attentions`` (tuple of cells x heads x length x length), ``input_ids``, ``attention_mask``.
        """
        self.check_batch(x_ng, var_names_g)
        input_ids, attention_mask = self.tokenize_with_perturbations(
            x_ng, feature_activation=feature_activation, feature_deletion=feature_deletion, feature_map=feature_map
        )
        with torch.no_grad():
            output = self.bert(
                input_ids=input_ids,
                attention_mask=attention_mask.long(),
                output_hidden_states=True,
                output_attentions=output_attentions,
            )
        last = output.hidden_states[-1]
        weights = attention_mask.to(last.dtype).unsqueeze(-1)
        embedding = (last * weights).sum(1) / weights.sum(1).clamp(min=1)
        result: dict[str, Any] = {
            "logits": output.logits,
            "x_ng": embedding,
            "var_names_g": np.array([f"embedding_{i}" for i in range(last.shape[-1])], dtype=object),
        }
        if output_hidden_states:
            result["hidden_states"] = output.hidden_states
        if output_attentions:
            result["attentions"] = output.attentions
        if output_input_ids:
            result["input_ids"] = input_ids
        if output_attention_mask:
            result["attention_mask"] = attention_mask
        return result
