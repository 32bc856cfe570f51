"""The AnnData keys the core reads and writes, in one place.

Other packages refer to the simulator's ground truth through :class:`TruthKey` rather than
repeating string literals.
"""

from __future__ import annotations

from typing import Final

__all__ = ["ProvenanceKey", "TruthKey"]


class TruthKey:
    """Where :func:`cellflux.datasets.simulate` stores its data and ground truth."""

    # layers
    SPLICED: Final = "spliced"
    UNSPLICED: Final = "unspliced"
    VELOCITY: Final = "true_velocity"
    VELOCITY_U: Final = "true_velocity_u"
    # obs
    TIME: Final = "true_time"
    LINEAGE: Final = "true_lineage"  # the lineage a cell is (or will be) committed to
    STATE: Final = "true_state"  # "progenitor" before the branch point, else the lineage
    CLUSTERS: Final = "clusters"  # coarse annotation a user would have (state x stage)
    TERMINAL: Final = "true_terminal"
    INITIAL: Final = "true_initial"
    CONDITION: Final = "condition"
    SAMPLE: Final = "sample"
    CELL_CYCLE_PHASE: Final = "true_cell_cycle_phase"
    SIZE_FACTOR: Final = "true_size_factor"
    DA_LOG_FOLD_CHANGE: Final = "true_da_log_fold_change"
    DA: Final = "true_da"
    DE_REGION: Final = "true_de_region"
    # obsm
    FATE_PROBABILITIES: Final = "true_fate_probabilities"
    # var
    PROGRAM: Final = "gene_program"
    ALPHA_BASAL: Final = "true_alpha_basal"
    ALPHA_ON: Final = "true_alpha_on"
    BETA: Final = "true_beta"
    GAMMA: Final = "true_gamma"
    SCALE: Final = "true_scale"
    DISPERSION: Final = "true_dispersion"
    CELL_CYCLE_GENE: Final = "true_cell_cycle_gene"
    DE: Final = "true_de"
    DE_LOG_FOLD_CHANGE: Final = "true_de_log_fold_change"
    # varm
    SWITCH_ON: Final = "true_switch_on"
    SWITCH_OFF: Final = "true_switch_off"
    # uns
    SIMULATION: Final = "simulation"


class ProvenanceKey:
    """Names inside ``uns[key]`` written by :class:`cellflux.results.Results`."""

    PARAMS: Final = "params"
    PROVENANCE: Final = "provenance"
