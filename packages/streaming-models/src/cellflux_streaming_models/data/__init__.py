"""Out-of-core data: shard collections, the epoch plan and the iterable dataset."""

from ._collection import ShardCollection, resolve_paths
from ._dataset import ShardDataset, distributed_context
from ._h5 import ShardFile, ShardReadError
from ._plan import EpochPlan, batches_per_worker_consumed

__all__ = [
    "EpochPlan",
    "ShardCollection",
    "ShardDataset",
    "ShardFile",
    "ShardReadError",
    "batches_per_worker_consumed",
    "distributed_context",
    "resolve_paths",
]
