"""Tokenisers of the transformer models: Geneformer's rank-value encoding, CellariumGPT's prompt/query split.

Random draws are keyed by cell (``cell_index_n``) rather than taken from a global generator, so a
cell gets the same draws whichever batch, process or DataLoader worker it lands in: training on two
DDP processes then sees exactly the masks one process would see.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

__all__ = ["CellariumGPTTokenizer", "apply_feature_map", "cell_uniforms", "perturb_expression", "rank_value_tokens"]

_MASK32 = 0xFFFFFFFF
PAD_TOKEN = 0
MASK_TOKEN = 1
N_SPECIAL_TOKENS = 2


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (xor-shift-multiply rounds) of non-negative int64 values below 2**32."""
    for _ in range(2):
        x = ((x >> 16) ^ x) * 0x45D9F3B & _MASK32
    return (x >> 16) ^ x


def cell_uniforms(
    cell_index_n: torch.Tensor | None, n_columns: int, *, seed: int, stream: int, device: torch.device | None = None
) -> torch.Tensor:
    """Uniform draws in ``[0, 1)`` (cells x ``n_columns``) determined by (seed, stream, cell, column).

    Parameters
    ----------
    cell_index_n
        Global cell indices; ``None`` draws from torch's global generator instead.
    n_columns
        Draws per cell.
    seed
        The user's seed.
    stream
        Distinguishes independent draws (e.g. the epoch and the purpose).
    device
        Device of the result.

    Returns
    -------
    A float32 tensor of shape ``(len(cell_index_n), n_columns)``.
    """
    if cell_index_n is None:
        raise ValueError("cell_uniforms needs cell indices; use torch.rand without them.")
    cells = torch.as_tensor(cell_index_n, device=device).long().reshape(-1, 1) & _MASK32
    cols = torch.arange(n_columns, device=cells.device, dtype=torch.long).reshape(1, -1)
    key = _mix32(_mix32(torch.tensor((seed * 0x9E3779B1 + stream) & _MASK32, device=cells.device)) ^ cells)
    x = _mix32(_mix32(key ^ (cols * 0x85EBCA6B & _MASK32)))
    # 24 bits are exactly representable in float32
    return (x >> 8).to(torch.float32) / float(1 << 24)


# -- Geneformer --------------------------------------------------------------------------------------
def _gene_positions(var_names_g: np.ndarray, genes: Sequence[str], what: str) -> np.ndarray:
    lookup = {name: i for i, name in enumerate(var_names_g)}
    missing = [g for g in genes if g not in lookup]
    if missing:
        raise ValueError(f"{what} names genes that are not in var_names_g: {missing[:5]}.")
    return np.array([lookup[g] for g in genes], dtype=np.int64)


def perturb_expression(
    x_ng: torch.Tensor,
    var_names_g: np.ndarray,
    feature_activation: Sequence[str] | None = None,
    feature_deletion: Sequence[str] | None = None,
) -> torch.Tensor:
    """Geneformer's in-silico perturbations of the expression before ranking (a new tensor).

    ``feature_deletion`` zeroes genes (they leave the cell's sequence and the next genes move up);
    ``feature_activation`` puts genes above every other gene, in the listed order (the first one
    ranks first).
    """
    x_ng = x_ng.clone()
    if feature_deletion:
        x_ng[:, torch.from_numpy(_gene_positions(var_names_g, feature_deletion, "feature_deletion"))] = 0
    if feature_activation:
        if len(set(feature_activation)) != len(feature_activation):
            raise ValueError("feature_activation lists a gene twice.")
        positions = _gene_positions(var_names_g, feature_activation, "feature_activation")
        top = x_ng.max() if x_ng.numel() else torch.tensor(0.0)
        for rank, g in enumerate(positions):
            x_ng[:, int(g)] = top + len(positions) - rank
    return x_ng


