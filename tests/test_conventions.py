"""Every registered function follows the suite's conventions, and everything it writes survives h5ad.

The functions come from the installed plugins (the suite's own and the dummy third-party one), so
this test covers each package as it lands.
"""

import inspect
import re

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from cellflux._registry import default_registry
from cellflux.plugin import NAMESPACES, parse_target
from cellflux.results import SLOTS

REGISTRY = default_registry()
FUNCTIONS = [(ns, name) for ns in NAMESPACES for name in REGISTRY.names(ns)]
WRITERS = [(ns, name) for ns, name in FUNCTIONS if ns in ("tl", "pp")]


def returns_section(doc):
    match = re.search(r"\n\s*Returns\n\s*-+\n(.*?)(\n\s*\w[\w ]*\n\s*-+\n|\Z)", doc or "", re.S)
    return match.group(1) if match else None


@pytest.mark.parametrize(("namespace", "name"), FUNCTIONS, ids=[f"{ns}.{n}" for ns, n in FUNCTIONS])
def test_signature_convention(namespace, name):
    func = REGISTRY.resolve(namespace, name)
    params = list(inspect.signature(func).parameters.values())
    assert params, f"{namespace}.{name} takes no arguments"
    assert params[0].name == "adata", f"{namespace}.{name}: the first parameter must be `adata`"
    assert params[0].kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    for p in params[1:]:
        assert p.kind in (p.KEYWORD_ONLY, p.VAR_KEYWORD), f"{namespace}.{name}: `{p.name}` must be keyword-only"
    assert returns_section(func.__doc__) is not None, f"{namespace}.{name} documents no Returns section"
    if namespace in ("tl", "pp"):
        by_name = {p.name: p for p in params}
        assert "key_added" in by_name, f"{namespace}.{name} writes results but takes no `key_added`"
        assert by_name.get("copy") is not None and by_name["copy"].default is False, "`copy=False` is required"
        assert "mod" in by_name, f"{namespace}.{name} must accept MuData through `mod=`"


def snapshot(adata):
    return {slot: set(getattr(adata, slot).keys()) for slot in SLOTS}


def assert_same(a, b, where):
    if isinstance(a, dict):
        assert set(a) == set(b), where
        for k in a:
            assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif sparse.issparse(a):
        assert sparse.issparse(b) and a.shape == b.shape and (a != b).nnz == 0, where
    elif isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b, check_names=False, obj=where)
    elif isinstance(a, pd.Series):
        pd.testing.assert_series_equal(a, b, check_names=False, obj=where)
    elif a is None:
        assert b is None, where
    else:
        a, b = np.asarray(a), np.asarray(b)
        if a.dtype.kind in "fc":
            np.testing.assert_allclose(a, b, equal_nan=True, err_msg=where)
        else:
            np.testing.assert_array_equal(a, b, err_msg=where)


@pytest.mark.parametrize(("namespace", "name"), WRITERS, ids=[f"{ns}.{n}" for ns, n in WRITERS])
def test_results_survive_h5ad_and_are_documented(namespace, name, simulated, tmp_path):
    (plugin,) = [p for p in REGISTRY.loaded if name in p.manifest.functions(namespace)]
    example_target = plugin.manifest.examples.get(f"{namespace}.{name}")
    assert example_target, f"{plugin.name} declares no example for {namespace}.{name} (manifest `examples`)"
    module, attr = parse_target(example_target)
    example = getattr(__import__(module, fromlist=[attr]), attr)
    func = REGISTRY.resolve(namespace, name)

    adata = simulated(n_cells=300, n_genes=60, n_conditions=2, seed=0)
    kwargs = example(adata)
    before = snapshot(adata)
    untouched = adata.copy()
    copied = func(adata, **kwargs, copy=True)
    assert isinstance(copied, ad.AnnData)
    assert snapshot(adata) == before, "copy=True modified the input"
    assert func(adata, **kwargs) is None
    written = {slot: sorted(keys - before[slot]) for slot, keys in snapshot(adata).items() if keys - before[slot]}
    assert written, f"{namespace}.{name} wrote nothing"
    assert snapshot(copied) == snapshot(adata)

    records = [adata.uns[k] for k in written.get("uns", []) if "provenance" in adata.uns[k]]
    assert records, f"{namespace}.{name} recorded no provenance"
    recorded = {slot: sorted(keys) for r in records for slot, keys in r["provenance"]["written"].items()}
    assert recorded == written, "the provenance record must list exactly the fields written"

    returns = returns_section(func.__doc__)
    for slot in written:
        assert f"{slot}[" in returns, f"{namespace}.{name} writes {slot} but its Returns section does not say so"

    with pytest.raises(KeyError, match="already exist"):
        func(adata, **kwargs)  # a second call refuses to overwrite
    adata.write_h5ad(tmp_path / "result.h5ad")
    back = ad.read_h5ad(tmp_path / "result.h5ad")
    for slot, keys in written.items():
        for key in keys:
            assert_same(getattr(adata, slot)[key], getattr(back, slot)[key], f"{slot}[{key!r}]")
    assert_same(untouched.X, back.X, "X")
