"""CellariumGPT's building blocks: masked multi-head attention, pre-norm blocks, embeddings, readouts, muP helpers."""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "ATTENTION_BACKENDS",
    "LRGroup",
    "MultiHeadAttention",
    "Readout",
    "TokenEmbedding",
    "Transformer",
    "prompt_diagonal_mask",
    "trunc_normal",
]

ATTENTION_BACKENDS = ("torch", "math", "mem_efficient", "flex")


def trunc_normal(weight: torch.Tensor, std: float) -> None:
    """Normal initialisation with standard deviation ``std`` truncated at two standard deviations."""
    nn.init.trunc_normal_(weight, mean=0.0, std=std, a=-2 * std, b=2 * std)


@dataclass
class LRGroup:
    """Parameters (glob patterns over their names) whose learning rate is multiplied by ``scale`` (muP)."""

    patterns: tuple[str, ...]
    scale: float = 1.0

    def matches(self, name: str) -> bool:
        """Whether a parameter name belongs to the group."""
        return any(fnmatch.fnmatchcase(name, p) for p in self.patterns)


def prompt_diagonal_mask(prompt_mask_nc: torch.Tensor) -> torch.Tensor:
    """Which tokens each token attends to: every prompt token, and itself (``(n, c, c)`` booleans).

    Query tokens therefore see the prompt but not each other, so each query is predicted from the
    prompt alone, independently of the other queries.
    """
    c = prompt_mask_nc.shape[1]
    eye = torch.eye(c, dtype=torch.bool, device=prompt_mask_nc.device)
    return prompt_mask_nc[:, None, :].bool() | eye


