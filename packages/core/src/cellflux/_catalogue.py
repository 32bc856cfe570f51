"""The suite's own plugins, so that a missing one is named with the command that installs it.

Every entry here is checked against the installed manifests by the suite's tests: a name listed
for a package must be declared by that package's manifest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["SUITE", "SuitePackage", "package_providing"]


@dataclass(frozen=True)
class SuitePackage:
    """A package of the cellflux suite and the functions it provides."""

    plugin: str
    distribution: str
    module: str
    tl: frozenset[str] = field(default_factory=frozenset)
    pl: frozenset[str] = field(default_factory=frozenset)
    pp: frozenset[str] = field(default_factory=frozenset)


SUITE: tuple[SuitePackage, ...] = (
    SuitePackage(
        "kernels",
        "cellflux-kernels",
        "cellflux_kernels",
        tl=frozenset({"transition_matrix"}),
        pl=frozenset({"kernel_projection", "random_walks"}),
        pp=frozenset({"kernel_inputs"}),
    ),
    SuitePackage(
        "estimators",
        "cellflux-estimators",
        "cellflux_estimators",
        tl=frozenset({"absorption_times", "fate_probabilities", "lineage_drivers", "macrostates", "terminal_states"}),
        pl=frozenset(
            {
                "aggregate_fate_probabilities",
                "coarse_T",
                "fate_probabilities",
                "gene_trends",
                "lineage_drivers",
                "macrostates",
                "schur_vectors",
                "spectrum",
                "trend_heatmap",
            }
        ),
    ),
    SuitePackage(
        "gp_differential",
        "cellflux-gp-differential",
        "cellflux_gp_differential",
        tl=frozenset({"differential_abundance", "differential_expression", "gp_smooth"}),
        pl=frozenset(
            {
                "differential_abundance_volcano",
                "differential_expression_volcano",
                "direction_barplot",
                "fold_change_embedding",
                "smoothed_expression",
            }
        ),
    ),
    SuitePackage(
        "velocity_vae",
        "cellflux-velocity-vae",
        "cellflux_velocity_vae",
        tl=frozenset({"velocity_vae"}),
        pl=frozenset({"velocity_vae_latent_time", "velocity_vae_phase_portraits", "velocity_vae_uncertainty"}),
    ),
    SuitePackage(
        "streaming_models",
        "cellflux-streaming-models",
        "cellflux_streaming_models",
        tl=frozenset({"pca_streaming"}),
        pp=frozenset({"highly_variable_genes_streaming"}),
    ),
)


def package_providing(namespace: str, name: str) -> SuitePackage | None:
    """The suite package that provides ``namespace.name`` (or the plugin module ``name``), if any."""
    for package in SUITE:
        if namespace == "module" and name == package.plugin:
            return package
        if namespace != "module" and name in getattr(package, namespace):
            return package
    return None
