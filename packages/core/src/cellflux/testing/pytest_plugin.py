"""Fixtures and markers for the suite's tests (loaded by pytest through the ``pytest11`` entry point)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from ._shared import find_shared_data, shared_file

_MARKERS = {
    "slow": "takes more than a few seconds",
    "gpu": "needs a GPU; skipped without one",
    "parity": "compares with a reference implementation that must be installed",
    "shared_data": "reads the shared real data; skipped when absent",
}


def pytest_configure(config: pytest.Config) -> None:
    """Register the suite's markers, so that strict markers work in every package's tests."""
    for name, text in _MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded random generator, fresh for each test."""
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def _simulation_cache() -> dict[tuple, Any]:
    return {}


@pytest.fixture
def simulated(_simulation_cache: dict[tuple, Any]) -> Callable[..., Any]:
    """A factory ``simulated(**kwargs)`` returning a copy of a cached ``cf.datasets.simulate(**kwargs)``."""
    from cellflux.datasets import simulate

    def make(**kwargs: Any) -> Any:
        key = tuple(sorted((k, repr(v)) for k, v in kwargs.items()))
        if key not in _simulation_cache:
            _simulation_cache[key] = simulate(**kwargs)
        return _simulation_cache[key].copy()

    return make


@pytest.fixture
def sim_adata(simulated: Callable[..., Any]) -> Any:
    """A small two-condition simulation (600 cells x 120 genes, seed 0), copied per test."""
    return simulated(n_cells=600, n_genes=120, n_conditions=2, seed=0)


@pytest.fixture(scope="session")
def shared_data_dir(request: pytest.FixtureRequest):
    """The shared data folder; the test is skipped when it is absent."""
    folder = find_shared_data(request.config.rootpath)
    if folder is None:
        pytest.skip("the shared data folder (../shared/data or $CELLFLUX_DATA_DIR) is absent")
    return folder


def _shared_loader(name: str) -> Callable[..., Any]:
    @pytest.fixture(scope="session")
    def cached(request: pytest.FixtureRequest) -> Any:
        import anndata as ad

        path = shared_file(name, request.config.rootpath)
        if path is None:
            pytest.skip(f"shared data file {name} is absent")
        with warnings.catch_warnings():
            # The shared files were written by older anndata versions; reading them is supported.
            warnings.filterwarnings("ignore", message=".*without encoding metadata", category=PendingDeprecationWarning)
            return ad.read_h5ad(path)

    return cached


_pancreas_cached = _shared_loader("pancreas.h5ad")
_dentategyrus_cached = _shared_loader("dentategyrus_100.h5ad")


@pytest.fixture
def pancreas_adata(_pancreas_cached: Any) -> Any:
    """The shared E15.5 pancreas data (3,696 cells, raw spliced/unspliced counts), copied per test."""
    return _pancreas_cached.copy()


@pytest.fixture
def dentategyrus_adata(_dentategyrus_cached: Any) -> Any:
    """The shared 100-cell dentate gyrus data processed by scVelo, copied per test."""
    return _dentategyrus_cached.copy()
