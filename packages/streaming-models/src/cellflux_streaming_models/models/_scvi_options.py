"""Validation of scVI's options and the KL warm-up schedule."""

from __future__ import annotations

__all__ = ["check_choice", "kl_weight", "norm_places"]


def check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    """Refuse ``value`` unless it is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}.")


def norm_places(value: str, name: str) -> tuple[bool, bool]:
    """``"encoder"|"decoder"|"both"|"none"`` as (in the encoder, in the decoder)."""
    check_choice(name, value, ("encoder", "decoder", "both", "none"))
    return value in ("encoder", "both"), value in ("decoder", "both")


def kl_weight(
    epoch: int,
    step: int,
    warmup_epochs: int | None,
    warmup_steps: int | None,
    start: float = 0.0,
    end: float = 1.0,
) -> float:
    """The KL weight: linear from ``start`` to ``end`` over ``warmup_epochs`` epochs (or ``warmup_steps`` steps).

    Without a warm-up the weight is ``end``.
    """
    if warmup_epochs:
        if epoch < warmup_epochs:
            return start + (end - start) * epoch / warmup_epochs
    elif warmup_steps and step < warmup_steps:
        return start + (end - start) * step / warmup_steps
    return end
