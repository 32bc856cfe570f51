"""Dry-run memory estimate of the Mahalanobis step vs its measured peak, each setting in a fresh process.

Run from the repository root::

    python packages/gp-differential/benchmarks/memory.py

For every setting a fresh Python process simulates the data, fits ``DifferentialExpression`` with
empirical and sample variance (three samples per condition), runs the Mahalanobis step once (so that
its kernels are compiled), hands freed heap memory back to the OS (``malloc_trim``) and then measures
the peak resident memory of a second, identical call above the level before it (sampled every 2 ms).
Writes ``benchmarks/results/memory.json``; the ratio estimate / measured is what the docs quote.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).parent
SETTINGS = [
    # cells, genes, landmarks, budget (MiB)
    (2000, 400, 1000, 200),
    (3500, 1100, 1000, 200),
    (3500, 1100, 1000, 80),
    (3500, 1100, 500, 400),
]

_CHILD = """
import os, sys, json, ctypes, warnings, logging
warnings.simplefilter("ignore"); logging.disable(logging.WARNING)
sys.path.insert(0, {here!r})
import run as bench
from cellflux_gp_differential import DifferentialExpression
from cellflux_gp_differential._params import landmarks_kmeans
n, g, nl, budget = {setting!r}
adata, y, reps = bench.simulate(n, g)
m1, m2, samples = bench.masks(adata)
x = reps["pca"]
de = DifferentialExpression(use_empirical_variance=True, memory_budget=budget * 1024**2).fit(
    x[m1], y[m1], x[m2], y[m2], landmarks=landmarks_kmeans(x, nl, 0),
    condition1_sample_indices=samples[m1], condition2_sample_indices=samples[m2],
)
de.compute_mahalanobis_distances(x, progress=False)  # compile
ctypes.CDLL("libc.so.6").malloc_trim(0)
plan = de.estimate_memory()
with bench.PeakRSS(interval=0.002) as peak:
    de.compute_mahalanobis_distances(x, progress=False)
print(json.dumps({{"n_cells": n, "n_genes": g, "n_points": nl, **plan, "measured_peak_bytes": peak.delta,
                  "ratio_estimate_over_measured": round(plan["bytes"] / max(peak.delta, 1), 2)}}))
"""


def measure(setting: tuple[int, int, int, int]) -> dict:
    """Estimate and measured peak of one ``(cells, genes, landmarks, budget MiB)`` setting, in a fresh process."""
    out = subprocess.run(
        [sys.executable, "-c", _CHILD.format(here=str(HERE), setting=setting)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    rows = []
    for setting in SETTINGS:
        row = measure(setting)
        print(json.dumps(row), flush=True)
        rows.append(row)
    path = HERE / "results" / "memory.json"
    path.write_text(json.dumps(rows, indent=1))
    print("wrote", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