class MultiHeadAttention(nn.Module):
    """Multi-head attention with muP's ``1 / d_head`` logit scaling and a boolean attention mask."""

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        use_bias: bool,
        dropout_p: float,
        attention_logits_scale: float,
        attention_backend: str,
        attention_softmax_fp32: bool,
    ) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads}).")
        if attention_backend not in ATTENTION_BACKENDS:
            raise ValueError(f"attention_backend must be one of {ATTENTION_BACKENDS}, got {attention_backend!r}.")
        if attention_backend == "flex" and dropout_p > 0:
            raise ValueError("attention_backend='flex' does not support dropout; set dropout_p=0.")
        self.Wq, self.Wk, self.Wv, self.Wo = (nn.Linear(d_model, d_model, bias=use_bias) for _ in range(4))
        self.n_heads = n_heads
        self.dropout_p = dropout_p
        self.attention_logits_scale = attention_logits_scale
        self.attention_backend = attention_backend
        self.attention_softmax_fp32 = attention_softmax_fp32

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        n, c, d = x.shape
        return x.reshape(n, c, self.n_heads, d // self.n_heads).transpose(1, 2)

    def forward(self, x_ncd: torch.Tensor, mask_ncc: torch.Tensor) -> torch.Tensor:
        """Attend within each cell's tokens where ``mask_ncc`` is true."""
        q, k, v = self._split(self.Wq(x_ncd)), self._split(self.Wk(x_ncd)), self._split(self.Wv(x_ncd))
        # muP: 1/d_head instead of 1/sqrt(d_head)
        scale = self.attention_logits_scale / q.shape[-1]
        dropout = self.dropout_p if self.training else 0.0
        if self.attention_backend == "torch":
            logits = (q @ k.transpose(-1, -2)) * scale
            logits = logits.masked_fill(~mask_ncc[:, None], float("-inf"))
            if self.attention_softmax_fp32 and logits.dtype != torch.float32:
                weights = torch.softmax(logits.float(), dim=-1).to(logits.dtype)
            else:
                weights = torch.softmax(logits, dim=-1)
            out = F.dropout(weights, dropout, training=self.training) @ v
        elif self.attention_backend == "flex":
            from torch.nn.attention.flex_attention import create_block_mask, flex_attention

            n, _, c, _ = q.shape
            mask = mask_ncc

            def mask_mod(b, h, q_idx, kv_idx):
                return mask[b, q_idx, kv_idx]

            block_mask = create_block_mask(mask_mod, B=n, H=None, Q_LEN=c, KV_LEN=c, device=q.device)
            out = flex_attention(q, k, v, block_mask=block_mask, scale=scale)
        else:
            from torch.nn.attention import SDPBackend, sdpa_kernel

            # the memory-efficient kernel falls back to the math kernel where it is unavailable (CPU)
            backends = [SDPBackend.MATH]
            if self.attention_backend == "mem_efficient":
                backends.insert(0, SDPBackend.EFFICIENT_ATTENTION)
            with sdpa_kernel(backends):
                out = F.scaled_dot_product_attention(
                    q, k, v, attn_mask=mask_ncc[:, None], dropout_p=dropout, scale=scale
                )
        n, h, c, dk = out.shape
        return self.Wo(out.transpose(1, 2).reshape(n, c, h * dk))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attention(ln(x))``, then ``x + ffn(ln(x))``."""

    def __init__(self, d_model: int, d_ffn: int, n_heads: int, use_bias: bool, dropout_p: float, **attention) -> None:
        super().__init__()
        self.attention = MultiHeadAttention(d_model, n_heads, use_bias, dropout_p, **attention)
        self.ln1 = nn.LayerNorm(d_model, bias=use_bias)
        self.ln2 = nn.LayerNorm(d_model, bias=use_bias)
        self.dense1 = nn.Linear(d_model, d_ffn, bias=use_bias)
        self.dense2 = nn.Linear(d_ffn, d_model, bias=use_bias)
        self.dropout = nn.Dropout(dropout_p)

    def forward(self, x_ncd: torch.Tensor, mask_ncc: torch.Tensor) -> torch.Tensor:
        x_ncd = x_ncd + self.dropout(self.attention(self.ln1(x_ncd), mask_ncc))
        return x_ncd + self.dropout(self.dense2(F.gelu(self.dense1(self.ln2(x_ncd)))))


class Transformer(nn.Module):
    """A stack of blocks and a final layer norm."""

    def __init__(self, n_blocks: int, d_model: int, use_bias: bool, **block) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([Block(d_model=d_model, use_bias=use_bias, **block) for _ in range(n_blocks)])
        self.ln = nn.LayerNorm(d_model, bias=use_bias)

    def forward(self, x_ncd: torch.Tensor, mask_ncc: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x_ncd = block(x_ncd, mask_ncc)
        return self.ln(x_ncd)


class TokenEmbedding(nn.Module):
    """Sum of the token embeddings present at each position: lookup tables and linear maps of scalars."""

    def __init__(self, categorical_sizes: Mapping[str, int], continuous: Sequence[str], d_model: int) -> None:
        super().__init__()
        self.embedding = nn.ModuleDict({k: nn.Embedding(v, d_model) for k, v in categorical_sizes.items()})
        self.continuous = nn.ModuleDict({k: nn.Linear(1, d_model, bias=False) for k in continuous})

    def forward(self, values: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor]) -> torch.Tensor:
        unknown = set(values) - set(self.embedding) - set(self.continuous)
        if unknown:
            raise ValueError(f"Tokens {sorted(unknown)} have no embedding (known: {sorted(self.embedding)}).")
        total = None
        for key, value in values.items():
            if key in self.embedding:
                emb = self.embedding[key](value.long())
            else:
                emb = self.continuous[key](value.to(self.continuous[key].weight.dtype).unsqueeze(-1))
            emb = emb * masks[key].unsqueeze(-1).to(emb.dtype)
            total = emb if total is None else total + emb
        return total


class Readout(nn.Module):
    """One linear head per predicted token type, logits multiplied by ``output_logits_scale``."""

    def __init__(self, sizes: Mapping[str, int], d_model: int, use_bias: bool, output_logits_scale: float) -> None:
        super().__init__()
        self.heads = nn.ModuleDict({k: nn.Linear(d_model, v, bias=use_bias) for k, v in sizes.items()})
        self.output_logits_scale = output_logits_scale

    def forward(self, x_ncd: torch.Tensor) -> dict[str, torch.Tensor]:
        return {k: self.output_logits_scale * head(x_ncd) for k, head in self.heads.items()}


def depth_scale(n_blocks: int) -> float:
    """GPT-2's ``1 / sqrt(2 * n_blocks)`` factor for the residual output projections."""
    return 1.0 / math.sqrt(2 * n_blocks)
