"""No package of the suite breaks its callers without a release that may break.

Each package's public API (``__all__`` and its ``cf.tl``/``cf.pl``/``cf.pp`` functions, see
:mod:`cellflux.testing.api`) is compared with the snapshot of its release in ``tests/api/``. A
breaking change (a parameter renamed, a default changed, a method removed, ...) fails unless the
version is a new major, or before 1.0 a new minor, one; a new version fails until its snapshot is
recorded, which is the moment to check the changes listed and the CHANGELOG::

    python -m cellflux.testing.api cellflux_kernels --write tests/api/cellflux-kernels.json
"""

import importlib.util
import json
from pathlib import Path

import pytest

from cellflux._catalogue import SUITE
from cellflux.testing.api import api_problems, describe_api

SNAPSHOTS = Path(__file__).parent / "api"
PACKAGES = [("cellflux", "cellflux"), *((p.distribution, p.module) for p in SUITE)]


@pytest.mark.parametrize(("distribution", "module"), PACKAGES, ids=[d for d, _ in PACKAGES])
def test_public_api_is_compatible_with_its_release(distribution, module):
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{distribution} is not installed")
    path = SNAPSHOTS / f"{distribution}.json"
    assert path.exists(), f"no API snapshot of {distribution}: python -m cellflux.testing.api {module} --write {path}"
    problems = api_problems(json.loads(path.read_text()), describe_api(module))
    fix = (
        "\nIf intended: bump the version, note it in the CHANGELOG, then\n"
        f"  python -m cellflux.testing.api {module} --write tests/api/{path.name}"
    )
    assert not problems, "\n".join(problems) + fix


def test_every_suite_package_has_a_snapshot():
    assert sorted(p.name for p in SNAPSHOTS.glob("*.json")) == sorted(f"{d}.json" for d, _ in PACKAGES)
