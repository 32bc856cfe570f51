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
    SuitePackage("kernels", "cellflux-kernels", "cellflux_kernels"),
    SuitePackage("estimators", "cellflux-estimators", "cellflux_estimators"),
    SuitePackage("gp_differential", "cellflux-gp-differential", "cellflux_gp_differential"),
    SuitePackage("velocity_vae", "cellflux-velocity-vae", "cellflux_velocity_vae"),
    SuitePackage("streaming_models", "cellflux-streaming-models", "cellflux_streaming_models"),
)


def package_providing(namespace: str, name: str) -> SuitePackage | None:
    """The suite package that provides ``namespace.name`` (or the plugin module ``name``), if any."""
    for package in SUITE:
        if namespace == "module" and name == package.plugin:
            return package
        if namespace != "module" and name in getattr(package, namespace):
            return package
    return None