def rank_value_tokens(x_ng: torch.Tensor, max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rank-value encoding: each cell's expressed genes as token ids, most expressed first.

    Token ids are gene position + 2 (0 pads, 1 masks). Ties keep gene order (a stable sort), genes
    with zero expression become padding, and the sequence is cut to the longest cell's number of
    expressed genes (at most ``max_length``). NaN, infinite and negative values are a ``ValueError``.

    Returns
    -------
    ``(input_ids_nl, attention_mask_nl)``: long token ids and a boolean mask of real tokens.
    """
    if x_ng.ndim != 2:
        raise ValueError(f"x_ng must be a matrix (cells x genes), got shape {tuple(x_ng.shape)}.")
    if x_ng.numel() and not bool(torch.isfinite(x_ng).all()):
        raise ValueError("Rank-value tokenisation needs finite expression values, got NaN or infinite values.")
    if x_ng.numel() and bool((x_ng < 0).any()):
        raise ValueError("Rank-value tokenisation needs non-negative expression values.")
    order_ng = torch.sort(x_ng, dim=1, descending=True, stable=True).indices
    length = int((x_ng > 0).sum(1).max()) if x_ng.numel() else 0
    length = max(1, min(length, max_length))
    order_nl = order_ng[:, :length]
    values_nl = torch.gather(x_ng, 1, order_nl)
    attention_mask = values_nl > 0
    input_ids = torch.where(attention_mask, order_nl + N_SPECIAL_TOKENS, torch.full_like(order_nl, PAD_TOKEN))
    return input_ids, attention_mask


def apply_feature_map(input_ids: torch.Tensor, var_names_g: np.ndarray, feature_map: Mapping[str, int]) -> torch.Tensor:
    """Replace the tokens of genes by other token ids after ranking (e.g. ``{gene: 1}`` masks it).

    ``{gene: 0}`` gives the pad token: clear the attention mask where the result is 0, as
    :meth:`Geneformer.tokenize_with_perturbations` does.
    """
    out = input_ids.clone()
    vocab = len(var_names_g) + N_SPECIAL_TOKENS
    genes = list(feature_map)
    for g, position in zip(genes, _gene_positions(var_names_g, genes, "feature_map"), strict=True):
        target = int(feature_map[g])
        if not 0 <= target < vocab:
            raise ValueError(f"feature_map sends {g!r} to token {target}, outside [0, {vocab}).")
        out[input_ids == int(position) + N_SPECIAL_TOKENS] = target
    return out


# -- CellariumGPT --------------------------------------------------------------------------------------
class CellariumGPTTokenizer(nn.Module):
    """Turn count batches into CellariumGPT's tokens: gene tokens, metadata tokens, prompt and query masks.

    Each cell becomes ``context_len`` tokens: ``context_len - m`` genes (a random subset in random
    order when ``context_len - m`` is less than the number of genes) followed by the ``m``
    metadata tokens. A random prefix of the genes is the *prompt* (their values are shown); the
    rest are *queries* (values hidden, to be predicted as counts clipped to ``gene_value_vocab -
    1``). Each metadata token is, at random, shown or queried (predicted from the rest).

    Use it as the transform in front of :class:`~cellflux_streaming_models.models.CellariumGPT`. Draws
    are keyed by cell index and ``seed``: a cell keeps its split in every epoch (static masking,
    as in the original BERT), and DDP sees the draws one process would.

    Parameters
    ----------
    context_len
        Tokens per cell (genes plus metadata).
    gene_value_vocab
        Count classes of the gene-value head (``categorical_token_size_dict["gene_value"]``).
    metadata_vocab_sizes
        Batch key of each metadata token (integer codes, ``-1`` unmeasured) to its vocabulary size.
    prefix_len
        Fixed number of prompt genes (default: drawn per cell, short prompts favoured).
    metadata_prompt
        Metadata keys always shown (the others always queried); default: drawn per cell.
    seed
        Seed of the draws.
    var_names_g
        The genes the batches must have (default: any; gene ids are column positions).
    """

    def __init__(
        self,
        context_len: int,
        gene_value_vocab: int,
        metadata_vocab_sizes: Mapping[str, int] | None = None,
        prefix_len: int | None = None,
        metadata_prompt: Sequence[str] | None = None,
        seed: int = 0,
        var_names_g: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        self.var_names_g = None if var_names_g is None else np.asarray(var_names_g, dtype=object)
        self.metadata_vocab_sizes = dict(metadata_vocab_sizes or {})
        m = len(self.metadata_vocab_sizes)
        if context_len - m < 1:
            raise ValueError(f"context_len ({context_len}) must exceed the number of metadata tokens ({m}).")
        self.n_gene_tokens = context_len - m
        if prefix_len is not None and not 0 <= prefix_len <= self.n_gene_tokens:
            raise ValueError(f"prefix_len must be in [0, {self.n_gene_tokens}], got {prefix_len}.")
        if gene_value_vocab < 2:
            raise ValueError("gene_value_vocab must be at least 2.")
        unknown = set(metadata_prompt or ()) - set(self.metadata_vocab_sizes)
        if unknown:
            raise ValueError(f"metadata_prompt names keys without a vocabulary: {sorted(unknown)}.")
        self.context_len = context_len
        self.gene_value_vocab = gene_value_vocab
        self.prefix_len = prefix_len
        self.metadata_prompt = None if metadata_prompt is None else list(metadata_prompt)
        self.seed = seed

    def _uniforms(self, cell_index_n: torch.Tensor | None, n: int, k: int, stream: int, device) -> torch.Tensor:
        if cell_index_n is None:
            return torch.rand(n, k, device=device)
        return cell_uniforms(cell_index_n, k, seed=self.seed, stream=stream, device=device)

    def forward(
        self,
        x_ng: torch.Tensor,
        var_names_g: np.ndarray,
        cell_index_n: torch.Tensor | None = None,
        gene_order_nj: torch.Tensor | None = None,
        **metadata: torch.Tensor,
    ) -> dict[str, object]:
        """Tokens, masks, labels and label weights of a batch of counts (the model's ``forward`` arguments).

        Parameters
        ----------
        x_ng, var_names_g
            Counts and their genes.
        cell_index_n
            Global cell indices that key the random draws (default: torch's global generator).
        gene_order_nj
            Genes (column positions) of each cell's gene tokens, in order, instead of a random choice:
            with a fixed ``prefix_len``, the first ``prefix_len`` are the prompt (e.g. for in-silico
            perturbations of chosen genes).
        **metadata
            The codes of each metadata key (``-1``: unmeasured); other batch keys are ignored.
        """
        from ._base import check_var_names

        if self.var_names_g is not None:
            check_var_names(self.var_names_g, var_names_g, x_ng.shape[1])
        missing = [k for k in self.metadata_vocab_sizes if k not in metadata]
        if missing:
            raise KeyError(f"The batch lacks the metadata keys {missing}; map them with data.obs_columns.")
        n, g = x_ng.shape
        device = x_ng.device
        j, m = min(self.n_gene_tokens, g), len(self.metadata_vocab_sizes)
        if self.prefix_len is not None and self.prefix_len > j:
            raise ValueError(f"prefix_len ({self.prefix_len}) exceeds the {j} gene tokens of a cell.")
        # gene choice and order, prompt length
        if gene_order_nj is None:
            order_nj = torch.argsort(self._uniforms(cell_index_n, n, g, 0, device), dim=1)[:, :j]
        else:
            order_nj = torch.as_tensor(gene_order_nj, device=device).long()
            if order_nj.ndim != 2 or order_nj.shape[0] != n or order_nj.shape[1] > g or order_nj.shape[1] < 1:
                raise ValueError(f"gene_order_nj must be (cells, genes per cell <= {g}), got {tuple(order_nj.shape)}.")
            if int(order_nj.min()) < 0 or int(order_nj.max()) >= g:
                raise ValueError(f"gene_order_nj holds positions outside [0, {g}).")
            j = order_nj.shape[1]
            if self.prefix_len is not None and self.prefix_len > j:
                raise ValueError(f"prefix_len ({self.prefix_len}) exceeds the {j} gene tokens of a cell.")
        if self.prefix_len is None:
            # P(prefix = k) proportional to 1/k (k >= 1), as cellarium-ml; 1/10 for an empty prompt
            weights = 1.0 / torch.arange(j, dtype=torch.float64).clamp(min=1)
            weights[0] = 0.1
            cdf = torch.cumsum(weights / weights.sum(), 0).to(torch.float32).to(device)
            u = self._uniforms(cell_index_n, n, 1, 1, device)
            prefix_n = torch.searchsorted(cdf, u.contiguous()).clamp(max=j - 1).reshape(n)
        else:
            prefix_n = torch.full((n,), self.prefix_len, device=device)
        counts_nj = torch.gather(x_ng, 1, order_nj).round().clamp(min=0)
        total_n = x_ng.sum(1)
        prompt_nj = torch.arange(j, device=device) < prefix_n[:, None]
        query_nj = ~prompt_nj
        # metadata: codes, which are shown
        keys = list(self.metadata_vocab_sizes)
        codes_nm = torch.stack([torch.as_tensor(metadata[k], device=device).long() for k in keys], 1) if m else None
        if m:
            for i, k in enumerate(keys):
                if int(codes_nm[:, i].max()) >= self.metadata_vocab_sizes[k]:
                    raise ValueError(f"Metadata {k!r} has codes >= its vocabulary size {self.metadata_vocab_sizes[k]}.")
            measured_nm = codes_nm >= 0
            if self.metadata_prompt is None:
                shown_nm = self._uniforms(cell_index_n, n, m, 2, device) < 0.5
            else:
                shown_nm = torch.tensor([k in self.metadata_prompt for k in keys], device=device).expand(n, m)
            meta_prompt_nm = shown_nm & measured_nm
            meta_query_nm = ~shown_nm & measured_nm
        c = j + m
        gene_rows = torch.zeros(n, c, dtype=torch.bool, device=device)
        gene_rows[:, :j] = True

        def pad(values_nj: torch.Tensor) -> torch.Tensor:
            out = torch.zeros(n, c, dtype=values_nj.dtype, device=device)
            out[:, :j] = values_nj
            return out

        token_value = {
            "gene_id": pad(order_nj),
            "gene_value": pad(torch.log1p(counts_nj) * prompt_nj),
            "gene_query_mask": pad(query_nj.to(torch.float32)),
            "total_mrna_umis": pad(torch.log1p(total_n)[:, None].expand(n, j)),
        }
        token_mask = {key: gene_rows for key in token_value}
        labels = {"gene_value": pad(counts_nj.clamp(max=self.gene_value_vocab - 1).long())}
        label_weights = {"gene_value": pad(query_nj.to(torch.float32))}
        for i, k in enumerate(keys):
            column = torch.zeros(n, c, dtype=torch.long, device=device)
            # a queried token shows the mask token (the last id of its embedding)
            column[:, j + i] = torch.where(
                meta_prompt_nm[:, i], codes_nm[:, i].clamp(min=0), self.metadata_vocab_sizes[k]
            )
            token_value[k] = column
            mask = torch.zeros(n, c, dtype=torch.bool, device=device)
            mask[:, j + i] = True
            token_mask[k] = mask
            label = torch.zeros(n, c, dtype=torch.long, device=device)
            label[:, j + i] = codes_nm[:, i].clamp(min=0)
            labels[k] = label
            weight = torch.zeros(n, c, device=device)
            weight[:, j + i] = meta_query_nm[:, i].to(torch.float32)
            label_weights[k] = weight
        prompt_mask = torch.cat([prompt_nj, meta_prompt_nm], 1) if m else prompt_nj
        return {
            "token_value_nc_dict": token_value,
            "token_mask_nc_dict": token_mask,
            "prompt_mask_nc": prompt_mask,
            "label_nc_dict": labels,
            "label_weight_nc_dict": label_weights,
        }
