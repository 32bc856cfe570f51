"""The suite's main job as one pipeline: preprocessing, velocity, kernels, fates, differential, streaming.

Used by ``cellflux demo`` and ``cellflux run``. Nothing here is imported by ``import cellflux``; each
step imports scanpy and the suite's packages when it runs, and is skipped with a message when its
package is not installed or the data cannot support it.
"""

from ._context import STEPS, Context, PipelineConfig, StepSkipped
from .runner import run_pipeline

__all__ = ["STEPS", "Context", "PipelineConfig", "StepSkipped", "run_pipeline"]
