"""SOCAM: ontology-aware logistic regression, probabilities propagated from each cell type to its ancestors."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .._dist import all_reduce_sum, world
from ._averaging import TailAverage
from ._base import StreamingModel

__all__ = ["SOCAM", "propagate_probabilities"]


def propagate_probabilities(probs_nc: torch.Tensor, descendant_cc: torch.Tensor) -> torch.Tensor:
    """Probability of each category *or one of its descendants*: ``P_k = sum_{d in desc(k)} p_d``.

    With a transitively closed ``descendant_cc`` (row ``k`` marks ``k`` and all its descendants) a
    parent's set contains each child's, so a parent is at least as likely as each of its children.
    """
    return (probs_nc @ descendant_cc.T.to(probs_nc.dtype)).clamp(max=1.0)


def _load_matrix(value: Any) -> torch.Tensor:
    if isinstance(value, str | os.PathLike):
        path = os.fspath(value)
        if path.endswith(".npy"):
            return torch.from_numpy(np.load(path))
        if path.endswith((".pt", ".pth")):
            return torch.as_tensor(torch.load(path, map_location="cpu", weights_only=True))
        raise ValueError(f"descendant_tensor file {path!r} must be .npy or .pt.")
    return torch.as_tensor(np.asarray(value, dtype=np.float32))


class SOCAM(StreamingModel):
    """Supervised ontology-aware cell annotation (Magre et al., bioRxiv 2026): logistic regression over an ontology.

    A softmax over the (active) cell-type categories gives ``p_c``; with probability propagation a
    category's probability is that of the category or any of its descendants, ``P_k = sum_{d in
    desc(k)} p_d``. A cell labelled ``k`` (possibly a coarse label such as "T cell") contributes
    ``-log P_k``: the likelihood that its true type lies in ``k``'s subtree, so coarse and fine
    labels train one model, and predicted probabilities are ontology-consistent (a parent at least
    as likely as each child). Weights get a Laplace prior: the loss of a batch is the cross-entropy
    summed over its cells divided by their number over all DDP processes, plus ``sum |W| /
    (W_prior_scale * n_obs)``.

    Training is as :class:`~cellflux_streaming_models.models.LogisticRegression`'s: Adam with a
    learning rate scaled by batch size and genes (:meth:`default_optimizer`) and, with
    ``average``, tail averaging of the weights at each epoch's end.

    Parameters
    ----------
    n_obs
        Number of training cells.
    var_names_g
        The genes.
    descendant_tensor
        ``(C, C)`` 0/1 matrix: row ``k`` marks ``k`` itself and every descendant of ``k``
        (transitively closed). An array, nested list, or a ``.npy``/``.pt`` file.
    cl_names
        The ``C`` category names, in the matrix's order.
    cl_name_subset
        Restrict training and prediction to these categories (default all).
    probability_propagation_flag
        Train and predict with propagated probabilities (``False``: a plain softmax classifier
        over the categories).
    W_prior_scale
        Scale of the Laplace prior (cellarium-ml's default is ``1e-2`` on raw weights; ours, as
        :class:`~cellflux_streaming_models.models.LogisticRegression`'s, is 1).
    W_init_scale
        Initial weights are normal with standard deviation ``W_init_scale / sqrt(genes)``.
    seed
        Seed of the initial weights.
    log_metrics
        Also return the batch's accuracy (the label's subtree holds the most probable leaf category).
    include_ancestors_of_cl_name_subset
        Add every ancestor of ``cl_name_subset`` to it.
    y_categories
        Names of the integer codes in ``y_n`` (the command line fills it from the label column).
    lr
        Learning-rate constant of :meth:`default_optimizer`.
    average
        Tail-average the weights over each epoch's second half.
    """

    trainable = True
    n_epochs = None

    def __init__(
        self,
        n_obs: int,
        var_names_g: Sequence[str],
        descendant_tensor: Any,
        cl_names: Sequence[str],
        cl_name_subset: Sequence[str] | None = None,
        probability_propagation_flag: bool = True,
        W_prior_scale: float = 1.0,
        W_init_scale: float = 1.0,
        seed: int = 0,
        log_metrics: bool = True,
        include_ancestors_of_cl_name_subset: bool = True,
        *,
        y_categories: Sequence[str] | None = None,
        lr: float = 0.5,
        average: bool = True,
    ) -> None:
        super().__init__(var_names_g)
        if not isinstance(n_obs, int | np.integer) or n_obs < 1:
            raise ValueError(f"n_obs must be a positive integer (the number of training cells), got {n_obs!r}.")
        if not W_prior_scale > 0 or not W_init_scale >= 0 or not lr > 0:
            raise ValueError("W_prior_scale and lr must be positive, W_init_scale non-negative.")
        desc = _load_matrix(descendant_tensor).float()
        cl_names = [str(c) for c in cl_names]
        if desc.ndim != 2 or desc.shape[0] != desc.shape[1]:
            raise ValueError(f"descendant_tensor must be a square matrix, got shape {tuple(desc.shape)}.")
        if len(cl_names) != desc.shape[0]:
            raise ValueError(f"cl_names has {len(cl_names)} names, descendant_tensor {desc.shape[0]} rows.")
        if len(set(cl_names)) != len(cl_names):
            raise ValueError("cl_names has duplicates.")
        if not bool(((desc == 0) | (desc == 1)).all()) or not bool((desc.diagonal() == 1).all()):
            raise ValueError(
                "descendant_tensor must be 0/1 with ones on the diagonal (a category descends from itself)."
            )
        closure = (desc @ desc) > 0
        if bool((closure & (desc == 0)).any()):
            raise ValueError("descendant_tensor is not transitively closed: mark every descendant, not only children.")
        if bool(((desc * desc.T) - torch.eye(len(desc))).abs().sum() > 0):
            raise ValueError("descendant_tensor has a cycle (two categories descend from each other).")
        index = {c: i for i, c in enumerate(cl_names)}
        if cl_name_subset is not None:
            unknown = [c for c in cl_name_subset if c not in index]
            if unknown:
                raise ValueError(f"cl_name_subset has names not in cl_names: {unknown[:5]}.")
            rows = {index[c] for c in cl_name_subset}
            if include_ancestors_of_cl_name_subset:
                rows |= {int(a) for r in list(rows) for a in torch.nonzero(desc[:, r]).flatten()}
            active = sorted(rows)
        else:
            active = list(range(len(cl_names)))
        if len(active) < 2:
            raise ValueError("SOCAM needs at least two active categories.")
        self.n_obs = int(n_obs)
        self.cl_names = np.asarray(cl_names, dtype=object)
        self.cl_name_subset = None if cl_name_subset is None else [str(c) for c in cl_name_subset]
        self.include_ancestors_of_cl_name_subset = include_ancestors_of_cl_name_subset
        self.active_cl_names = self.cl_names[active]
        self.n_categories = len(active)
        self.label_lookup = {c: i for i, c in enumerate(self.active_cl_names)}
        self.probability_propagation_flag = probability_propagation_flag
        self.W_prior_scale = float(W_prior_scale)
        self.W_init_scale = float(W_init_scale)
        self.seed = seed
        self.log_metrics = log_metrics
        self.lr = lr
        self.average = average
        self.y_categories = None if y_categories is None else np.asarray(y_categories, dtype=object)
        if self.y_categories is not None:
            # code -> active index (-1: not an active category)
            codes = [self.label_lookup.get(str(c), -1) for c in self.y_categories]
            self.register_buffer("_code_to_active", torch.tensor(codes, dtype=torch.long), persistent=False)
        self.register_buffer("descendant_tensor", desc)
        sub = desc[active][:, active]
        self.register_buffer("active_descendant_tensor_cc", sub)
        self.register_buffer("leaf_c", sub.sum(1) == 1, persistent=False)
        self.W_gc = torch.nn.Parameter(torch.empty(self.n_vars, self.n_categories))
        self.b_c = torch.nn.Parameter(torch.empty(self.n_categories))
        self._average = TailAverage(self.n_obs)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Draw the initial weights from ``seed``; zero biases."""
        generator = torch.Generator().manual_seed(self.seed)
        with torch.no_grad():
            self.W_gc.copy_(
                torch.randn(self.W_gc.shape, generator=generator) * self.W_init_scale / math.sqrt(self.n_vars)
            )
            self.b_c.zero_()
        self._average.start_epoch()

    def default_optimizer(self, batch_size: int) -> torch.optim.Optimizer:
        """Adam with the learning rate ``lr * sqrt(batch_size / 1000) / sqrt(genes)``."""
        return torch.optim.Adam(
            self.parameters(), lr=self.lr * math.sqrt(max(batch_size, 1) / 1000) / math.sqrt(self.n_vars)
        )

    # -- labels --------------------------------------------------------------------------------------
    def _labels(self, n: int, y_n: torch.Tensor | None, cl_names_n: Sequence[str] | None) -> torch.Tensor:
        if cl_names_n is not None:
            names = np.asarray(cl_names_n, dtype=object)
            if names.shape != (n,):
                raise ValueError(f"cl_names_n has shape {names.shape}, expected ({n},).")
            bad = [c for c in names if c not in self.label_lookup]
            if bad:
                raise ValueError(
                    f"Labels {sorted(set(map(str, bad)))[:5]} are not active categories "
                    f"(active: {list(self.active_cl_names)})."
                )
            return torch.tensor([self.label_lookup[c] for c in names], dtype=torch.long)
        if y_n is None:
            raise ValueError("SOCAM needs labels: y_n (codes, with y_categories) or cl_names_n (names).")
        if self.y_categories is None:
            raise ValueError("y_n holds codes; pass y_categories (their names) when building SOCAM.")
        y = torch.as_tensor(y_n).long()
        if y.shape != (n,):
            raise ValueError(f"y_n has shape {tuple(y.shape)}, expected ({n},).")
        if n and (int(y.min()) < 0 or int(y.max()) >= len(self.y_categories)):
            raise ValueError(f"y_n has codes outside [0, {len(self.y_categories)}) (missing labels are coded -1).")
        active = self._code_to_active.to(y.device)[y]
        if n and bool((active < 0).any()):
            bad = sorted({str(self.y_categories[int(c)]) for c in y[active < 0]})
            raise ValueError(f"Labels {bad[:5]} are not active categories (active: {list(self.active_cl_names)}).")
        return active

    def _logits(self, x_ng: torch.Tensor) -> torch.Tensor:
        return x_ng.to(self.W_gc.dtype) @ self.W_gc + self.b_c

    def log_probabilities(self, logits_nc: torch.Tensor, y_n: torch.Tensor) -> torch.Tensor:
        """``log P(label's subtree)`` per cell (``log p(label)`` without propagation)."""
        log_norm = torch.logsumexp(logits_nc, dim=1)
        if not self.probability_propagation_flag:
            return logits_nc.gather(1, y_n[:, None]).squeeze(1) - log_norm
        subtree_nc = self.active_descendant_tensor_cc[y_n] > 0
        return torch.logsumexp(logits_nc.masked_fill(~subtree_nc, float("-inf")), dim=1) - log_norm

    def on_train_epoch_start(self, epoch: int) -> None:
        super().on_train_epoch_start(epoch)
        self._average.start_epoch()

    def forward(
        self,
        x_ng: torch.Tensor,
        var_names_g: np.ndarray,
        y_n: torch.Tensor | None = None,
        cl_names_n: Sequence[str] | None = None,
    ) -> dict[str, torch.Tensor]:
        """The loss of a batch (``{"loss": ..., "accuracy": ...}``); labels as codes ``y_n`` or names ``cl_names_n``."""
        self.check_batch(x_ng, var_names_g)
        n = x_ng.shape[0]
        y = self._labels(n, y_n, cl_names_n).to(x_ng.device)
        count = torch.tensor([float(n)], device=x_ng.device)
        size = 1
        if torch.is_grad_enabled():
            all_reduce_sum(count)
            size = world()[1]
            if self.average:
                self._average.observe(self, int(count.item()))
        logits_nc = self._logits(x_ng)
        nll = -self.log_probabilities(logits_nc, y).sum()
        loss = nll * size / count.squeeze() + self.W_gc.abs().sum() / (self.W_prior_scale * self.n_obs)
        out = {"loss": loss}
        if self.log_metrics:
            out["accuracy"] = self._subtree_hits(logits_nc.detach(), y).float().mean()
        return out

    def _subtree_hits(self, logits_nc: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        best = self.best_leaf(logits_nc)
        return self.active_descendant_tensor_cc[y, best] > 0

    def best_leaf(self, logits_nc: torch.Tensor) -> torch.Tensor:
        """Index (among the active categories) of the most probable leaf category of each cell."""
        return logits_nc.masked_fill(~self.leaf_c, float("-inf")).argmax(1)

    def on_train_epoch_end(self, epoch: int) -> None:
        """Replace the weights by their average over the epoch's second half."""
        if self.average:
            self._average.finish_epoch(self)

    # -- prediction ----------------------------------------------------------------------------------
    def predict(self, x_ng: torch.Tensor, var_names_g: np.ndarray) -> dict[str, Any]:
        """Category probabilities (propagated when ``probability_propagation_flag``).

        Returns
        -------
        ``y_logits_nc`` (logits), ``y_probs_nc`` (probabilities, cells x active categories),
        ``category_labels_c`` (their names), and ``x_ng``/``var_names_g`` (the probabilities and
        names again, for the command line's per-shard tables).
        """
        self.check_batch(x_ng, var_names_g)
        with torch.no_grad():
            logits_nc = self._logits(x_ng)
            probs_nc = torch.softmax(logits_nc, dim=1)
            if self.probability_propagation_flag:
                probs_nc = propagate_probabilities(probs_nc, self.active_descendant_tensor_cc)
        names = self.active_cl_names.copy()
        return {
            "y_logits_nc": logits_nc,
            "y_probs_nc": probs_nc,
            "category_labels_c": names,
            "x_ng": probs_nc,
            "var_names_g": names,
        }
