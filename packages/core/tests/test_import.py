"""``import cellflux`` stays light, also with every plugin installed and the namespaces listed."""

import json
import subprocess
import sys

HEAVY = ["anndata", "pandas", "scipy", "h5py", "torch", "jax", "scvi", "scanpy", "matplotlib", "lightning"]

SCRIPT = """
import json, sys, time
start = time.perf_counter()
import cellflux as cf
elapsed = time.perf_counter() - start
names = dir(cf.tl) + dir(cf.pl) + dir(cf.pp)
print(json.dumps({"seconds": elapsed, "modules": sorted(sys.modules)}))
"""


def run_fresh(script):
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_and_listing_import_nothing_heavy():
    result = run_fresh(SCRIPT)
    loaded = {m.split(".")[0] for m in result["modules"]}
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_datasets_are_imported_on_first_use():
    result = run_fresh(
        "import json, sys, cellflux as cf; cf.datasets; print(json.dumps({'modules': list(sys.modules)}))"
    )
    assert "cellflux.datasets" in result["modules"]
    assert "anndata" in result["modules"]
