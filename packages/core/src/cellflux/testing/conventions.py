"""Convention checks for registered functions, for the suite's tests and for third-party plugins.

A plugin author runs the same checks the suite runs on its own packages::

    import pytest
    from cellflux.testing.conventions import check_plugin_calls

    @pytest.mark.parametrize("call", check_plugin_calls("my_plugin"), ids=str)
    def test_conventions(call, tmp_path):
        call.check(tmp_path)

Every check raises :class:`ConventionError` (an :class:`AssertionError`) that says what to fix.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "ConventionError",
    "ConventionCheck",
    "assert_same",
    "check_plugin_calls",
    "check_signature",
    "check_writer",
    "returns_section",
]

_RETURNS = re.compile(r"\n\s*Returns\n\s*-+\n(.*?)(\n\s*\w[\w ]*\n\s*-+\n|\Z)", re.S)


class ConventionError(AssertionError):
    """A registered function breaks one of the suite's conventions."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConventionError(message)


def returns_section(doc: str | None) -> str | None:
    """The body of a numpydoc ``Returns`` section, or ``None`` when the docstring has none."""
    match = _RETURNS.search(doc or "")
    return match.group(1) if match else None


def check_signature(func: Callable[..., Any], namespace: str, name: str | None = None) -> None:
    """Check the scanpy-style signature of a ``cf.tl``/``cf.pp``/``cf.pl`` function.

    ``adata`` first and positional, every other option keyword-only, a numpydoc ``Returns`` section,
    and for writers (``tl``/``pp``) ``key_added``, ``copy=False`` and ``mod``.

    Raises
    ------
    ConventionError
        Naming the first convention the function breaks.
    """
    label = f"{namespace}.{name or func.__name__}"
    params = list(inspect.signature(func).parameters.values())
    _require(bool(params), f"{label} takes no arguments")
    _require(params[0].name == "adata", f"{label}: the first parameter must be `adata`")
    _require(
        params[0].kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD),
        f"{label}: `adata` must be positional",
    )
    for p in params[1:]:
        _require(p.kind in (p.KEYWORD_ONLY, p.VAR_KEYWORD), f"{label}: `{p.name}` must be keyword-only")
    _require(returns_section(func.__doc__) is not None, f"{label} documents no Returns section")
    if namespace in ("tl", "pp"):
        by_name = {p.name: p for p in params}
        _require("key_added" in by_name, f"{label} writes results but takes no `key_added`")
        copy = by_name.get("copy")
        _require(copy is not None and copy.default is False, f"{label}: `copy=False` is required")
        _require("mod" in by_name, f"{label} must accept MuData through `mod=`")


def _snapshot(adata: Any) -> dict[str, set]:
    from ..results import SLOTS

    return {slot: set(getattr(adata, slot).keys()) for slot in SLOTS}


def assert_same(a: Any, b: Any, where: str) -> None:
    """Recursively compare a value written to AnnData with the same value read back from h5ad."""
    import numpy as np
    import pandas as pd
    from scipy import sparse

    if isinstance(a, Mapping):
        _require(set(a) == set(b), f"{where}: keys differ after the round trip")
        for k in a:
            assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif sparse.issparse(a):
        _require(sparse.issparse(b) and a.shape == b.shape and (a != b).nnz == 0, f"{where} differs")
    elif isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b, check_names=False, obj=where)
    elif isinstance(a, pd.Series):
        pd.testing.assert_series_equal(a, b, check_names=False, obj=where)
    elif a is None:
        _require(b is None, f"{where}: None became {b!r}")
    else:
        a, b = np.asarray(a), np.asarray(b)
        if a.dtype.kind in "fc":
            np.testing.assert_allclose(a, b, equal_nan=True, err_msg=where)
        else:
            np.testing.assert_array_equal(a, b, err_msg=where)


