"""A third-party plugin for tests: proves an outside package extends cellflux without touching it.

Its ``__init__`` exports lazily, so loading the manifest (``cellflux_dummy._manifest``) stays light.
"""

from cellflux.plugin import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__, {"dummy_score": "._tools:dummy_score", "dummy_log1p": "._tools:dummy_log1p"}
)
