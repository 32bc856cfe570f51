"""scVI (Lopez et al. 2018) for streaming: a variational autoencoder of counts trained batch by batch."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ._base import StreamingModel
from ._scvi_flow import SplineFlowPrior
from ._scvi_likelihoods import CountDistribution
from ._scvi_nets import DecoderSCVI, EncoderSCVI, default_network, init_weights
from ._scvi_options import check_choice, kl_weight, norm_places
from ._scvi_validation import ScviValidation, ontology_matrix

__all__ = ["SingleCellVariationalInference"]

logger = logging.getLogger(__name__)

_LOG_2PI = float(np.log(2 * np.pi))


def _normal_log_prob(z: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return -0.5 * ((z - mean) / std) ** 2 - torch.log(std) - 0.5 * _LOG_2PI


def _kl_standard_normal(mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """``KL(Normal(mean, std) || Normal(0, 1))`` per cell (summed over dimensions)."""
    return (0.5 * (mean**2 + std**2 - 1) - torch.log(std)).sum(-1)


class SingleCellVariationalInference(StreamingModel):
    """Single-cell variational inference (scVI) trained by streaming, with cellarium-ml's parameters.

    The generative model: ``z ~ Normal(0, I)``; counts ``x_g ~ NB(l * scale_g(z, batch), theta_g)``
    (or ZINB, Poisson) with ``l`` the cell's observed library size (or its size factor); the encoder
    ``q(z | x, batch)`` is a diagonal normal. The loss of a batch is the mean over its cells of
    ``-log p(x | z) + w * KL(q(z | x) || p(z))`` with the KL weight ``w`` warmed up linearly.

    Parameters
    ----------
    var_names_g
        The genes of the data.
    encoder, decoder
        Network configurations (see ``cellflux_streaming_models.models._scvi_nets``); by default
        scvi-tools' (one hidden layer of 128 units; the batch injected in the decoder only).
    n_batch
        Number of batches (0: no batch; batches come as ``batch_index_n``).
    n_latent
        Latent dimensions.
    n_continuous_cov
        Continuous covariates: only 0 is implemented (as in cellarium-ml).
    n_cats_per_cov
        Categories of each categorical covariate (``categorical_covariate_index_nd``), used by layers
        ``LinearWithCovariates``/``LinearWithBatchAndCovariates``.
    dropout_rate
        Dropout of the encoder's hidden layers.
    dispersion
        ``"gene"``, ``"gene-batch"``, ``"gene-label"`` (needs ``n_labels`` and ``y_n``) or ``"gene-cell"``.
    log_variational
        Encode ``log1p`` of the counts.
    normalizetotal_variational
        Encode counts normalised to 10,000 per cell (before the ``log1p``).
    gene_likelihood
        ``"nb"``, ``"zinb"`` or ``"poisson"``.
    latent_distribution
        Only ``"normal"`` is implemented.
    batch_embedded
        Learn a batch embedding of ``n_latent_batch`` dimensions (initialised one-hot) instead of one-hot batches.
    batch_representation_sampled
        Sample the embedding from a learnt normal (with a KL term weighted by ``batch_kl_weight_max``).
    n_latent_batch
        Dimensions of the batch embedding (default ``n_batch``).
    z_kl_weight_max, batch_kl_weight_max
        Final weights of the latent and batch-embedding KL terms.
    input_gene_dropout_rate
        Fraction of input genes zeroed at random for the encoder during training.
    use_batch_norm, use_layer_norm
        Where to normalise hidden layers: ``"encoder"``, ``"decoder"``, ``"both"`` or ``"none"``.
    kl_warmup_epochs, kl_warmup_steps
        Linear KL warm-up length (at most one of them).
    kl_annealing_start
        KL weight at the start of the warm-up.
    use_size_factor_key
        Use ``total_mrna_umis_n`` as the library size (and a softplus scale) instead of the observed total.
    reconstruct_counts_on_predict
        :meth:`predict` returns reconstructions (:meth:`reconstruct`) instead of latent means.
    reconstruction_var_names_g
        Genes to reconstruct (default all).
    reconstruction_transform_batch
        ``None`` (each cell's own batch), a batch index, or ``"mean"`` (average over the batches).
    reconstruction_n_latent_samples
        Latent samples averaged per reconstruction.
    reconstruction_use_latent_mean
        Decode the posterior mean instead of samples.
    reconstruction_use_importance_sampling
        Weight the samples by ``p(x | z) p(z) / q(z | x)`` (self-normalised).
    reconstructed_library_size
        Library size of the reconstructions.
    reconstruction_transform_categorical_covariates
        Covariate codes fixed for every cell when reconstructing (needed with covariate layers and a transform batch).
    use_flow
        Replace the ``Normal(0, I)`` prior by a neural spline flow (three rational-quadratic spline
        couplings, starting as the identity) trained jointly; the KL term is then the Monte Carlo
        estimate ``log q(z | x) - log p(z)`` at the encoder's sample.
    flow_hidden_features
        Hidden widths of the flow's coupling networks.
    cell_type_categories
        Cell types (e.g. CL ids), in the order of the codes ``validation_cell_type_index_n`` of the
        validation batches (``cellflux stream`` fills them from the column mapped to that key in
        ``data.obs_columns``). Enables the cell-type metrics of :meth:`validate`.
    ontology_distance_matrix
        Distances between cell types: a square ``pandas.DataFrame`` indexed by their ids (or a CSV
        path), sliced and reordered to ``cell_type_categories`` (every category must be present; ``inf``
        for unconnected types). Enables ``val_ontology_spearman`` and ``val_cell_type_mean_error_distance``.
        Ignored, with a warning, without ``cell_type_categories``; not saved in checkpoints.
    val_cell_type_classifier_reservoir_size
        Most validation cells kept (a uniform sample) for each of the cell-type classifier's training
        and test sets.
    n_labels
        Number of labels for ``dispersion="gene-label"``.
    lr
        Adam's learning rate in :meth:`default_optimizer`.
    seed
        Seed of the initial weights.
    """

    trainable = True
    n_epochs = None

    def __init__(
        self,
        var_names_g: Sequence[str],
        encoder: Mapping[str, Any] | None = None,
        decoder: Mapping[str, Any] | None = None,
        n_batch: int = 0,
        n_latent: int = 10,
        n_continuous_cov: int = 0,
        n_cats_per_cov: Sequence[int] | None = None,
        dropout_rate: float = 0.1,
        dispersion: str = "gene",
        log_variational: bool = True,
        normalizetotal_variational: bool = False,
        gene_likelihood: str = "nb",
        latent_distribution: str = "normal",
        batch_embedded: bool = False,
        batch_representation_sampled: bool = False,
        n_latent_batch: int | None = None,
        z_kl_weight_max: float = 1.0,
        batch_kl_weight_max: float = 0.0,
        input_gene_dropout_rate: float = 0.0,
        use_batch_norm: str = "both",
        use_layer_norm: str = "none",
        kl_warmup_epochs: int | None = 400,
        kl_warmup_steps: int | None = None,
        kl_annealing_start: float = 0.0,
        use_size_factor_key: bool = False,
        reconstruct_counts_on_predict: bool = False,
        reconstruction_var_names_g: Sequence[str] | None = None,
        reconstruction_transform_batch: int | str | None = 0,
        reconstruction_n_latent_samples: int = 30,
        reconstruction_use_latent_mean: bool = False,
        reconstruction_use_importance_sampling: bool = False,
        reconstructed_library_size: float = 10_000,
        reconstruction_transform_categorical_covariates: Sequence[int] | None = None,
        use_flow: bool = False,
        flow_hidden_features: Sequence[int] = (64, 64),
        cell_type_categories: Sequence[str] | None = None,
        ontology_distance_matrix: pd.DataFrame | str | None = None,
        val_cell_type_classifier_reservoir_size: int = 50_000,
        *,
        n_labels: int = 0,
        lr: float = 1e-3,
        seed: int = 0,
    ) -> None:
        super().__init__(var_names_g)
        check_choice("dispersion", dispersion, ("gene", "gene-batch", "gene-label", "gene-cell"))
        check_choice("gene_likelihood", gene_likelihood, ("nb", "zinb", "poisson"))
        check_choice("latent_distribution", latent_distribution, ("normal", "ln"))
        if latent_distribution == "ln":
            raise NotImplementedError("latent_distribution='ln' (logistic normal) is not implemented; use 'normal'.")
        if n_continuous_cov:
            raise NotImplementedError("Continuous covariates (n_continuous_cov > 0) are not implemented.")
        if not isinstance(val_cell_type_classifier_reservoir_size, int | np.integer) or (
            val_cell_type_classifier_reservoir_size < 2
        ):
            raise ValueError(
                "val_cell_type_classifier_reservoir_size must be an integer of at least 2, "
                f"got {val_cell_type_classifier_reservoir_size!r}."
            )
        if cell_type_categories is None and ontology_distance_matrix is not None:
            logger.warning(
                "ontology_distance_matrix is ignored: cell_type_categories is None (no cell-type validation metrics)."
            )
            ontology_distance_matrix = None
        if cell_type_categories is not None:
            if isinstance(cell_type_categories, str) or len(cell_type_categories) < 2:
                raise ValueError("cell_type_categories must be a list of at least two cell types.")
            if len(set(map(str, cell_type_categories))) != len(cell_type_categories):
                raise ValueError("cell_type_categories has duplicates.")
        self.cell_type_categories = None if cell_type_categories is None else [str(c) for c in cell_type_categories]
        self.ontology_distance_matrix = (
            None
            if ontology_distance_matrix is None
            else ontology_matrix(ontology_distance_matrix, self.cell_type_categories or [])
        )
        if not isinstance(n_batch, int | np.integer) or n_batch < 0:
            raise ValueError(f"n_batch must be a non-negative integer, got {n_batch!r}.")
        if n_latent < 1:
            raise ValueError(f"n_latent must be positive, got {n_latent}.")
        if dispersion == "gene-batch" and n_batch == 0:
            raise ValueError("dispersion='gene-batch' needs n_batch > 0.")
        if dispersion == "gene-label" and n_labels < 1:
            raise ValueError("dispersion='gene-label' needs n_labels > 0 (labels come as y_n).")
        if not 0.0 <= kl_annealing_start <= 1.0:
            raise ValueError(f"kl_annealing_start must be in [0, 1], got {kl_annealing_start}.")
        if kl_warmup_epochs is not None and kl_warmup_steps is not None:
            raise ValueError("Give kl_warmup_epochs or kl_warmup_steps, not both.")
        if z_kl_weight_max < 0 or batch_kl_weight_max < 0:
            raise ValueError("KL weights must be non-negative.")
        if not 0.0 <= input_gene_dropout_rate < 1.0 or not 0.0 <= dropout_rate < 1.0:
            raise ValueError("Dropout rates must be in [0, 1).")
        if not batch_embedded and n_latent_batch is not None and n_latent_batch != n_batch:
            raise ValueError("n_latent_batch must equal n_batch unless batch_embedded=True.")
        if batch_embedded and n_batch == 0:
            raise ValueError("batch_embedded=True needs n_batch > 0.")
        bn_enc, bn_dec = norm_places(use_batch_norm, "use_batch_norm")
        ln_enc, ln_dec = norm_places(use_layer_norm, "use_layer_norm")

        self.n_batch = int(n_batch)
        self.n_latent = int(n_latent)
        self.n_labels = int(n_labels)
        self.n_cats_per_cov = [int(c) for c in (n_cats_per_cov or [])]
        self.dispersion = dispersion
        self.gene_likelihood = gene_likelihood
        self.latent_distribution = latent_distribution
        self.log_variational = log_variational
        self.normalizetotal_variational = normalizetotal_variational
        self.batch_embedded = batch_embedded
        self.batch_representation_sampled = batch_representation_sampled
        self.n_latent_batch = int(n_latent_batch if n_latent_batch is not None else n_batch)
        self.z_kl_weight_max = float(z_kl_weight_max)
        self.batch_kl_weight_max = float(batch_kl_weight_max)
        self.input_gene_dropout_rate = float(input_gene_dropout_rate)
        self.kl_warmup_epochs = kl_warmup_epochs
        self.kl_warmup_steps = kl_warmup_steps
        self.kl_annealing_start = float(kl_annealing_start)
        self.use_size_factor_key = use_size_factor_key
        self.reconstruct_counts_on_predict = reconstruct_counts_on_predict
        if reconstruction_var_names_g is not None:
            wanted = np.asarray(reconstruction_var_names_g, dtype=object)
            missing = sorted(set(wanted) - set(self.var_names_g))
            if missing:
                raise ValueError(f"reconstruction_var_names_g has genes the model does not: {missing[:5]}.")
            self.reconstruction_var_names_g = wanted
        else:
            self.reconstruction_var_names_g = self.var_names_g
        self.reconstruction_transform_batch = reconstruction_transform_batch
        self.reconstruction_n_latent_samples = int(reconstruction_n_latent_samples)
        self.reconstruction_use_latent_mean = reconstruction_use_latent_mean
        self.reconstruction_use_importance_sampling = reconstruction_use_importance_sampling
        self.reconstructed_library_size = float(reconstructed_library_size)
        self.reconstruction_transform_categorical_covariates = (
            None
            if reconstruction_transform_categorical_covariates is None
            else [int(c) for c in reconstruction_transform_categorical_covariates]
        )
        self.use_flow = use_flow
        self.flow_hidden_features = list(flow_hidden_features)
        self.val_cell_type_classifier_reservoir_size = int(val_cell_type_classifier_reservoir_size)
        self._validation: ScviValidation | None = None
        self.lr = lr
        self.seed = seed
        self.step = 0

        widths = (self.n_latent_batch, sum(self.n_cats_per_cov))
        self.z_encoder = EncoderSCVI(
            self.n_vars,
            self.n_latent,
            encoder if encoder is not None else default_network(),
            widths,
            {"use_batch_norm": bn_enc, "use_layer_norm": ln_enc, "dropout_rate": dropout_rate},
        )
        self.decoder = DecoderSCVI(
            self.n_latent,
            self.n_vars,
            decoder if decoder is not None else default_network(decoder=True),
            widths,
            {"use_batch_norm": bn_dec, "use_layer_norm": ln_dec},
            gene_cell_dispersion=dispersion == "gene-cell" and gene_likelihood != "poisson",
            zero_inflation=gene_likelihood == "zinb",
            scale_activation="softplus" if use_size_factor_key else "softmax",
        )
        self._decoder_uses_covariates = any(getattr(m, "uses", (False, False))[1] for m in self.decoder.modules()) or (
            self.decoder.additive_bias is not None and widths[1] > 0
        )
        n_theta = {"gene": 1, "gene-batch": self.n_batch, "gene-label": self.n_labels, "gene-cell": 1}[dispersion]
        self.px_r = nn.Parameter(torch.empty(self.n_vars, n_theta))  # log inverse dispersion
        if batch_embedded:
            self.batch_representation_mean_bd = nn.Parameter(torch.empty(self.n_batch, self.n_latent_batch))
            self.batch_representation_std_unconstrained_bd = nn.Parameter(
                torch.empty(self.n_batch, self.n_latent_batch)
            )
        else:
            self.batch_representation_mean_bd = None
            self.batch_representation_std_unconstrained_bd = None
        self.flow = SplineFlowPrior(self.n_latent, self.flow_hidden_features) if use_flow else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise the weights from ``seed`` (Xavier-normal, batch embedding one-hot)."""
        state = torch.random.get_rng_state()
        torch.manual_seed(self.seed)
        try:
            init_weights(self.z_encoder)
            init_weights(self.decoder)
            nn.init.normal_(self.px_r)
            if self.flow is not None:  # a fresh flow: the identity map
                self.flow.load_state_dict(SplineFlowPrior(self.n_latent, self.flow_hidden_features).state_dict())
            if self.batch_representation_mean_bd is not None:
                with torch.no_grad():
                    self.batch_representation_mean_bd.copy_(torch.eye(self.n_batch, self.n_latent_batch))
                    self.batch_representation_std_unconstrained_bd.zero_()
        finally:
            torch.random.set_rng_state(state)

    def default_optimizer(self, batch_size: int) -> torch.optim.Optimizer:
        """scvi-tools' optimiser: Adam with ``lr``, ``eps=0.01`` and weight decay ``1e-6``."""
        return torch.optim.Adam(self.parameters(), lr=self.lr, eps=0.01, weight_decay=1e-6)

    # representations ------------------------------------------------------------------------------
    def _check_batch_index(self, batch_index_n: torch.Tensor | None, n: int) -> torch.Tensor | None:
        if self.n_batch == 0:
            return None
        if batch_index_n is None:
            raise ValueError(
                f"This model has n_batch={self.n_batch}: the batch needs batch_index_n (data.obs_columns)."
            )
        index = torch.as_tensor(batch_index_n).reshape(-1).long()
        if index.shape[0] != n:
            raise ValueError(f"batch_index_n has {index.shape[0]} entries for {n} cells.")
        if n and (int(index.min()) < 0 or int(index.max()) >= self.n_batch):
            raise ValueError(f"batch_index_n has codes outside [0, {self.n_batch}).")
        return index

    def _embedding(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        assert (
            self.batch_representation_mean_bd is not None and self.batch_representation_std_unconstrained_bd is not None
        )
        return self.batch_representation_mean_bd[index], self.batch_representation_std_unconstrained_bd[
            index
        ].exp() + 1e-5

    def batch_representation_from_batch_index(
        self, batch_index_n: torch.Tensor, use_mean_though_sampling: bool = False
    ) -> torch.Tensor:
        """The batch representation of each cell: one-hot, or the (sampled or mean) learnt embedding.

        Parameters
        ----------
        batch_index_n
            Batch codes.
        use_mean_though_sampling
            With a sampled representation, return its mean.

        Returns
        -------
        Cells x ``n_latent_batch``.
        """
        index = torch.as_tensor(batch_index_n).reshape(-1).long()
        if not self.batch_embedded:
            return nn.functional.one_hot(index, num_classes=self.n_batch).to(self.px_r.dtype)
        mean, std = self._embedding(index)
        if self.batch_representation_sampled and not use_mean_though_sampling:
            return mean + std * torch.randn_like(std)
        return mean

    def categorical_onehot_from_categorical_index(
        self, categorical_covariate_index_nd: torch.Tensor | None
    ) -> torch.Tensor | None:
        """One-hot categorical covariates, concatenated (``None`` without covariates)."""
        if categorical_covariate_index_nd is None:
            if self.n_cats_per_cov:
                raise ValueError("This model has n_cats_per_cov: the batch needs categorical_covariate_index_nd.")
            return None
        index = torch.as_tensor(categorical_covariate_index_nd).long()
        if index.ndim == 1:
            index = index[:, None]
        if index.shape[1] != len(self.n_cats_per_cov):
            raise ValueError(
                f"categorical_covariate_index_nd has {index.shape[1]} columns, "
                f"n_cats_per_cov {len(self.n_cats_per_cov)}."
            )
        parts = []
        for i, n in enumerate(self.n_cats_per_cov):
            if len(index) and (int(index[:, i].min()) < 0 or int(index[:, i].max()) >= n):
                raise ValueError(f"Categorical covariate {i} has codes outside [0, {n}).")
            parts.append(nn.functional.one_hot(index[:, i], num_classes=n).to(self.px_r.dtype))
        return torch.cat(parts, dim=1)

    # the two halves of the model ------------------------------------------------------------------
    def inference(
        self, x_ng: torch.Tensor, batch_nb: torch.Tensor | None, categorical_covariate_np: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Encode counts: ``{"qz_mean", "qz_std", "z"}`` (``z`` a reparameterised sample)."""
        x = x_ng
        if self.normalizetotal_variational:
            x = x / x.sum(-1, keepdim=True).clamp_min(1e-8) * 1e4
        if self.log_variational:
            x = torch.log1p(x)
        mean, std = self.z_encoder(x, batch_nb, categorical_covariate_np)
        z = mean + std * torch.randn_like(std)
        return {"qz_mean": mean, "qz_std": std, "z": z}

    def generative(
        self,
        z_nk: torch.Tensor,
        library_size_n1: torch.Tensor,
        batch_nb: torch.Tensor | None,
        categorical_covariate_np: torch.Tensor | None = None,
        y_n: torch.Tensor | None = None,
    ) -> dict[str, Any]:
        """Decode latents: ``{"px": CountDistribution}`` given the log library size of each cell."""
        scale, additive, log_theta, zi = self.decoder(z_nk, batch_nb, categorical_covariate_np)
        mu = torch.exp(library_size_n1) * scale
        if additive is not None:
            mu = mu + additive
        theta = None
        if self.gene_likelihood != "poisson":
            if self.dispersion == "gene":
                theta = self.px_r[:, 0].exp()
            elif self.dispersion == "gene-cell":
                theta = log_theta.exp()
            elif self.dispersion == "gene-batch":
                theta = (batch_nb @ self.px_r.T).exp() if not self.batch_embedded else None
                if theta is None:  # an embedded batch has no one-hot: use the cell's batch code's column
                    raise NotImplementedError("dispersion='gene-batch' with batch_embedded=True is not implemented.")
            else:
                if y_n is None:
                    raise ValueError("dispersion='gene-label' needs labels y_n (data.obs_columns).")
                theta = self.px_r.T[torch.as_tensor(y_n).long().reshape(-1)].exp()
        return {"px": CountDistribution(self.gene_likelihood, mu, theta, zi, scale)}

    def _library(self, x_ng: torch.Tensor, total_mrna_umis_n: torch.Tensor | None) -> torch.Tensor:
        if self.use_size_factor_key:
            if total_mrna_umis_n is None:
                raise ValueError("use_size_factor_key=True needs total_mrna_umis_n in the batch.")
            return torch.log(torch.as_tensor(total_mrna_umis_n, dtype=x_ng.dtype)).reshape(-1, 1)
        return torch.log(x_ng.sum(-1, keepdim=True).clamp_min(1.0))

    def _prepare(self, x_ng, var_names_g, batch_index_n, categorical_covariate_index_nd):
        self.check_batch(x_ng, var_names_g)
        x = torch.as_tensor(x_ng, dtype=self.px_r.dtype)
        index = self._check_batch_index(batch_index_n, x.shape[0])
        return x, index, self.categorical_onehot_from_categorical_index(categorical_covariate_index_nd)

    def _kl_z(self, q: dict[str, torch.Tensor]) -> torch.Tensor:
        """Per-cell KL divergence of the posterior from the prior (Monte Carlo with a flow prior)."""
        if self.flow is None:
            return _kl_standard_normal(q["qz_mean"], q["qz_std"])
        return _normal_log_prob(q["z"], q["qz_mean"], q["qz_std"]).sum(-1) - self.flow.log_prob(q["z"])

    def _log_prior(self, z: torch.Tensor) -> torch.Tensor:
        if self.flow is None:
            return _normal_log_prob(z, torch.zeros_like(z), torch.ones_like(z)).sum(-1)
        return self.flow.log_prob(z)

    def current_kl_weight(self) -> float:
        """The KL weight of the current epoch/step (from ``kl_annealing_start`` to 1)."""
        return kl_weight(
            self.current_epoch, self.step, self.kl_warmup_epochs, self.kl_warmup_steps, self.kl_annealing_start
        )

    def forward(
        self,
        x_ng: torch.Tensor,
        var_names_g: np.ndarray,
        batch_index_n: torch.Tensor | None = None,
        categorical_covariate_index_nd: torch.Tensor | None = None,
        total_mrna_umis_n: torch.Tensor | None = None,
        y_n: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """The loss of a batch of counts.

        Returns
        -------
        ``{"loss", "reconstruction_loss", "kl_divergence_z", "kl_weight"}``: the loss and the means over
        the batch's cells of its terms.
        """
        x, index, cat = self._prepare(x_ng, var_names_g, batch_index_n, categorical_covariate_index_nd)
        batch_nb = self.batch_representation_from_batch_index(index) if index is not None else None
        encoder_x = x
        if self.training and self.input_gene_dropout_rate > 0:
            encoder_x = x * (torch.rand_like(x) >= self.input_gene_dropout_rate)
        q = self.inference(encoder_x, batch_nb, cat)
        px = self.generative(q["z"], self._library(x, total_mrna_umis_n), batch_nb, cat, y_n)["px"]
        rec_n = -px.log_prob(x).sum(-1)
        kl_z_n = self._kl_z(q)
        kl_batch: torch.Tensor | float = 0.0
        if (
            self.batch_representation_sampled
            and self.batch_embedded
            and self.batch_kl_weight_max > 0
            and index is not None
        ):
            mean, std = self._embedding(index)
            kl_batch = _kl_standard_normal(mean, std)
        w = self.current_kl_weight() if self.training else 1.0
        loss = torch.mean(rec_n + w * (self.z_kl_weight_max * kl_z_n + self.batch_kl_weight_max * kl_batch))
        if self.training and torch.is_grad_enabled():
            self.step += 1
        return {
            "loss": loss,
            "reconstruction_loss": rec_n.mean().detach(),
            "kl_divergence_z": kl_z_n.mean().detach(),
            "kl_weight": torch.tensor(w),
        }

    @torch.no_grad()
    def negative_elbo(
        self,
        x_ng: torch.Tensor,
        var_names_g: np.ndarray,
        batch_index_n: torch.Tensor | None = None,
        categorical_covariate_index_nd: torch.Tensor | None = None,
        total_mrna_umis_n: torch.Tensor | None = None,
        y_n: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Per-cell negative ELBO (KL weight one, one latent sample, evaluation mode networks)."""
        rec_n, kl_n, _, _ = self._evaluate(
            x_ng, var_names_g, batch_index_n, categorical_covariate_index_nd, total_mrna_umis_n, y_n
        )
        return rec_n + kl_n

    @torch.no_grad()
    def _evaluate(
        self,
        x_ng: torch.Tensor,
        var_names_g: np.ndarray,
        batch_index_n: torch.Tensor | None,
        categorical_covariate_index_nd: torch.Tensor | None,
        total_mrna_umis_n: torch.Tensor | None,
        y_n: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor], torch.Tensor | None]:
        """Per-cell reconstruction loss and KL term in evaluation mode, the posterior, the batch index."""
        was = self.training
        self.eval()
        try:
            x, index, cat = self._prepare(x_ng, var_names_g, batch_index_n, categorical_covariate_index_nd)
            batch_nb = self.batch_representation_from_batch_index(index, True) if index is not None else None
            q = self.inference(x, batch_nb, cat)
            px = self.generative(q["z"], self._library(x, total_mrna_umis_n), batch_nb, cat, y_n)["px"]
            return -px.log_prob(x).sum(-1), self._kl_z(q), q, index
        finally:
            self.train(was)

    # validation -----------------------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        """Reset the validation sums and samples."""
        if self._validation is None:
            self._validation = ScviValidation(
                self.n_latent,
                self.n_batch,
                self.cell_type_categories,
                self.ontology_distance_matrix,
                self.val_cell_type_classifier_reservoir_size,
                seed=self.seed,
            )
        self._validation.reset()

    @torch.no_grad()
    def validate(
        self,
        x_ng: torch.Tensor,
        var_names_g: np.ndarray,
        batch_index_n: torch.Tensor | None = None,
        categorical_covariate_index_nd: torch.Tensor | None = None,
        total_mrna_umis_n: torch.Tensor | None = None,
        y_n: torch.Tensor | None = None,
        cell_index_n: torch.Tensor | None = None,
        validation_cell_type_index_n: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Score a validation batch and add it to the epoch's sums.

        The negative ELBO (KL weight one, one latent sample) and the posterior means are accumulated;
        with ``cell_type_categories``, the cells' means and types (``validation_cell_type_index_n``)
        enter uniform samples (split training/test by a coin keyed by ``cell_index_n``) for the
        classifier of :meth:`on_validation_epoch_end`.

        Returns
        -------
        ``{"val_loss": the batch's mean negative ELBO}``.
        """
        if self._validation is None:
            self.on_validation_epoch_start()
        assert self._validation is not None
        rec_n, kl_n, q, index = self._evaluate(
            x_ng, var_names_g, batch_index_n, categorical_covariate_index_nd, total_mrna_umis_n, y_n
        )
        nelbo_n = rec_n + kl_n
        self._validation.add(nelbo_n, rec_n, q["qz_mean"], index, validation_cell_type_index_n, cell_index_n)
        return {"val_loss": nelbo_n.mean()}

    def on_validation_epoch_end(self) -> dict[str, float]:
        """The epoch's metrics, reduced over processes (every process must call this).

        Returns
        -------
        ``val_elbo`` (mean ELBO per cell), ``val_reconstruction_loss``, ``val_batch_silhouette`` (with
        batches; centroid-based: near 0 when batches mix), ``val_cell_type_top1_accuracy`` (a
        multinomial logistic regression on standardised latent means, trained on one sample and tested
        on the other) and, with an ontology, ``val_ontology_spearman`` (frequency-weighted Spearman
        correlation between the cell types' latent centroid distances and ontology distances) and
        ``val_cell_type_mean_error_distance`` (mean ontology distance of the classifier's mistakes).
        """
        if self._validation is None:
            return {}
        return self._validation.compute()

    def get_extra_state(self) -> Any:
        return {**super().get_extra_state(), "step": self.step}

    def set_extra_state(self, state: Any) -> None:
        super().set_extra_state(state)
        self.step = int(state.get("step", 0))

    # prediction -----------------------------------------------------------------------------------
    @torch.no_grad()
    def predict(
        self,
        x_ng: torch.Tensor,
        var_names_g: np.ndarray,
        batch_index_n: torch.Tensor | None = None,
        categorical_covariate_index_nd: torch.Tensor | None = None,
        total_mrna_umis_n: torch.Tensor | None = None,
    ) -> dict[str, Any]:
        """Latent means ``{"x_ng": z (cells x n_latent), "var_names_g": scvi_0...}``, or reconstructions.

        With ``reconstruct_counts_on_predict`` the output is :meth:`reconstruct` with the model's
        ``reconstruction_*`` settings.
        """
        if self.reconstruct_counts_on_predict:
            return self.reconstruct(
                x_ng,
                var_names_g,
                batch_index_n=batch_index_n,
                categorical_covariate_index_nd=categorical_covariate_index_nd,
                total_mrna_umis_n=total_mrna_umis_n,
                var_names=self.reconstruction_var_names_g,
                transform_batch=self.reconstruction_transform_batch,
                transform_categorical_covariates=self.reconstruction_transform_categorical_covariates,
                n_latent_samples=self.reconstruction_n_latent_samples,
                use_latent_mean=self.reconstruction_use_latent_mean,
                use_importance_sampling=self.reconstruction_use_importance_sampling,
                reconstructed_library_size=self.reconstructed_library_size,
            )
        x, index, cat = self._prepare(x_ng, var_names_g, batch_index_n, categorical_covariate_index_nd)
        batch_nb = self.batch_representation_from_batch_index(index, True) if index is not None else None
        z = self.inference(x, batch_nb, cat)["qz_mean"]
        return {"x_ng": z, "var_names_g": np.array([f"scvi_{i}" for i in range(self.n_latent)], dtype=object)}

    @torch.no_grad()
    def reconstruct(
        self,
        x_ng: torch.Tensor,
        var_names_g: np.ndarray,
        batch_index_n: torch.Tensor | None = None,
        categorical_covariate_index_nd: torch.Tensor | None = None,
        total_mrna_umis_n: torch.Tensor | None = None,
        *,
        var_names: Sequence[str] | None = None,
        transform_batch: int | str | None = None,
        transform_categorical_covariates: Sequence[int] | None = None,
        n_latent_samples: int = 30,
        use_latent_mean: bool = False,
        use_importance_sampling: bool = False,
        reconstructed_library_size: float = 10_000,
    ) -> dict[str, Any]:
        """Denoised expression at a common library size, optionally in another batch.

        The expected counts of the decoder, normalised per cell to ``reconstructed_library_size``,
        averaged over latent samples (self-normalised importance weights ``p(x|z) p(z) / q(z|x)``
        with ``use_importance_sampling``) and over the target batches.

        Parameters
        ----------
        x_ng, var_names_g, batch_index_n, categorical_covariate_index_nd, total_mrna_umis_n
            The batch.
        var_names
            Genes to return (default all, in the model's order).
        transform_batch
            ``None``: each cell's batch; an index: that batch; ``"mean"``: the mean over (up to 10) batches.
        transform_categorical_covariates
            Covariate codes fixed for every cell (default each cell's own).
        n_latent_samples
            Latent samples.
        use_latent_mean
            Decode the posterior mean only.
        use_importance_sampling
            Weight samples by importance.
        reconstructed_library_size
            Counts per cell of the output.

        Returns
        -------
        ``{"x_ng": cells x genes, "var_names_g": the genes}``.
        """
        x, index, cat = self._prepare(x_ng, var_names_g, batch_index_n, categorical_covariate_index_nd)
        names = self.var_names_g if var_names is None else np.asarray(var_names, dtype=object)
        lookup = {g: i for i, g in enumerate(self.var_names_g)}
        missing = [g for g in names if g not in lookup]
        if missing:
            raise ValueError(f"Genes to reconstruct missing from the model: {missing[:5]}.")
        genes = torch.as_tensor([lookup[g] for g in names], dtype=torch.long)
        if n_latent_samples < 1:
            raise ValueError("n_latent_samples must be positive.")
        n = x.shape[0]
        if transform_batch is None:
            targets = [index]
        elif isinstance(transform_batch, str):
            if transform_batch != "mean":
                raise ValueError("transform_batch must be None, a batch index or 'mean'.")
            targets = [torch.full((n,), b, dtype=torch.long) for b in range(min(self.n_batch, 10))]
        else:
            if not 0 <= int(transform_batch) < max(self.n_batch, 1) or self.n_batch == 0:
                raise ValueError(f"transform_batch must be in [0, {self.n_batch}), got {transform_batch}.")
            targets = [torch.full((n,), int(transform_batch), dtype=torch.long)]
        if transform_batch is not None and self._decoder_uses_covariates and transform_categorical_covariates is None:
            raise ValueError(
                "The decoder uses categorical covariates: give transform_categorical_covariates with transform_batch."
            )
        decode_cat = cat
        if transform_categorical_covariates is not None:
            fixed = torch.as_tensor(list(transform_categorical_covariates), dtype=torch.long).expand(n, -1)
            decode_cat = self.categorical_onehot_from_categorical_index(fixed)
        was = self.training
        self.eval()
        try:
            batch_nb = self.batch_representation_from_batch_index(index, True) if index is not None else None
            q = self.inference(x, batch_nb, cat)
            library = self._library(x, total_mrna_umis_n)
            samples = 1 if use_latent_mean else n_latent_samples
            out = torch.zeros(n, len(genes), dtype=x.dtype)
            for target in targets:
                target_nb = self.batch_representation_from_batch_index(target, True) if target is not None else None
                values, log_w = [], []
                for _ in range(samples):
                    z = q["qz_mean"] if use_latent_mean else q["qz_mean"] + q["qz_std"] * torch.randn_like(q["qz_std"])
                    mean = self.generative(z, library, target_nb, decode_cat)["px"].mean
                    values.append((mean / mean.sum(-1, keepdim=True))[:, genes] * reconstructed_library_size)
                    if use_importance_sampling and not use_latent_mean:
                        own = self.generative(z, library, batch_nb, cat)["px"]
                        log_w.append(
                            own.log_prob(x).sum(-1)
                            + self._log_prior(z)
                            - _normal_log_prob(z, q["qz_mean"], q["qz_std"]).sum(-1)
                        )
                stack = torch.stack(values)
                if log_w:
                    weights = torch.softmax(torch.stack(log_w), dim=0)[:, :, None]
                    out += (weights * stack).sum(0)
                else:
                    out += stack.mean(0)
            out /= len(targets)
        finally:
            self.train(was)
        return {"x_ng": out, "var_names_g": names}
