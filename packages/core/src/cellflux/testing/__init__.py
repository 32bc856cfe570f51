"""Testing helpers shared by every package of the suite.

The pytest plugin :mod:`cellflux.testing.pytest_plugin` is registered through the ``pytest11``
entry point, so any test suite in an environment with cellflux installed gets its fixtures:
``rng``, ``sim_adata``, ``simulated``, ``shared_data_dir``, ``pancreas_adata`` and
``dentategyrus_adata`` (the last two skip cleanly when the shared data are absent).
"""

from ._shared import find_shared_data, shared_file

__all__ = ["find_shared_data", "shared_file"]
