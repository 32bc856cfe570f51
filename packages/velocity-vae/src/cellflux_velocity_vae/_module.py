"""The VELOVI variational autoencoder: a scvi-tools ``BaseModuleClass`` (pure torch, no AnnData).

The encoder maps ``[s, u]`` of a cell to a latent ``z``; the decoder maps ``z`` to, per gene, the
Dirichlet concentration of four kinetic states (induction, induction steady state, repression,
repression steady state) and the relative position in time within induction (``rho``) and
repression (``tau``). Spliced and unspliced abundances are Gaussian mixtures around the closed-form
kinetics; the rates, switching times and noise scales are global parameters.

Compared with scvi-tools' ``VELOVAE`` (same parameters, same objective), a training step works on
state-major tensors ``(cells, 4, genes)`` (the decoder's output rows are permuted once per step),
draws the Dirichlet state weights with a vectorised Gamma sampler (:mod:`._dirichlet`), and computes
the mixture likelihood and the Dirichlet KL as single autograd nodes with closed-form backward
passes (:mod:`._likelihood`, :mod:`._dirichlet`) instead of ``torch.distributions`` objects.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from scvi.module._constants import MODULE_KEYS
from scvi.module.base import BaseModuleClass, LossOutput, auto_move_data
from scvi.nn import Encoder, FCLayers
from torch import nn
from torch.distributions import Categorical, Dirichlet, MixtureSameFamily, Normal

from ._constants import REGISTRY_KEYS
from ._dirichlet import dirichlet_kl, rsample_dirichlet
from ._kinetics import induction, repression
from ._likelihood import log_mixture_weights, mixture_log_lik
from ._special import gamma_functions

__all__ = ["DecoderVELOVI", "VELOVAE", "dirichlet_kl", "mixture_log_prob"]

#: Standard deviation factor of each state (the repression steady state is 10x tighter).
_STATE_SD_FACTOR = (1.0, 1.0, 1.0, 0.1)


class DecoderVELOVI(nn.Module):
    """From ``z`` to state concentrations ``px_pi`` (cells x genes x 4), ``rho`` and ``tau``.

    Parameters
    ----------
    n_input
        Latent dimension.
    n_output
        Number of genes.
    n_layers, n_hidden, dropout_rate
        Size of the fully connected networks.
    use_batch_norm, use_layer_norm
        Normalisation in the hidden layers.
    linear_decoder
        Decode ``rho``/``tau`` linearly from ``z`` (interpretable loadings).
    """

    def __init__(
        self,
        n_input: int,
        n_output: int,
        n_layers: int = 1,
        n_hidden: int = 128,
        use_batch_norm: bool = True,
        use_layer_norm: bool = False,
        dropout_rate: float = 0.0,
        linear_decoder: bool = False,
    ) -> None:
        super().__init__()
        self.n_output = n_output
        self.linear_decoder = linear_decoder
        common = {"dropout_rate": dropout_rate, "use_batch_norm": use_batch_norm, "activation_fn": nn.ReLU}
        self.rho_first_decoder = FCLayers(
            n_in=n_input,
            n_out=n_output if linear_decoder else n_hidden,
            n_layers=1 if linear_decoder else n_layers,
            n_hidden=n_hidden,
            use_layer_norm=False if linear_decoder else use_layer_norm,
            use_activation=not linear_decoder,
            bias=not linear_decoder,
            **common,
        )
        self.pi_first_decoder = FCLayers(
            n_in=n_input, n_out=n_hidden, n_layers=n_layers, n_hidden=n_hidden, use_layer_norm=use_layer_norm, **common
        )
        self.px_pi_decoder = nn.Linear(n_hidden, 4 * n_output)
        self.px_rho_decoder = nn.Sequential(nn.Linear(n_hidden, n_output), nn.Sigmoid())
        self.px_tau_decoder = nn.Sequential(nn.Linear(n_hidden, n_output), nn.Sigmoid())
        self.linear_scaling_tau = nn.Parameter(torch.zeros(n_output))
        self.linear_scaling_tau_intercept = nn.Parameter(torch.zeros(n_output))

    def forward(
        self, z: torch.Tensor, latent_dim: int | None = None, state_major: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Decode a ``(cells, n_latent)`` batch into ``(px_pi_alpha, rho, tau)``.

        ``px_pi_alpha`` is ``(cells, genes, 4)``, or with ``state_major`` ``(cells, 4, genes)``
        (contiguous; computed with the output rows of the linear layer permuted, not by copying
        the output).
        """
        z_in = z
        if latent_dim is not None:
            mask = torch.zeros_like(z)
            mask[..., latent_dim] = 1
            z_in = z * mask
        rho_first = self.rho_first_decoder(z_in)
        if self.linear_decoder:
            px_rho = torch.sigmoid(rho_first)
            px_tau = 1 - torch.sigmoid(rho_first * self.linear_scaling_tau.exp() + self.linear_scaling_tau_intercept)
        else:
            px_rho = self.px_rho_decoder(rho_first)
            px_tau = self.px_tau_decoder(rho_first)
        pi_first = self.pi_first_decoder(z)
        if state_major:
            weight, bias = self.px_pi_decoder.weight, self.px_pi_decoder.bias
            weight = weight.view(self.n_output, 4, -1).transpose(0, 1).reshape(4 * self.n_output, -1)
            bias = bias.view(self.n_output, 4).T.reshape(-1)
            px_pi_alpha = F.softplus(F.linear(pi_first, weight, bias)).view(z.shape[0], 4, self.n_output)
        else:
            px_pi_alpha = F.softplus(self.px_pi_decoder(pi_first).reshape(z.shape[0], self.n_output, 4))
        return px_pi_alpha, px_rho, px_tau


