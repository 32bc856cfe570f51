"""The cell-independent part of a simulation: conditions, samples, kinetic schedules, ``var`` and ``uns``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cellflux._keys import TruthKey

from .._kinetics import KineticSchedule, prepare_schedule
from ._config import Config
from ._constants import BLOCK_SIZE, PROGENITOR, PROGRAMS, STREAM_SAMPLES, generator
from ._genes import Genes, build_genes, choose_de_genes

__all__ = ["Model", "build_model"]

_SAMPLE_SIZE_LOG_SD = 0.1


@dataclass(frozen=True)
class Model:
    """Everything about a simulation that does not depend on the cells."""

    config: Config
    genes: Genes
    de_genes: np.ndarray
    de_log_fold_change: np.ndarray  # (n_de,)
    condition_weights: np.ndarray  # (C, L)
    sample_names: tuple[str, ...]
    sample_condition: np.ndarray  # (S,)
    sample_weights: np.ndarray  # (S, L)
    sample_log_size: np.ndarray  # (S,)
    da_log_fold_change: np.ndarray  # (L,)
    schedule: KineticSchedule  # paths p = condition * L + lineage
    var: pd.DataFrame
    uns: dict


def _condition_weights(config: Config) -> np.ndarray:
    """Lineage weights of every condition.

    Parameters
    ----------
    config
        The configuration.

    Returns
    -------
    numpy.ndarray
        ``(n_conditions, n_lineages)``; the second condition multiplies the ``da_lineage`` weight by
        ``da_factor`` and renormalises.
    """
    weights = [config.lineage_weights]
    if config.n_conditions == 2:
        treated = config.lineage_weights.copy()
        treated[config.da_lineage] *= config.da_factor
        weights.append(treated / treated.sum())
    return np.vstack(weights)


def _samples(
    config: Config, condition_weights: np.ndarray
) -> tuple[tuple[str, ...], np.ndarray, np.ndarray, np.ndarray]:
    """Samples: names, conditions, Dirichlet-jittered lineage weights and size-factor shifts.

    Parameters
    ----------
    config
        The configuration.
    condition_weights
        ``(C, L)`` lineage weights.

    Returns
    -------
    names, condition, weights, log_size
        Sample names (``<condition>_<j>``), ``(S,)`` condition codes, ``(S, L)`` lineage weights drawn
        from ``Dirichlet(w_c / sample_variability**2)`` (``w_c`` itself when the variability is 0) and
        ``(S,)`` log size-factor shifts ``~ N(0, 0.1**2)``.
    """
    rng = generator(config.seed, STREAM_SAMPLES)
    n_per = config.n_samples_per_condition
    names = tuple(f"{c}_{j + 1}" for c in config.condition_names for j in range(n_per))
    condition = np.repeat(np.arange(config.n_conditions), n_per)
    log_size = rng.normal(0.0, _SAMPLE_SIZE_LOG_SD, len(names))
    weights = condition_weights[condition].copy()
    if config.sample_variability > 0:
        concentration = weights / config.sample_variability**2
        weights = np.vstack([rng.dirichlet(c) for c in concentration])
        weights = np.clip(weights, 0.0, None)
        weights /= weights.sum(axis=1, keepdims=True)
    return names, condition, weights, log_size


def _schedule(config: Config, genes: Genes, de_genes: np.ndarray, de_lfc: np.ndarray) -> KineticSchedule:
    """Build the transcription schedules of every path and gene.

    Parameters
    ----------
    config
        The configuration.
    genes
        The genes.
    de_genes, de_lfc
        DE gene indices and log fold changes.

    Returns
    -------
    KineticSchedule
        Paths ``p = condition * n_lineages + lineage``; three breakpoints per gene (switch on, switch
        off and the DE start, ``inf`` when absent).
    """
    n_lineages, n_genes = config.n_lineages, config.n_genes
    fold = np.ones(n_genes)
    fold[de_genes] = np.exp(de_lfc)
    breakpoints, alphas = [], []
    for condition in range(config.n_conditions):
        for lineage in range(n_lineages):
            de_here = condition == 1 and lineage == config.de_lineage
            de_time = np.where(de_here & (fold != 1.0), config.de_time_start, np.inf)
            on, off = genes.switch_on[:, lineage], genes.switch_off[:, lineage]
            points = np.sort(np.column_stack([on, off, de_time]), axis=1)
            starts = np.column_stack([np.full(n_genes, -np.inf), points])
            active = (starts >= on[:, None]) & (starts < off[:, None])
            alpha = np.where(active, genes.alpha_on[:, lineage, None], genes.alpha_basal[:, None])
            alpha *= np.where(starts >= de_time[:, None], fold[:, None], 1.0)
            breakpoints.append(points)
            alphas.append(alpha)
    return prepare_schedule(np.stack(breakpoints), np.stack(alphas), genes.beta, genes.gamma)


def _var(config: Config, genes: Genes, de_genes: np.ndarray, de_lfc: np.ndarray) -> pd.DataFrame:
    """The gene annotation.

    Parameters
    ----------
    config
        The configuration.
    genes
        The genes.
    de_genes, de_lfc
        DE gene indices and log fold changes.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``gene_0000``-style names.
    """
    width = max(4, len(str(config.n_genes - 1)))
    names = np.char.add("gene_", np.char.zfill(np.arange(config.n_genes).astype(str), width))
    is_de = np.zeros(config.n_genes, dtype=bool)
    is_de[de_genes] = True
    lfc = np.zeros(config.n_genes)
    lfc[de_genes] = de_lfc
    return pd.DataFrame(
        {
            TruthKey.PROGRAM: pd.Categorical.from_codes(genes.program, categories=list(PROGRAMS)),
            TruthKey.ALPHA_BASAL: genes.alpha_basal,
            TruthKey.ALPHA_ON: genes.alpha_on.max(axis=1),
            TruthKey.BETA: genes.beta,
            TruthKey.GAMMA: genes.gamma,
            TruthKey.SCALE: genes.scale,
            TruthKey.DISPERSION: genes.theta,
            TruthKey.CELL_CYCLE_GENE: genes.cell_cycle,
            TruthKey.DE: is_de,
            TruthKey.DE_LOG_FOLD_CHANGE: lfc,
        },
        index=pd.Index(names.astype(object), name=None),
    )


def _strings(values: Sequence[str]) -> np.ndarray:
    """An object array of strings (what h5ad reads back).

    Parameters
    ----------
    values
        Strings.

    Returns
    -------
    numpy.ndarray
        1-d object array.
    """
    array = np.empty(len(values), dtype=object)
    array[:] = list(values)
    return array


def _uns(config: Config, model_parts: dict) -> dict:
    """The ``uns[TruthKey.SIMULATION]`` record: parameters, tree, names and weights (h5ad-writable).

    Parameters
    ----------
    config
        The configuration.
    model_parts
        ``condition_weights``, ``sample_names``, ``sample_condition``, ``sample_weights``,
        ``sample_log_size``, ``da_log_fold_change``, ``de_genes``, ``genes``.

    Returns
    -------
    dict
        Nested dict of scalars, strings and arrays only.
    """
    lineages = list(config.lineage_names)
    genes: Genes = model_parts["genes"]
    params = {
        "n_cells": config.n_cells,
        "n_genes": config.n_genes,
        "n_lineages": config.n_lineages,
        "t_branch": config.t_branch,
        "terminal_time": config.terminal_time,
        "initial_time": config.initial_time,
        "cell_cycle": config.cell_cycle,
        "n_conditions": config.n_conditions,
        "n_samples_per_condition": config.n_samples_per_condition,
        "sample_variability": config.sample_variability,
        "da_lineage": lineages[config.da_lineage],
        "da_factor": config.da_factor,
        "de_genes": int(model_parts["de_genes"].size),
        "de_lineage": lineages[config.de_lineage],
        "de_fold_change": config.de_fold_change,
        "de_direction": config.de_direction,
        "de_time_start": config.de_time_start,
        "unspliced_ratio": config.unspliced_ratio,
        "seed": config.seed,
        "truth_layers": config.truth_layers,
        "block_size": BLOCK_SIZE,
    }
    nodes = [PROGENITOR, *lineages]
    edges = np.empty((len(lineages), 2), dtype=object)
    edges[:, 0] = PROGENITOR
    edges[:, 1] = lineages
    return {
        "params": params,
        "lineage_names": _strings(lineages),
        "condition_names": _strings(config.condition_names),
        "sample_names": _strings(model_parts["sample_names"]),
        "sample_conditions": _strings([config.condition_names[c] for c in model_parts["sample_condition"]]),
        "lineage_weights": model_parts["condition_weights"],
        "sample_lineage_weights": model_parts["sample_weights"],
        "sample_log_size_shift": model_parts["sample_log_size"],
        "da_log_fold_change": model_parts["da_log_fold_change"],
        "de_gene_indices": model_parts["de_genes"].astype(np.int64),
        "tree": {
            "nodes": _strings(nodes),
            "node_start_time": np.array([0.0] + [config.t_branch] * len(lineages)),
            "node_end_time": np.array([config.t_branch] + [1.0] * len(lineages)),
            "edges": edges,
        },
        "cell_cycle_amplitude": genes.cc_amplitude,
        "cell_cycle_phase": genes.cc_phase,
        "program_categories": _strings(PROGRAMS),
    }


def build_model(config: Config) -> Model:
    """Build the cell-independent part of a simulation.

    Parameters
    ----------
    config
        The configuration.

    Returns
    -------
    Model
        Genes, DE truth, conditions, samples, schedules, ``var`` and ``uns``.
    """
    genes = build_genes(config)
    de_genes, de_lfc = choose_de_genes(config, genes)
    condition_weights = _condition_weights(config)
    sample_names, sample_condition, sample_weights, sample_log_size = _samples(config, condition_weights)
    da_lfc = np.zeros(config.n_lineages)
    if config.n_conditions == 2:
        da_lfc = np.log(condition_weights[1] / condition_weights[0])
    parts = {
        "genes": genes,
        "de_genes": de_genes,
        "condition_weights": condition_weights,
        "sample_names": sample_names,
        "sample_condition": sample_condition,
        "sample_weights": sample_weights,
        "sample_log_size": sample_log_size,
        "da_log_fold_change": da_lfc,
    }
    return Model(
        config=config,
        genes=genes,
        de_genes=de_genes,
        de_log_fold_change=de_lfc,
        condition_weights=condition_weights,
        sample_names=sample_names,
        sample_condition=sample_condition,
        sample_weights=sample_weights,
        sample_log_size=sample_log_size,
        da_log_fold_change=da_lfc,
        schedule=_schedule(config, genes, de_genes, de_lfc),
        var=_var(config, genes, de_genes, de_lfc),
        uns=_uns(config, parts),
    )
