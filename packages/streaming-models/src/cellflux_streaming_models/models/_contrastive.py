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


def _gather_rows(z: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Every process's rows of ``z`` in rank order, with gradients to the local rows.

    Processes may hold different numbers of rows (``sizes``): each pads its rows to the largest
    count, the padded blocks are gathered (:func:`torch.distributed.nn.functional.all_gather`, whose
    backward sums every process's gradient of this process's block) and the padding is dropped.
    """
    from torch.distributed.nn.functional import all_gather

    largest = max(sizes)
    padded = torch.cat([z, z.new_zeros(largest - z.shape[0], *z.shape[1:])]) if largest > z.shape[0] else z
    return torch.cat([block[:n] for block, n in zip(all_gather(padded), sizes, strict=True)])


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float, gather: bool = True) -> torch.Tensor:
    """Normalised temperature-scaled cross-entropy of paired, L2-normalised embeddings.

    Each of the ``2n`` embeddings must pick its partner among the other ``2n - 1`` by cosine
    similarity divided by ``temperature``; the loss is the mean cross-entropy. Under
    ``torch.distributed`` (and ``gather``) the candidates are every process's embeddings (gathered
    with gradients; processes may hold different numbers of cells), so for the same embeddings the
    loss of a process's cells, weighted by its number of cells, sums over the processes to the loss
    of the concatenated batch (with equal batches: DDP's average of the losses and of the gradients
    is that of the concatenated batch). With one cell (``n == 1``) on a single process the partner is
    the only candidate and the loss is 0.

    Parameters
    ----------
    z1, z2
        The two views' embeddings, cells x dimensions, row ``i`` of each from the same cell.
    temperature
        Divides the cosine similarities.
    gather
        Under ``torch.distributed``, use every process's embeddings as candidates.

    Returns
    -------
    The scalar loss of this process's ``2n`` embeddings.
    """
    n = z1.shape[0]
    if z2.shape != z1.shape or n < 1:
        raise ValueError(f"The two views must have the same non-empty shape; got {tuple(z1.shape)}, {tuple(z2.shape)}.")
    rank, size = world()
    if gather and size > 1:
        import torch.distributed as dist

        counts = [torch.zeros(1, dtype=torch.long, device=z1.device) for _ in range(size)]
        dist.all_gather(counts, torch.tensor([n], dtype=torch.long, device=z1.device))
        sizes = [int(c) for c in counts]
        z1_all, z2_all = _gather_rows(z1, sizes), _gather_rows(z2, sizes)
        offset, total = sum(sizes[:rank]), sum(sizes)
    else:
        z1_all, z2_all, offset, total = z1, z2, 0, n
    logits = torch.cat([z1, z2]) @ torch.cat([z1_all, z2_all]).T / temperature
    own = torch.arange(n, device=z1.device) + offset  # each local cell's column among the candidates
    rows = torch.arange(2 * n, device=z1.device)
    self_col = torch.cat([own, own + total])
    partner = torch.cat([own + total, own])
    logits = logits.index_put((rows, self_col), torch.tensor(float("-inf"), dtype=logits.dtype, device=logits.device))
    return F.cross_entropy(logits, partner)


class ContrastiveMLP(StreamingModel):
    """Embed cells with an MLP trained so that two augmented views of a cell land together.

    Train on batches whose first and second halves are two views of the same cells: the
    ``Duplicate`` transform followed by random augmentations (``BinomialResample``,
    ``GaussianNoise``, ``RandomGeneDropout``) produces them. These transforms also act in
    :class:`~cellflux_streaming_models.lightning.StreamingModule`'s validation, so ``val_loss`` is
    the same two-view loss on the validation cells (as in cellarium-ml, whose pipeline duplicates
    and augments validation batches too); prediction embeds the cells unaugmented. Hidden layers
    are linear, batch norm and ReLU; the output is L2-normalised. A batch of one cell (two rows) is
    valid: its loss is 0 on one process.

    Under DDP the NT-Xent loss gathers every process's embeddings (see :func:`nt_xent`), but the
    ``BatchNorm1d`` layers normalise each process's batch with its own statistics (as in
    cellarium-ml), so training on ``W`` processes is not exactly one process on the ``W`` times
    larger batch. On GPUs, ``Trainer(sync_batchnorm=True)`` makes them use the global batch's
    statistics (torch's ``SyncBatchNorm`` does not run on CPU).

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
        if x_ng.shape[0] % 2 or x_ng.shape[0] < 2:
            raise ValueError(
                f"ContrastiveMLP needs a batch of two views of the same cells (an even, non-zero number of "
                f"rows: the first half and the second half), got {x_ng.shape[0]} rows; the Duplicate "
                "transform (before the augmentations) makes them."
            )
        z1, z2 = torch.chunk(self.embed(x_ng), 2)
        return {"loss": nt_xent(z1, z2, self.temperature)}

    @torch.no_grad()
    def predict(self, x_ng: torch.Tensor, var_names_g: np.ndarray) -> dict[str, torch.Tensor | np.ndarray]:
        """Embeddings ``{"x_ng": cells x embed_dim, "var_names_g": feature_0...}``."""
        self.check_batch(x_ng, var_names_g)
        z = self.embed(x_ng)
        return {"x_ng": z, "var_names_g": np.array([f"feature_{i}" for i in range(self.embed_dim)], dtype=object)}
