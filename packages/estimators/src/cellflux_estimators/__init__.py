"""GPCCA and CFLARE estimators for cellflux.

Schur and eigen decompositions without PETSc/SLEPc, macrostates, terminal and initial states, fate
probabilities, absorption times, lineage drivers and gene trends, over any kernel, kernel expression or
row-stochastic sparse matrix.
"""

from cellflux.plugin import lazy_exports

from ._version import __version__

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "GPCCA": "._estimators._gpcca:GPCCA",
        "CFLARE": "._estimators._cflare:CFLARE",
        "KernelLike": "._protocol:KernelLike",
        "ReducibleChainError": "._engine._checks:ReducibleChainError",
        "SolveError": "._engine._linsolve:SolveError",
        "partial_schur": "._engine._schur:partial_schur",
        "eigendecomposition": "._engine._eigen:eigendecomposition",
        "eigengap": "._engine._eigen:eigengap",
        "absorption_probabilities": "._engine._absorption:absorption_probabilities",
        "absorption_times": "._engine._absorption:absorption_times",
        "driver_test": "._engine._drivers:driver_test",
        "fit_trends": "._engine._trends:fit_trends",
        "knn_transition_matrix": "._engine._toy:knn_transition_matrix",
        "from_adata": "._load:from_adata",
    },
)
__all__ = [*__all__, "__version__"]