def mixture_log_prob(x: torch.Tensor, pi: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Log density of ``x`` (..., genes) under a Gaussian mixture with weights ``pi`` (..., genes, 4).

    Equals ``MixtureSameFamily(Categorical(probs=pi), Normal(mean, scale)).log_prob(x)`` (including
    Categorical's clamping of the probabilities) without building distribution objects.
    """
    log_w = log_mixture_weights(pi.transpose(-1, -2))
    return mixture_log_lik(x, mean.transpose(-1, -2), scale.transpose(-1, -2), log_w)


class VELOVAE(BaseModuleClass):
    """The veloVI variational autoencoder :cite:p:`GayosoWeiler23`.

    Parameters
    ----------
    n_input
        Number of genes.
    true_time_switch
        Unused (kept for scvi-tools compatibility of saved arguments).
    n_hidden, n_latent, n_layers, dropout_rate
        Size of the encoder and decoder.
    log_variational
        Encode ``log(0.01 + x)`` instead of ``x``.
    latent_distribution
        ``"normal"`` or ``"ln"`` (logistic normal).
    use_batch_norm, use_layer_norm
        Where to normalise: ``"encoder"``, ``"decoder"``, ``"none"`` or ``"both"``.
    use_observed_lib_size
        Unused (scvi-tools compatibility).
    var_activation
        Positivity transform of the encoder variance.
    model_steady_states
        Unused (scvi-tools compatibility: the steady states are always modelled).
    gamma_unconstr_init, alpha_unconstr_init, alpha_1_unconstr_init, lambda_alpha_unconstr_init
        Initial unconstrained rates per gene (softplus-inverse of the rates).
    switch_spliced, switch_unspliced
        Target abundances at the switching time (the upper quantile of the data), penalised while
        the KL weight warms up.
    t_max
        Length of the time axis.
    penalty_scale
        Weight of the switching-point penalty.
    dirichlet_concentration
        Concentration of the symmetric Dirichlet prior on the state weights.
    linear_decoder
        Linear decoder for time.
    time_dep_transcription_rate
        Transcription rate relaxing from ``alpha`` to ``alpha_1`` at rate ``lambda_alpha``.
    """

    def __init__(
        self,
        n_input: int,
        true_time_switch: np.ndarray | None = None,
        n_hidden: int = 128,
        n_latent: int = 10,
        n_layers: int = 1,
        dropout_rate: float = 0.1,
        log_variational: bool = False,
        latent_distribution: Literal["normal", "ln"] = "normal",
        use_batch_norm: Literal["encoder", "decoder", "none", "both"] = "both",
        use_layer_norm: Literal["encoder", "decoder", "none", "both"] = "both",
        use_observed_lib_size: bool = True,
        var_activation: nn.Module | None = None,
        model_steady_states: bool = True,
        gamma_unconstr_init: np.ndarray | None = None,
        alpha_unconstr_init: np.ndarray | None = None,
        alpha_1_unconstr_init: np.ndarray | None = None,
        lambda_alpha_unconstr_init: np.ndarray | None = None,
        switch_spliced: np.ndarray | None = None,
        switch_unspliced: np.ndarray | None = None,
        t_max: float = 20,
        penalty_scale: float = 0.2,
        dirichlet_concentration: float = 0.25,
        linear_decoder: bool = False,
        time_dep_transcription_rate: bool = False,
    ) -> None:
        super().__init__()
        self.n_latent = n_latent
        self.n_input = n_input
        self.log_variational = log_variational
        self.latent_distribution = latent_distribution
        self.t_max = t_max
        self.penalty_scale = penalty_scale
        self.dirichlet_concentration = dirichlet_concentration
        self.time_dep_transcription_rate = time_dep_transcription_rate

        def _vector(values: np.ndarray | None, default: float) -> torch.Tensor:
            if values is None:
                return default * torch.ones(n_input)
            return torch.as_tensor(np.asarray(values, dtype=np.float32).ravel())

        self.register_buffer("switch_spliced", _vector(switch_spliced, 0.0))
        self.register_buffer("switch_unspliced", _vector(switch_unspliced, 0.0))
        # Parameters are created in the same order as scvi-tools' VELOVAE, so that one seed gives the
        # same initial weights in both.
        self.switch_time_unconstr = nn.Parameter(7 + 0.5 * torch.randn(n_input))
        self.gamma_mean_unconstr = nn.Parameter(_vector(gamma_unconstr_init, -1.0))
        self.beta_mean_unconstr = nn.Parameter(0.5 * torch.ones(n_input))
        self.alpha_unconstr = nn.Parameter(_vector(alpha_unconstr_init, 0.0))
        self.alpha_1_unconstr = nn.Parameter(_vector(alpha_1_unconstr_init, 0.0))
        self.alpha_1_unconstr.requires_grad = time_dep_transcription_rate
        self.lambda_alpha_unconstr = nn.Parameter(_vector(lambda_alpha_unconstr_init, 0.0))
        self.lambda_alpha_unconstr.requires_grad = time_dep_transcription_rate
        self.scale_unconstr = nn.Parameter(-1 * torch.ones(2 * n_input, 4))

        batch_norm_encoder = use_batch_norm in ("encoder", "both")
        batch_norm_decoder = use_batch_norm in ("decoder", "both")
        layer_norm_encoder = use_layer_norm in ("encoder", "both")
        layer_norm_decoder = use_layer_norm in ("decoder", "both")
        self.use_batch_norm_decoder = batch_norm_decoder
        self.z_encoder = Encoder(
            2 * n_input,
            n_latent,
            n_layers=n_layers,
            n_hidden=n_hidden,
            dropout_rate=dropout_rate,
            distribution=latent_distribution,
            use_batch_norm=batch_norm_encoder,
            use_layer_norm=layer_norm_encoder,
            var_activation=var_activation if var_activation is not None else nn.Softplus(),
            activation_fn=nn.ReLU,
        )
        self.decoder = DecoderVELOVI(
            n_latent,
            n_input,
            n_layers=n_layers,
            n_hidden=n_hidden,
            use_batch_norm=batch_norm_decoder,
            use_layer_norm=layer_norm_decoder,
            linear_decoder=linear_decoder,
        )

    # ------------------------------------------------------------------ scvi-tools module protocol
    def _get_inference_input(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"spliced": tensors[REGISTRY_KEYS.X_KEY], "unspliced": tensors[REGISTRY_KEYS.U_KEY]}

    def _get_generative_input(
        self, tensors: dict[str, torch.Tensor], inference_outputs: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        keys = ("gamma", "beta", "alpha", "alpha_1", "lambda_alpha")
        return {"z": inference_outputs[MODULE_KEYS.Z_KEY], **{k: inference_outputs[k] for k in keys}}

    @auto_move_data
    def inference(self, spliced: torch.Tensor, unspliced: torch.Tensor, n_samples: int = 1) -> dict[str, torch.Tensor]:
        """Encode ``[s, u]``; with ``n_samples > 1``, ``z`` has shape ``(n_samples, cells, n_latent)``."""
        if self.log_variational:
            spliced, unspliced = torch.log(0.01 + spliced), torch.log(0.01 + unspliced)
        qz_m, qz_v, z = self.z_encoder(torch.cat((spliced, unspliced), dim=-1))
        if n_samples > 1:
            qz_m = qz_m.unsqueeze(0).expand(n_samples, *qz_m.shape)
            qz_v = qz_v.unsqueeze(0).expand(n_samples, *qz_v.shape)
            z = self.z_encoder.z_transformation(qz_m + qz_v.sqrt() * torch.randn_like(qz_m))
        gamma, beta, alpha, alpha_1, lambda_alpha = self._get_rates()
        return {
            MODULE_KEYS.Z_KEY: z,
            MODULE_KEYS.QZM_KEY: qz_m,
            MODULE_KEYS.QZV_KEY: qz_v,
            "gamma": gamma,
            "beta": beta,
            "alpha": alpha,
            "alpha_1": alpha_1,
            "lambda_alpha": lambda_alpha,
        }

    def _get_rates(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        gamma = torch.clamp(F.softplus(self.gamma_mean_unconstr), 0, 50)
        beta = torch.clamp(F.softplus(self.beta_mean_unconstr), 0, 50)
        alpha = torch.clamp(F.softplus(self.alpha_unconstr), 0, 50)
        if self.time_dep_transcription_rate:
            alpha_1 = torch.clamp(F.softplus(self.alpha_1_unconstr), 0, 50)
            lambda_alpha = torch.clamp(F.softplus(self.lambda_alpha_unconstr), 0, 50)
        else:
            alpha_1, lambda_alpha = self.alpha_1_unconstr, self.lambda_alpha_unconstr
        return gamma, beta, alpha, alpha_1, lambda_alpha

    def switch_time(self) -> torch.Tensor:
        """The per-gene switching time from induction to repression, in ``[0, t_max]``."""
        return torch.clamp(F.softplus(self.switch_time_unconstr), 0, self.t_max)

    @auto_move_data
    def generative(
        self,
        z: torch.Tensor,
        gamma: torch.Tensor,
        beta: torch.Tensor,
        alpha: torch.Tensor,
        alpha_1: torch.Tensor,
        lambda_alpha: torch.Tensor,
        latent_dim: int | None = None,
    ) -> dict[str, torch.Tensor]:
        """Decode ``z`` (cells x latent, or samples x cells x latent) into the state mixture.

        ``px_pi``, ``px_pi_alpha``, ``mean_u`` and ``mean_s`` are ``(..., genes, 4)`` (as in
        scvi-tools), views of state-major tensors that :meth:`loss` uses without copying;
        ``px_pi_alpha_gamma_functions`` stacks ``lgamma``, ``digamma`` and ``trigamma`` of
        ``px_pi_alpha`` (``(3, ..., genes, 4)``), computed once per step for the draw's gradient
        and the Dirichlet KL term of :meth:`loss`.
        """
        lead = z.shape[:-1]
        n_genes = self.n_input
        alpha_sm, px_rho, px_tau = self.decoder(z.reshape(-1, z.shape[-1]), latent_dim=latent_dim, state_major=True)
        special = gamma_functions(alpha_sm)  # lgamma, digamma, trigamma: for the draw and the KL term
        pi_sm = rsample_dirichlet(alpha_sm, dim=-2, digamma=special[1])
        alpha_sm, pi_sm = alpha_sm.reshape(*lead, 4, n_genes), pi_sm.reshape(*lead, 4, n_genes)
        special = special.reshape(3, *lead, 4, n_genes)
        px_rho, px_tau = px_rho.reshape(*lead, n_genes), px_tau.reshape(*lead, n_genes)
        scale = F.softplus(self.scale_unconstr)
        mean_u, mean_s, end_penalty = self.state_means(
            px_rho, px_tau, gamma, beta, alpha, alpha_1, lambda_alpha, state_dim=-2
        )
        return {
            "px_pi": pi_sm.transpose(-1, -2),
            "px_rho": px_rho,
            "px_tau": px_tau,
            "scale": scale,
            "px_pi_alpha": alpha_sm.transpose(-1, -2),
            "px_pi_alpha_gamma_functions": special.transpose(-1, -2),
            "mean_u": mean_u.transpose(-1, -2),
            "mean_s": mean_s.transpose(-1, -2),
            "end_penalty": end_penalty,
        }

    def state_means(
        self,
        px_rho: torch.Tensor,
        px_tau: torch.Tensor,
        gamma: torch.Tensor,
        beta: torch.Tensor,
        alpha: torch.Tensor,
        alpha_1: torch.Tensor,
        lambda_alpha: torch.Tensor,
        state_dim: int = -1,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Means of ``u`` and ``s`` in the four states and the switching penalty.

        The means are ``(..., genes, 4)``, or ``(..., 4, genes)`` with ``state_dim=-2``.
        """
        t_s = self.switch_time()
        dep = self.time_dep_transcription_rate
        u_ind, s_ind = induction(alpha, alpha_1, lambda_alpha, beta, gamma, t_s * px_rho, dep)
        u_0, s_0 = induction(alpha, alpha_1, lambda_alpha, beta, gamma, t_s, dep)
        u_rep, s_rep = repression(u_0, s_0, beta, gamma, (self.t_max - t_s) * px_tau)
        rate = alpha_1 if dep else alpha
        zeros = torch.zeros_like(u_ind)
        mean_u = torch.stack((u_ind, (rate / beta).expand_as(u_ind), u_rep, zeros), dim=state_dim)
        mean_s = torch.stack((s_ind, (rate / gamma).expand_as(s_ind), s_rep, zeros), dim=state_dim)
        end_penalty = (u_0 - self.switch_unspliced).pow(2).sum() + (s_0 - self.switch_spliced).pow(2).sum()
        return mean_u, mean_s, end_penalty

    def state_scales(self, scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Standard deviations of ``u`` and ``s`` per state (genes x 4; the repression steady state is 10x tighter)."""
        factor = torch.tensor(_STATE_SD_FACTOR, device=scale.device, dtype=scale.dtype)
        scale_u = scale[: self.n_input, :1].sqrt() * factor
        scale_s = scale[self.n_input :, :1].sqrt() * factor
        return scale_u, scale_s

    def log_likelihood(
        self, spliced: torch.Tensor, unspliced: torch.Tensor, generative_outputs: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-gene log likelihood of spliced and unspliced abundances."""
        log_w = log_mixture_weights(generative_outputs["px_pi"].transpose(-1, -2))
        scale_u, scale_s = self.state_scales(generative_outputs["scale"])
        mean_s = generative_outputs["mean_s"].transpose(-1, -2)
        mean_u = generative_outputs["mean_u"].transpose(-1, -2)
        ll_s = mixture_log_lik(spliced, mean_s, scale_s.T, log_w)
        ll_u = mixture_log_lik(unspliced, mean_u, scale_u.T, log_w)
        return ll_s, ll_u

    def loss(
        self,
        tensors: dict[str, torch.Tensor],
        inference_outputs: dict[str, torch.Tensor],
        generative_outputs: dict[str, torch.Tensor],
        kl_weight: float = 1.0,
        n_obs: float = 1.0,
    ) -> LossOutput:
        """Negative ELBO with the KL warm-up and the switching-point penalty of veloVI."""
        ll_s, ll_u = self.log_likelihood(tensors[REGISTRY_KEYS.X_KEY], tensors[REGISTRY_KEYS.U_KEY], generative_outputs)
        qz_m, qz_v = inference_outputs[MODULE_KEYS.QZM_KEY], inference_outputs[MODULE_KEYS.QZV_KEY]
        kl_z = 0.5 * (qz_v + qz_m.square() - 1 - torch.log(qz_v)).sum(dim=-1)
        reconst_loss = -(ll_u.sum(dim=-1) + ll_s.sum(dim=-1))
        concentration = generative_outputs["px_pi_alpha"].transpose(-1, -2)
        special = generative_outputs.get("px_pi_alpha_gamma_functions")
        special = None if special is None else special.transpose(-1, -2)
        kl_pi = dirichlet_kl(concentration, self.dirichlet_concentration, dim=-2, special=special).sum(dim=-1)
        local_loss = torch.mean(reconst_loss + kl_weight * kl_z + kl_pi)
        loss = local_loss + self.penalty_scale * (1 - kl_weight) * generative_outputs["end_penalty"]
        return LossOutput(loss=loss, reconstruction_loss=reconst_loss, kl_local=kl_z + kl_pi)

    @auto_move_data
    def get_px(
        self,
        px_pi: torch.Tensor,
        px_rho: torch.Tensor,
        px_tau: torch.Tensor,
        scale: torch.Tensor,
        gamma: torch.Tensor,
        beta: torch.Tensor,
        alpha: torch.Tensor,
        alpha_1: torch.Tensor,
        lambda_alpha: torch.Tensor,
    ) -> tuple[MixtureSameFamily, MixtureSameFamily, torch.Tensor]:
        """The spliced and unspliced mixtures as torch distributions (for users of scvi-tools' API)."""
        mean_u, mean_s, end_penalty = self.state_means(px_rho, px_tau, gamma, beta, alpha, alpha_1, lambda_alpha)
        scale_u, scale_s = self.state_scales(scale)
        states = Categorical(probs=px_pi)
        dist_s = MixtureSameFamily(states, Normal(mean_s, scale_s.expand_as(mean_s)))
        dist_u = MixtureSameFamily(states, Normal(mean_u, scale_u.expand_as(mean_u)))
        return dist_s, dist_u, end_penalty

    @torch.inference_mode()
    def marginal_ll(
        self, tensors: dict[str, torch.Tensor], n_mc_samples: int = 100, return_mean: bool = False, batch: int = 25
    ) -> torch.Tensor | float:
        """Importance-sampled log p(s, u) per cell with ``q(z | x) q(pi | z)`` as proposal."""
        inputs = self._get_inference_input(tensors)
        spliced, unspliced = inputs["spliced"], inputs["unspliced"]
        log_weights = []
        done = 0
        while done < n_mc_samples:
            n = min(batch, n_mc_samples - done)
            inference = self.inference(spliced, unspliced, n_samples=max(n, 2))
            z = inference[MODULE_KEYS.Z_KEY][:n]
            qz_m, qz_v = inference[MODULE_KEYS.QZM_KEY][:n], inference[MODULE_KEYS.QZV_KEY][:n]
            generative = self.generative(
                z, *(inference[k] for k in ("gamma", "beta", "alpha", "alpha_1", "lambda_alpha"))
            )
            ll_s, ll_u = self.log_likelihood(spliced.to(z.device), unspliced.to(z.device), generative)
            pi, conc = generative["px_pi"], generative["px_pi_alpha"]
            prior_pi = Dirichlet(torch.full_like(conc, self.dirichlet_concentration), validate_args=False)
            q_pi = Dirichlet(conc, validate_args=False)
            pi = pi.clamp_min(torch.finfo(pi.dtype).tiny)
            pi = pi / pi.sum(-1, keepdim=True)
            log_pi_ratio = (prior_pi.log_prob(pi) - q_pi.log_prob(pi)).sum(-1)
            log_pz = Normal(0.0, 1.0).log_prob(z).sum(-1)
            log_qz = Normal(qz_m, qz_v.sqrt()).log_prob(z).sum(-1)
            log_weights.append(ll_s.sum(-1) + ll_u.sum(-1) + log_pz - log_qz + log_pi_ratio)
            done += n
        log_w = torch.cat(log_weights, dim=0)
        result = torch.logsumexp(log_w, dim=0) - math.log(n_mc_samples)
        return result.mean().item() if return_mean else result

    def sample(self) -> np.ndarray:
        """Not implemented (as in scvi-tools)."""
        raise NotImplementedError("VELOVAE does not generate new cells.")

    @torch.no_grad()
    def get_loadings(self) -> np.ndarray:
        """Per-gene weights of the linear time decoder (batch norm folded in)."""
        if not self.decoder.linear_decoder:
            raise ValueError("The model was not trained with linear_decoder=True.")
        layer = self.decoder.rho_first_decoder.fc_layers[0]
        w = layer[0].weight
        if self.use_batch_norm_decoder:
            bn = layer[1]
            w = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).unsqueeze(-1) * w
        return w.detach().cpu().numpy()
