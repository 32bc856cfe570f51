"""Cell-to-cell transition matrices and their algebra.

Kernels: velocity, connectivity, pseudotime, CytoTRACE, real-time (optimal transport), precomputed.

Kernels read an AnnData and compute a row-stochastic CSR transition matrix; they combine with ``+``
and ``*`` (``0.8 * vk + 0.2 * ck``) into expressions that estimators consume through
``.transition_matrix``, ``.adata``, ``.backward`` and ``.params``.
"""

from cellflux.plugin import lazy_exports

from ._version import __version__

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "Kernel": "._kernels._base:Kernel",
        "KernelExpression": "._kernels._base:KernelExpression",
        "Constant": "._kernels._base:Constant",
        "KernelAdd": "._kernels._base:KernelAdd",
        "KernelMul": "._kernels._base:KernelMul",
        "VelocityKernel": "._kernels._velocity:VelocityKernel",
        "ConnectivityKernel": "._kernels._connectivity:ConnectivityKernel",
        "PseudotimeKernel": "._kernels._pseudotime:PseudotimeKernel",
        "PalantirKernel": "._kernels._pseudotime:PalantirKernel",
        "CytoTRACEKernel": "._kernels._cytotrace:CytoTRACEKernel",
        "PrecomputedKernel": "._kernels._precomputed:PrecomputedKernel",
        "RealTimeKernel": "._kernels._realtime:RealTimeKernel",
        "read_kernel": "._kernels._io:read_kernel",
        "Key": "._keys:Key",
        "similarity_logits": "._engine._velocity:similarity_logits",
        "softmax_from_logits": "._engine._velocity:softmax_from_logits",
        "stochastic_probabilities": "._engine._velocity:stochastic_probabilities",
        "monte_carlo_probabilities": "._engine._montecarlo:monte_carlo_probabilities",
    },
)
__all__ = [*__all__, "__version__"]
