"""Per-gene truth: gene programs, kinetic rates, switch times and the choice of the DE genes."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np

from ._config import Config
from ._constants import PROGRAMS, STREAM_DE, STREAM_GENES, generator

__all__ = ["Genes", "build_genes", "choose_de_genes"]

#: Fractions of genes per program (largest-remainder rounding).
_PROGRAM_FRACTIONS = (0.15, 0.08, 0.15, 0.55, 0.07)
_DYNAMIC = ("trunk", "lineage_specific", "shared")


def _program_counts(n_genes: int) -> np.ndarray:
    """Number of genes per program, by largest-remainder rounding of the program fractions.

    Parameters
    ----------
    n_genes
        Number of genes.

    Returns
    -------
    numpy.ndarray
        Counts aligned with :data:`PROGRAMS`, summing to ``n_genes``.
    """
    exact = np.asarray(_PROGRAM_FRACTIONS) * n_genes
    counts = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: n_genes - counts.sum()]] += 1
    return counts


@dataclass(frozen=True)
class Genes:
    """Per-gene truth: programs, rates, switch times, count scale and noise."""

    program: np.ndarray  # (G,) codes into PROGRAMS
    beta: np.ndarray
    gamma: np.ndarray
    alpha_basal: np.ndarray
    alpha_on: np.ndarray  # (G, L) rate when switched on in each lineage
    switch_on: np.ndarray  # (G, L)
    switch_off: np.ndarray  # (G, L)
    scale: np.ndarray
    theta: np.ndarray
    cell_cycle: np.ndarray  # (G,) bool
    cc_amplitude: np.ndarray  # (G,), 0 for non cell-cycle genes
    cc_phase: np.ndarray  # (G,), 0 for non cell-cycle genes


def _switch_times(
    rng: np.random.Generator, program: np.ndarray, n_lineages: int, t_branch: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw switch-on/off times and the per-lineage on-rate multipliers of every gene.

    Parameters
    ----------
    rng
        The gene generator.
    program
        ``(G,)`` program codes.
    n_lineages
        Number of lineages.
    t_branch
        Branch time.

    Returns
    -------
    switch_on, switch_off, multiplier
        ``(G, L)`` arrays; ``inf`` where a gene never switches on/off in a lineage; the multiplier
        scales the on-rate (below 1 for the second lineage of shared genes).
    """
    n_genes = program.shape[0]
    post = 1.0 - t_branch
    trunk_on = rng.uniform(0.0, min(0.1, 0.5 * t_branch), n_genes)
    trunk_off = rng.uniform(0.8 * t_branch, t_branch + 0.5 * post, n_genes)
    trunk_off[rng.random(n_genes) < 0.2] = np.inf
    lineage_on = rng.uniform(t_branch, t_branch + 0.4 * post, (n_genes, n_lineages))
    transient = rng.random(n_genes) < 0.3
    off_after = rng.uniform(0.2 * post, 0.45 * post, n_genes)
    second_multiplier = rng.uniform(0.5, 1.0, n_genes)

    switch_on = np.full((n_genes, n_lineages), np.inf)
    switch_off = np.full((n_genes, n_lineages), np.inf)
    multiplier = np.ones((n_genes, n_lineages))
    trunk = program == PROGRAMS.index("trunk")
    switch_on[trunk] = trunk_on[trunk, None]
    switch_off[trunk] = trunk_off[trunk, None]

    (specific,) = np.nonzero(program == PROGRAMS.index("lineage_specific"))
    lineage = np.arange(specific.size) % n_lineages
    switch_on[specific, lineage] = lineage_on[specific, lineage]
    off = lineage_on[specific, lineage] + off_after[specific]
    switch_off[specific, lineage] = np.where(transient[specific] & (off < 1.0), off, np.inf)

    (shared,) = np.nonzero(program == PROGRAMS.index("shared"))
    pairs = np.array(list(combinations(range(n_lineages), 2)))
    pairs = pairs[rng.permutation(len(pairs))][np.arange(shared.size) % len(pairs)]
    for column in (0, 1):
        switch_on[shared, pairs[:, column]] = lineage_on[shared, pairs[:, column]]
    multiplier[shared, pairs[:, 1]] = second_multiplier[shared]
    return switch_on, switch_off, multiplier


