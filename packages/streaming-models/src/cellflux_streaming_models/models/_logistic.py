"""Multinomial logistic regression, MAP with a Laplace prior on the weights, trained by streaming."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
import torch

from .._dist import world
from ..transforms import ZScore
from ._averaging import TailAverage
from ._base import StreamingModel
from ._linear_softmax import linear_logits, linear_softmax_map_loss

__all__ = ["LogisticRegression"]


class LogisticRegression(StreamingModel):
    """Predict a categorical label from expression: ``logits = x @ W + b``, ``W ~ Laplace(0, W_prior_scale)``.

    The loss of a batch is the negative log posterior divided by ``n_obs``: the mean cross-entropy of
    the batch plus ``sum(|W|) / (W_prior_scale * n_obs)``, so its gradient is an unbiased estimate of
    the full-data objective's whatever the batch size, and learning rates do not depend on the
    number of cells. Two things make the result stable across batch sizes and initialisations (the
    objective is convex, so there is one answer to converge to):

    - :meth:`default_optimizer`: Adam with the learning rate ``lr * sqrt(batch_size / 1000) /
      sqrt(genes)``: Adam moves every weight by about the learning rate per step, so dividing by
      ``sqrt(genes)`` keeps the change of the logits of standardised data per step the same whatever
      the number of genes, and the square root of the batch size is the square-root scaling rule
      for adaptive optimisers (the noise of a step shrinks with the batch). It is used by
      :class:`~cellflux_streaming_models.StreamingModule` and ``stream_fit`` when no optimiser is
      given;
    - tail averaging (Polyak-Ruppert): at the end of every epoch the weights are replaced by the
      average of the iterates over the epoch's second half, which removes most of the optimiser's
      noise.

    Standardise the inputs (e.g. ``NormalizeTotal``, ``Log1p``, ``ZScore`` transforms) for fast
    convergence. Giving the ``ZScore`` to the model (``zscore=``) instead of the transforms computes
    the same logits, ``((x - mean_g) / std_g) @ W + b``, as
    ``x @ (W / std_g) + (b - (mean_g / std_g) @ W)``: the input stays sparse
    (``ShardDataset(..., sparse=True)`` with ``NormalizeTotal`` and ``Log1p``) and is never centred.
    The loss's gradient is computed in closed form (no autograd graph; the same gradient, so any
    optimiser behaves as with autograd).

    Parameters
    ----------
    n_obs
        Number of training cells (scales the prior against the likelihood).
    var_names_g
        The genes of the data.
    y_categories
        The label categories, in the order of the codes in ``y_n``.
    W_prior_scale
        Scale ``b`` of the Laplace prior on the weights (larger: weaker L1 penalty).
    W_init_scale
        Initial weights are normal with standard deviation ``W_init_scale / sqrt(genes)`` (cellarium-ml
        uses ``W_init_scale`` itself; the scaling keeps the initial logits of standardised data of
        order ``W_init_scale`` whatever the number of genes).
    seed
        Seed of the initial weights.
    log_metrics
        Also return the batch's accuracy (logged by the Lightning module as ``train_accuracy``).
    lr
        Step of :meth:`default_optimizer` in logit units at a batch size of 1,000 (the learning rate
        divided by ``sqrt(genes)``).
    average
        Replace the weights by their tail average at the end of every epoch.
    zscore
        Standardise the inputs inside the model (folded into the weights; see above). ``W_gc`` then
        applies to the standardised inputs, exactly as with the ``ZScore`` among the transforms. A
        ``ZScore``, or the path of the CSV that ``OnePassMeanVarStd(output_path=...)`` wrote
        (:meth:`ZScore.from_csv`; the form a ``cellflux stream`` configuration takes).

    Attributes
    ----------
    W_gc, b_c
        Weights (genes x categories) and biases.
    """

    trainable = True
    n_epochs = None

    def __init__(
        self,
        n_obs: int,
        var_names_g: Sequence[str],
        y_categories: Sequence[str],
        W_prior_scale: float = 1.0,
        W_init_scale: float = 1.0,
        seed: int = 0,
        log_metrics: bool = True,
        *,
        lr: float = 0.5,
        average: bool = True,
        zscore: ZScore | str | os.PathLike | None = None,
    ) -> None:
        super().__init__(var_names_g)
        self.y_categories = np.asarray(y_categories, dtype=object)
        if self.y_categories.ndim != 1 or len(self.y_categories) < 2:
            raise ValueError("y_categories must list at least two categories.")
        if not isinstance(n_obs, int | np.integer) or n_obs < 1:
            raise ValueError(f"n_obs must be a positive integer (the number of training cells), got {n_obs!r}.")
        if not W_prior_scale > 0 or not W_init_scale >= 0 or not lr > 0:
            raise ValueError("W_prior_scale and lr must be positive, W_init_scale non-negative.")
        self.n_obs = int(n_obs)
        self.n_categories = len(self.y_categories)
        self.W_prior_scale = float(W_prior_scale)
        self.W_init_scale = float(W_init_scale)
        self.seed = seed
        self.log_metrics = log_metrics
        self.lr = lr
        self.average = average
        if isinstance(zscore, str | os.PathLike):
            zscore = ZScore.from_csv(zscore)
        if zscore is not None and (not isinstance(zscore, ZScore) or len(zscore.var_names_g) != self.n_vars):
            raise ValueError("zscore must be a ZScore transform over the model's genes (or the path of its CSV).")
        self.zscore = zscore
        self.W_gc = torch.nn.Parameter(torch.empty(self.n_vars, self.n_categories))
        self.b_c = torch.nn.Parameter(torch.empty(self.n_categories))
        self._average = TailAverage(self.n_obs)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Draw the initial weights from ``seed``; zero biases."""
        generator = torch.Generator().manual_seed(self.seed)
        std = self.W_init_scale / math.sqrt(self.n_vars)
        with torch.no_grad():
            self.W_gc.copy_(torch.randn(self.n_vars, self.n_categories, generator=generator) * std)
            self.b_c.zero_()
        self._average.start_epoch()

    def default_optimizer(self, batch_size: int) -> torch.optim.Optimizer:
        """Adam with the learning rate ``lr * sqrt(batch_size / 1000) / sqrt(genes)``."""
        rate = self.lr * math.sqrt(max(batch_size, 1) / 1000) / math.sqrt(self.n_vars)
        return torch.optim.Adam(self.parameters(), lr=rate)

    # training -------------------------------------------------------------------------------------
    def _check_labels(self, y_n: torch.Tensor, n: int) -> torch.Tensor:
        y = torch.as_tensor(y_n).long()
        if y.shape != (n,):
            raise ValueError(f"y_n has shape {tuple(y.shape)}, expected ({n},).")
        if n and (int(y.min()) < 0 or int(y.max()) >= self.n_categories):
            raise ValueError(
                f"y_n has codes outside [0, {self.n_categories}) (missing labels are coded -1); "
                "drop unlabelled cells or list every category in y_categories."
            )
        return y

    def on_train_epoch_start(self, epoch: int) -> None:
        super().on_train_epoch_start(epoch)
        self._average.start_epoch()

    def forward(
        self, x_ng: torch.Tensor, var_names_g: np.ndarray, y_n: torch.Tensor, y_categories: np.ndarray | None = None
    ) -> dict[str, torch.Tensor]:
        """The loss of a batch (``{"loss": ..., "accuracy": ...}``)."""
        self.check_batch(x_ng, var_names_g)
        if y_categories is not None and not np.array_equal(np.asarray(y_categories, dtype=object), self.y_categories):
            raise ValueError("The batch's y_categories differ from the model's.")
        n = x_ng.shape[0]
        y = self._check_labels(y_n, n).to(x_ng.device)
        if self.average and torch.is_grad_enabled():
            self._average.observe(self, n * world()[1])
        loss, logits_nc = linear_softmax_map_loss(
            x_ng, self.W_gc, self.b_c, y, 1.0 / (self.W_prior_scale * self.n_obs), *self._standardisation(var_names_g)
        )
        out = {"loss": loss}
        if self.log_metrics:
            out["accuracy"] = (logits_nc.argmax(dim=1) == y).float().mean()
        return out

    def _standardisation(self, var_names_g: np.ndarray) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if self.zscore is None:
            return None, None
        self.zscore.check_genes(var_names_g)
        return self.zscore.mean_g.to(self.W_gc.dtype), self.zscore.inverse_std_g().to(self.W_gc.dtype)

    def on_train_epoch_end(self, epoch: int) -> None:
        """Replace the weights by their average over the epoch's second half (the last step included)."""
        if self.average:
            self._average.finish_epoch(self)

    # prediction -----------------------------------------------------------------------------------
    def predict(self, x_ng: torch.Tensor, var_names_g: np.ndarray) -> dict[str, torch.Tensor | np.ndarray]:
        """Logits per category: ``{"x_ng": logits (cells x categories), "var_names_g": y_categories}``."""
        self.check_batch(x_ng, var_names_g)
        logits_nc = linear_logits(x_ng, self.W_gc, self.b_c, *self._standardisation(var_names_g))
        return {"x_ng": logits_nc, "var_names_g": self.y_categories}
