"""The core's catalogue of suite functions agrees with what the installed suite packages declare."""

import pytest

from cellflux._catalogue import SUITE
from cellflux._registry import default_registry


@pytest.mark.parametrize("package", SUITE, ids=[p.distribution for p in SUITE])
def test_catalogue_matches_manifest(package):
    plugins = {p.name: p for p in default_registry().loaded}
    info = plugins.get(package.plugin)
    if info is None:
        pytest.skip(f"{package.distribution} is not installed")
    assert info.distribution == package.distribution
    assert info.manifest.module == package.module
    for namespace in ("tl", "pl", "pp"):
        missing = getattr(package, namespace) - set(info.manifest.functions(namespace))
        assert not missing, f"the catalogue lists {sorted(missing)} for {package.distribution}, which lacks them"