def build_genes(config: Config) -> Genes:
    """Draw every per-gene parameter from the seed.

    Parameters
    ----------
    config
        The configuration.

    Returns
    -------
    Genes
        Programs, kinetic rates (``beta`` around 10, ``gamma`` around 5, lognormal), switch times,
        count scales (on-level expected counts lognormal around 3, housekeeping around 1.5) and
        negative-binomial inverse dispersions (lognormal around 5).
    """
    rng = generator(config.seed, STREAM_GENES)
    n_genes = config.n_genes
    program = rng.permutation(np.repeat(np.arange(len(PROGRAMS)), _program_counts(n_genes)))
    beta = np.exp(rng.normal(np.log(10.0), 0.35, n_genes))
    gamma = np.exp(rng.normal(np.log(5.0), 0.35, n_genes))
    alpha_level = np.exp(rng.normal(np.log(20.0), 0.5, n_genes))
    basal_fraction = np.exp(rng.uniform(np.log(0.005), np.log(0.05), n_genes))
    on_count = np.exp(rng.normal(np.log(3.0), 0.9, n_genes))
    housekeeping_count = np.exp(rng.normal(np.log(1.5), 1.0, n_genes))
    theta = np.exp(rng.normal(np.log(5.0), 0.5, n_genes))
    cc_amplitude = rng.uniform(0.7, 1.5, n_genes)
    cc_phase = rng.uniform(0.0, 2.0 * np.pi, n_genes)
    switch_on, switch_off, multiplier = _switch_times(rng, program, config.n_lineages, config.t_branch)

    constant = np.isin(program, [PROGRAMS.index("housekeeping"), PROGRAMS.index("cell_cycle")])
    alpha_basal = np.where(constant, alpha_level, alpha_level * basal_fraction)
    alpha_on = np.where(np.isfinite(switch_on), alpha_level[:, None] * multiplier, alpha_basal[:, None])
    level = np.clip(np.where(constant, housekeeping_count, on_count), 0.05, 50.0)
    scale = level * gamma / alpha_level
    cell_cycle = (program == PROGRAMS.index("cell_cycle")) & config.cell_cycle
    if not config.cell_cycle:
        program = np.where(program == PROGRAMS.index("cell_cycle"), PROGRAMS.index("housekeeping"), program)
    return Genes(
        program=program,
        beta=beta,
        gamma=gamma,
        alpha_basal=alpha_basal,
        alpha_on=alpha_on,
        switch_on=switch_on,
        switch_off=switch_off,
        scale=scale,
        theta=theta,
        cell_cycle=cell_cycle,
        cc_amplitude=np.where(cell_cycle, cc_amplitude, 0.0),
        cc_phase=np.where(cell_cycle, cc_phase, 0.0),
    )


def choose_de_genes(config: Config, genes: Genes) -> tuple[np.ndarray, np.ndarray]:
    """Pick the DE genes and their log fold changes of the transcription rate.

    Dynamic genes that stay on in ``de_lineage`` once switched on (so that the planted fold change shows
    in the region) are preferred, then the other dynamic genes, each group in random order.

    Parameters
    ----------
    config
        The configuration.
    genes
        The genes.

    Returns
    -------
    indices, log_fold_change
        Sorted DE gene indices and the natural-log fold change of each (both empty with one condition).

    Raises
    ------
    ValueError
        If more DE genes are requested than there are dynamic genes.
    """
    rng = generator(config.seed, STREAM_DE)
    dynamic = np.isin(genes.program, [PROGRAMS.index(p) for p in _DYNAMIC])
    n_dynamic = int(dynamic.sum())
    if isinstance(config.de_genes, tuple):
        indices = np.asarray(config.de_genes, dtype=np.int64)
    else:
        n_de = round(0.1 * config.n_genes) if config.de_genes is None else config.de_genes
        if config.de_genes is None:
            n_de = min(n_de, n_dynamic)
        if n_de > n_dynamic:
            raise ValueError(f"`de_genes`={n_de} exceeds the {n_dynamic} available dynamic genes.")
        lineage = config.de_lineage
        active = dynamic & (genes.switch_on[:, lineage] < 1.0) & np.isinf(genes.switch_off[:, lineage])
        priority = rng.random(config.n_genes) + np.where(active, 0.0, 1.0) + np.where(dynamic, 0.0, 2.0)
        indices = np.argsort(priority, kind="stable")[:n_de]
    signs = {"up": np.ones(indices.size), "down": -np.ones(indices.size)}.get(config.de_direction)
    if signs is None:
        signs = rng.choice(np.array([-1.0, 1.0]), indices.size)
    order = np.argsort(indices)
    lfc = signs * np.log(config.de_fold_change)
    if config.n_conditions == 1:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    return indices[order], lfc[order]
