"""Gaussian-process differential abundance and expression between conditions, on mellon.

Array-level models (no AnnData): :class:`DifferentialAbundance`, :class:`DifferentialExpression`,
:class:`ExpressionModel`, :class:`SampleVarianceEstimator`, :func:`compute_fdr`. The scanpy-style
functions are ``cf.tl.differential_abundance``, ``cf.tl.differential_expression``,
``cf.tl.gp_smooth`` and the ``cf.pl`` plots. Everything is imported on first use.
"""

from cellflux.plugin import lazy_exports

from ._version import __version__

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "DifferentialAbundance": "._abundance:DifferentialAbundance",
        "DifferentialExpression": "._expression:DifferentialExpression",
        "ExpressionModel": "._expression_model:ExpressionModel",
        "SampleVarianceEstimator": "._sample_variance:SampleVarianceEstimator",
        "compute_fdr": "._fdr:compute_fdr",
        "default_length_scale": "._params:default_length_scale",
        "pca": "._representation:pca",
        "diffusion_components": "._representation:diffusion_components",
        "log_normalize": "._representation:log_normalize",
    },
)
__all__ = [*__all__, "__version__"]
