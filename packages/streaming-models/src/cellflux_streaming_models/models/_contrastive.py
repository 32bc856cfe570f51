"""A multilayer perceptron trained contrastively (SimCLR's NT-Xent loss on two augmented views)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .._dist import world
from ._base import StreamingModel

__all__ = ["ContrastiveMLP", "nt_xent"]


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float, gather: bool = True) -> torch.Tensor:
    """Normalised temperature-scaled cross-entropy of paired, L2-normalised embeddings.

    Each of the ``2n`` embeddings must pick its partner among the other ``2n - 1`` by cosine
    similarity divided by ``temperature``; the loss is the mean cross-entropy. Under
    ``torch.distributed`` (and ``gather``) the candidates are every process's embeddings (gathered
    with gradients), so the loss of a process's cells, averaged by DDP, is the loss of the global batch.
    """
    n = z1.shape[0]
    if z2.shape != z1.shape or n < 1:
        raise ValueError(f"The two views must have the same non-empty shape; got {tuple(z1.shape)}, {tuple(z2.shape)}.")
    rank, size = world()
    if gather and size > 1:
        from torch.distributed.nn.functional import all_gather

        z1_all, z2_all = torch.cat(all_gather(z1)), torch.cat(all_gather(z2))
        if z1_all.shape[0] != n * size:
            raise ValueError("Every process needs the same number of cells per batch for the gathered NT-Xent loss.")
    else:
        z1_all, z2_all, rank, size = z1, z2, 0, 1
    total = n * size
    logits = torch.cat([z1, z2]) @ torch.cat([z1_all, z2_all]).T / temperature
    own = torch.arange(n, device=z1.device) + rank * n  # each local cell's column among the candidates
    rows = torch.arange(2 * n, device=z1.device)
    self_col = torch.cat([own, own + total])
    partner = torch.cat([own + total, own])
    logits = logits.index_put((rows, self_col), torch.tensor(float("-inf"), dtype=logits.dtype, device=logits.device))
    return F.cross_entropy(logits, partner)


class ContrastiveMLP(StreamingModel):
    """Embed cells with an MLP trained so that two augmented views of a cell land together.

    Train on batches whose first and second halves are two views of the same cells: the
    ``Duplicate`` transform followed by random augmentations (``BinomialResample``,
    ``GaussianNoise``, ``RandomGeneDropout``) produces them. Hidden layers are
    linear, batch norm and ReLU; the output is L2-normalised.

    Parameters
    ----------
    var_names_g
        The genes of the data.
    n_obs
        Input width, as in cellarium-ml (the number of genes; default ``len(var_names_g)``).
    hidden_size
        Widths of the hidden layers.
    embed_dim
        Embedding dimensions.
    temperature
        NT-Xent temperature.
    lr
        Adam's learning rate in :meth:`default_optimizer`.
    seed
        Seed of the initial weights.
    """

    trainable = True
    n_epochs = None
    n_obs_is_cells = False  # the command line must not fill n_obs with the number of cells

    def __init__(
        self,
        var_names_g: Sequence[str],
        n_obs: int | None = None,
        hidden_size: Sequence[int] = (128, 128),
        embed_dim: int = 32,
        temperature: float = 1.0,
        *,
        lr: float = 1e-3,
        seed: int = 0,
    ) -> None:
        super().__init__(var_names_g)
        if n_obs is not None and n_obs != self.n_vars:
            raise ValueError(f"n_obs (the input width) is {n_obs} but var_names_g has {self.n_vars} genes.")
        hidden = [int(h) for h in hidden_size]
        if not hidden or min(hidden) < 1 or embed_dim < 1:
            raise ValueError("hidden_size must list positive widths and embed_dim must be positive.")
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}.")
        self.temperature = float(temperature)
        self.embed_dim = int(embed_dim)
        self.lr, self.seed = lr, seed
        layers: list[nn.Module] = []
        for a, b in zip([self.n_vars, *hidden[:-1]], hidden, strict=True):
            layers += [nn.Linear(a, b), nn.BatchNorm1d(b), nn.ReLU()]
        layers.append(nn.Linear(hidden[-1], self.embed_dim))
        self.layers = nn.Sequential(*layers)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-uniform weights from ``seed``, zero biases, unit batch-norm scales."""
        generator = torch.Generator().manual_seed(self.seed)
        with torch.no_grad():
            for layer in self.layers:
                if isinstance(layer, nn.Linear):
                    bound = np.sqrt(6.0 / layer.in_features)
                    layer.weight.copy_(torch.rand(layer.weight.shape, generator=generator) * 2 * bound - bound)
                    layer.bias.zero_()
                elif isinstance(layer, nn.BatchNorm1d):
                    layer.reset_parameters()

    def default_optimizer(self, batch_size: int) -> torch.optim.Optimizer:
        """Adam with learning rate ``lr``."""
        return torch.optim.Adam(self.parameters(), lr=self.lr)

    def embed(self, x_ng: torch.Tensor) -> torch.Tensor:
        """L2-normalised embeddings."""
        return F.normalize(self.layers(torch.as_tensor(x_ng, dtype=self.layers[0].weight.dtype)), dim=-1)

    def forward(self, x_ng: torch.Tensor, var_names_g: np.ndarray) -> dict[str, torch.Tensor]:
        """The NT-Xent loss of a batch whose halves are two views of the same cells."""
        self.check_batch(x_ng, var_names_g)
        if x_ng.shape[0] % 2 or x_ng.shape[0] < 4:
            raise ValueError(
                f"ContrastiveMLP needs an even batch of two views (>= 4 rows), got {x_ng.shape[0]} rows: "
                "add the Duplicate transform before the augmentations."
            )
        z1, z2 = torch.chunk(self.embed(x_ng), 2)
        return {"loss": nt_xent(z1, z2, self.temperature)}

    @torch.no_grad()
    def predict(self, x_ng: torch.Tensor, var_names_g: np.ndarray) -> dict[str, torch.Tensor | np.ndarray]:
        """Embeddings ``{"x_ng": cells x embed_dim, "var_names_g": feature_0...}``."""
        self.check_batch(x_ng, var_names_g)
        z = self.embed(x_ng)
        return {"x_ng": z, "var_names_g": np.array([f"feature_{i}" for i in range(self.embed_dim)], dtype=object)}
