"""What the pipeline's steps share: the configuration, the data, the scores, figures and log."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = [
    "REQUIRES",
    "STEPS",
    "VELOCITY_MODES",
    "Context",
    "PipelineConfig",
    "StepRecord",
    "StepSkipped",
    "with_prerequisites",
]

logger = logging.getLogger("cellflux.pipeline")

STEPS: tuple[str, ...] = ("preprocess", "velocity", "kernels", "fates", "differential", "streaming")
VELOCITY_MODES: tuple[str, ...] = ("vae", "scvelo", "precomputed")

# what each step needs from the steps before it
REQUIRES: dict[str, tuple[str, ...]] = {
    "preprocess": (),
    "velocity": ("preprocess",),
    "kernels": ("preprocess", "velocity"),
    "fates": ("kernels",),
    "differential": ("preprocess",),
    "streaming": ("preprocess",),
}


def with_prerequisites(steps: tuple[str, ...]) -> tuple[str, ...]:
    """``steps`` and every step they need (:data:`REQUIRES`, transitively), in the order of :data:`STEPS`."""
    needed, todo = set(), list(steps)
    while todo:
        step = todo.pop()
        if step not in needed:
            needed.add(step)
            todo.extend(REQUIRES[step])
    return tuple(s for s in STEPS if s in needed)


class StepSkipped(Exception):
    """A step cannot run on these data or without a package; the message says why."""


@dataclass
class PipelineConfig:
    """Options of :func:`~cellflux._pipeline.run_pipeline`.

    Parameters
    ----------
    steps
        Steps to run, in the order of :data:`STEPS`. The steps they need (:data:`REQUIRES`) are added:
        a step runs on what the steps before it wrote in the same run.
    velocity
        ``"vae"`` (cellflux-velocity-vae), ``"scvelo"`` (the steady-state model) or ``"precomputed"``
        (an existing ``layers["velocity"]``).
    cluster_key
        ``obs`` column of clusters that names the macrostates; ``None``: ``"clusters"`` if present,
        else k-means clusters of the PCA.
    groupby
        ``obs`` column of the conditions of the differential step; ``None``: ``"condition"`` if present.
    conditions
        ``(reference, comparison)``; ``None``: the first two categories.
    n_states
        Number of macrostates (``None``: chosen from the data size and clusters).
    n_terminal
        Number of terminal states (``None``: the stable macrostates).
    vae_epochs
        Training epochs of the velocity VAE (``None``: 40, or 10 with ``quick``).
    n_velocity_samples
        Posterior velocity samples for fate-probability uncertainty (0: none).
    n_pcs, n_neighbors
        PCA components and neighbours of the kNN graph.
    quick
        Smaller settings throughout.
    seed
        Random seed.
    """

    steps: tuple[str, ...] = STEPS
    velocity: str = "vae"
    cluster_key: str | None = None
    groupby: str | None = None
    conditions: tuple[str, str] | None = None
    n_states: int | None = None
    n_terminal: int | None = None
    vae_epochs: int | None = None
    n_velocity_samples: int = 5
    n_pcs: int = 30
    n_neighbors: int = 30
    quick: bool = False
    seed: int = 0
    #: The steps added to ``steps`` because a selected step needs them (set on creation).
    added_steps: tuple[str, ...] = field(default=(), init=False)

    def __post_init__(self) -> None:
        unknown = [s for s in self.steps if s not in STEPS]
        if unknown:
            raise ValueError(f"Unknown step(s) {unknown}; choose among {', '.join(STEPS)}.")
        if not self.steps:
            raise ValueError(f"No step selected; choose among {', '.join(STEPS)}.")
        selected = tuple(s for s in STEPS if s in self.steps)
        self.steps = with_prerequisites(selected)
        self.added_steps = tuple(s for s in self.steps if s not in selected)
        if self.velocity not in VELOCITY_MODES:
            raise ValueError(f"velocity={self.velocity!r} is not one of {', '.join(VELOCITY_MODES)}.")
        if self.conditions is not None and len(self.conditions) != 2:
            raise ValueError(f"conditions must be two names (reference, comparison), got {self.conditions!r}.")


@dataclass
class StepRecord:
    """How a step went: ``status`` is ``"done"``, ``"skipped"`` or ``"failed"``."""

    name: str
    status: str
    seconds: float
    message: str = ""


@dataclass
class Context:
    """The data and everything the steps produce for the report."""

    adata: AnnData
    out: Path
    config: PipelineConfig
    title: str
    source: str
    has_truth: bool = False
    scores: list[tuple[str, str, str, str]] = field(default_factory=list)  # step, metric, value, note
    found: list[str] = field(default_factory=list)
    figures: list[tuple[str, Path, str]] = field(default_factory=list)  # title, path, caption
    records: list[StepRecord] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    objects: dict[str, Any] = field(default_factory=dict)

    def info(self, message: str) -> None:
        """Log ``message`` and keep it for the report."""
        logger.info(message)
        self.log.append(message)

    def score(self, step: str, metric: str, value: float | str, note: str = "") -> None:
        """Record a score of ``step`` against the ground truth (or a check) for the report."""
        text = f"{value:.3f}" if isinstance(value, float) else str(value)
        self.scores.append((step, metric, text, note))
        self.log.append(f"{step}: {metric} = {text}" + (f" ({note})" if note else ""))

    def done(self, step: str) -> bool:
        """Whether ``step`` ran successfully."""
        return any(r.name == step and r.status == "done" for r in self.records)