def check_writer(
    func: Callable[..., Any], adata: Any, kwargs: Mapping[str, Any], tmp_path: str | Path, label: str = ""
) -> dict[str, list[str]]:
    """Check what a ``tl``/``pp`` function writes, on ``adata`` prepared for the call ``kwargs``.

    ``copy=True`` leaves the input untouched and returns an AnnData with the same fields; the in-place
    call returns ``None``, writes something, records provenance listing exactly the fields written,
    documents each written slot under *Returns*, refuses a second call without ``overwrite``, and
    everything written survives an h5ad round trip.

    Returns
    -------
    The fields written, by slot.
    """
    import anndata as ad

    label = label or func.__name__
    before = _snapshot(adata)
    untouched = adata.copy()
    copied = func(adata, **kwargs, copy=True)
    _require(isinstance(copied, ad.AnnData), f"{label}(copy=True) must return the AnnData copy")
    _require(_snapshot(adata) == before, f"{label}(copy=True) modified its input")
    _require(func(adata, **kwargs) is None, f"{label}(copy=False) must return None")
    after = _snapshot(adata)
    written = {slot: sorted(keys - before[slot]) for slot, keys in after.items() if keys - before[slot]}
    _require(bool(written), f"{label} wrote nothing")
    _require(_snapshot(copied) == after, f"{label}: copy=True and copy=False wrote different fields")

    records = [adata.uns[k] for k in written.get("uns", []) if "provenance" in adata.uns[k]]
    _require(bool(records), f"{label} recorded no provenance (write through cellflux.results.Results)")
    recorded = {slot: sorted(keys) for r in records for slot, keys in r["provenance"]["written"].items()}
    _require(recorded == written, f"{label}: the provenance lists {recorded}, but {written} were written")

    returns = returns_section(func.__doc__) or ""
    for slot in written:
        _require(f"{slot}[" in returns, f"{label} writes {slot} but its Returns section does not say so")

    try:
        func(adata, **kwargs)
    except KeyError as err:
        _require("already exist" in str(err), f"{label}: a second call raised an unexpected KeyError: {err}")
    else:
        raise ConventionError(f"{label}: a second call overwrote existing results without overwrite=True")

    path = Path(tmp_path) / "conventions.h5ad"
    adata.write_h5ad(path)
    back = ad.read_h5ad(path)
    for slot, keys in written.items():
        for key in keys:
            assert_same(getattr(adata, slot)[key], getattr(back, slot)[key], f"{slot}[{key!r}]")
    assert_same(untouched.X, back.X, "X")
    return written


@dataclass(frozen=True)
class ConventionCheck:
    """One registered function of one plugin, ready to be checked (a pytest parameter)."""

    plugin: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}.{self.name}"

    def check(self, tmp_path: str | Path, adata: Any = None) -> None:
        """Check the signature and, for writers, what the plugin's ``examples`` call writes.

        Parameters
        ----------
        tmp_path
            A scratch folder for the h5ad round trip.
        adata
            The data to run the example on; by default ``cf.datasets.simulate(n_cells=300, n_genes=60,
            n_conditions=2, seed=0)``.
        """
        from .._registry import default_registry
        from ..plugin import load_target

        registry = default_registry()
        func = registry.resolve(self.namespace, self.name)
        check_signature(func, self.namespace, self.name)
        if self.namespace == "pl":
            return
        (info,) = [p for p in registry.loaded if p.name == self.plugin]
        target = info.manifest.examples.get(str(self))
        _require(bool(target), f"{self.plugin} declares no example for {self} (manifest `examples`)")
        example = load_target(target)
        if adata is None:
            from ..datasets import simulate

            adata = simulate(n_cells=300, n_genes=60, n_conditions=2, seed=0)
        check_writer(func, adata, example(adata), tmp_path, label=str(self))


def check_plugin_calls(plugin: str | None = None) -> list[ConventionCheck]:
    """Every registered function of one installed plugin (or of all of them), as checks to run."""
    from .._registry import default_registry
    from ..plugin import NAMESPACES

    registry = default_registry()
    plugins = [p for p in registry.loaded if plugin is None or p.name == plugin]
    if plugin is not None and not plugins:
        raise ValueError(f"No loaded plugin named {plugin!r}; installed: {[p.name for p in registry.loaded]}.")
    return [
        ConventionCheck(p.name, ns, name)
        for p in plugins
        for ns in NAMESPACES
        for name in sorted(p.manifest.functions(ns))
    ]
