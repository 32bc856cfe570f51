"""Closed-form transcription–splicing–degradation solutions (pure torch, broadcasting).

With transcription rate ``alpha`` (optionally relaxing from ``alpha`` to ``alpha_1`` at rate
``lambda_alpha``), splicing ``beta`` and degradation ``gamma``, starting from ``u = s = 0``
(induction) or from ``(u_0, s_0)`` with no transcription (repression).
"""

from __future__ import annotations

import torch

__all__ = ["induction", "repression", "transcription_rate"]

_EPS = 1e-6


def induction(
    alpha: torch.Tensor,
    alpha_1: torch.Tensor,
    lambda_alpha: torch.Tensor,
    beta: torch.Tensor,
    gamma: torch.Tensor,
    t: torch.Tensor,
    time_dependent: bool = False,
    eps: float = _EPS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unspliced and spliced abundance after time ``t`` of induction from zero."""
    exp_beta = torch.exp(-beta * t)
    exp_gamma = torch.exp(-gamma * t)
    if not time_dependent:
        unspliced = (alpha / beta) * (1 - exp_beta)
        spliced = (alpha / gamma) * (1 - exp_gamma) + (alpha / ((gamma - beta) + eps)) * (exp_gamma - exp_beta)
        return unspliced, spliced
    exp_lambda = torch.exp(-lambda_alpha * t)
    delta = alpha_1 - alpha
    unspliced = alpha_1 / beta * (1 - exp_beta) - delta / (beta - lambda_alpha) * (exp_lambda - exp_beta)
    spliced = (
        alpha_1 / gamma * (1 - exp_gamma)
        + alpha_1 / (gamma - beta + eps) * (exp_gamma - exp_beta)
        - beta * delta / (beta - lambda_alpha + eps) / (gamma - lambda_alpha + eps) * (exp_lambda - exp_gamma)
        + beta * delta / (beta - lambda_alpha + eps) / (gamma - beta + eps) * (exp_beta - exp_gamma)
    )
    return unspliced, spliced


def repression(
    u_0: torch.Tensor,
    s_0: torch.Tensor,
    beta: torch.Tensor,
    gamma: torch.Tensor,
    t: torch.Tensor,
    eps: float = _EPS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unspliced and spliced abundance after time ``t`` of repression from ``(u_0, s_0)``."""
    exp_beta = torch.exp(-beta * t)
    exp_gamma = torch.exp(-gamma * t)
    unspliced = exp_beta * u_0
    spliced = s_0 * exp_gamma - (beta * u_0 / ((gamma - beta) + eps)) * (exp_gamma - exp_beta)
    return unspliced, spliced


def transcription_rate(
    alpha: torch.Tensor, alpha_1: torch.Tensor, lambda_alpha: torch.Tensor, t: torch.Tensor, time_dependent: bool
) -> torch.Tensor:
    """The transcription rate at time ``t`` of induction."""
    if not time_dependent:
        return alpha.expand_as(t)
    return alpha_1 - (alpha_1 - alpha) * torch.exp(-lambda_alpha * t)
