"""Datasets: a branching-differentiation simulator with full ground truth, and real data loaders.

``cf.datasets.simulate`` is the suite's embedded default for demos, tests and accuracy benchmarks at
any size, with its ground truth stored under the keys of :class:`TruthKey`; ``cf.datasets.pancreas``
loads the public E15.5 pancreas data.
"""

from .._keys import TruthKey
from ._pancreas import pancreas
from ._simulate import iter_simulate, simulate, simulate_shards

__all__ = ["TruthKey", "iter_simulate", "pancreas", "simulate", "simulate_shards"]
