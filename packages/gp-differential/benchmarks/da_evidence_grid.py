"""The ratio estimator's Laplace evidence and AUROC at every point of a length-scale x prior-std grid.

Run from the repository root::

    python packages/gp-differential/benchmarks/da_evidence_grid.py

For the settings of ``da_accuracy.py`` (seeds 0-2 at 2,000 cells, 0-1 at 3,500), its held-out seeds 3-4
and the replicate seeds 5-14 (2,000 cells), both representations, it fits the log ratio
(:func:`~cellflux_gp_differential._ratio.fit_log_ratio`, the landmarks of ``DifferentialAbundance``)
at 1, 2, 4, 8, 16, 32 times the density length scale and 0.5, 1, 2 times the default prior std (each
row warm-started from the previous length scale) and writes ``results/da_evidence_grid.json``: per
grid point ``[log evidence, AUROC of -z for the planted depletion, fit seconds]``, the point of largest
evidence (``best``) and the largest at the default prior std (``best_at_default_std``). It says whether
type-II maximum likelihood picks the length scales that rank the depletion best (the oracle: the grid
point of largest AUROC, which no user can know).
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

import run as bench  # noqa: E402

SETTINGS = [(2000, 400, 0), (2000, 400, 1), (2000, 400, 2), (3500, 1100, 0), (3500, 1100, 1)]
SETTINGS += [(2000, 400, seed) for seed in range(3, 15)]
LS_FACTORS = (1, 2, 4, 8, 16, 32)
STD_FACTORS = (0.5, 1.0, 2.0)


def main() -> int:
    warnings.simplefilter("ignore")
    from cellflux._keys import TruthKey
    from cellflux_gp_differential._abundance import default_ratio_prior_std
    from cellflux_gp_differential._params import default_length_scale, landmarks_kmeans
    from cellflux_gp_differential._ratio import fit_log_ratio

    rows = []
    for n, n_genes, seed in SETTINGS:
        adata, _, reps = bench.simulate(n, n_genes, seed)
        m1, m2, _ = bench.masks(adata)
        depleted = adata.obs[TruthKey.DA_LOG_FOLD_CHANGE].to_numpy() < 0
        for name, x in reps.items():
            pooled = np.vstack([x[m1], x[m2]])
            u = landmarks_kmeans(pooled, min(1000, len(pooled)), 0)
            base, s0 = default_length_scale(pooled), default_ratio_prior_std(len(pooled))
            grid = {}
            for std in STD_FACTORS:
                z0 = None
                for f in LS_FACTORS:
                    t0 = time.perf_counter()
                    p = fit_log_ratio(x[m1], x[m2], u, ls=f * base, scale=s0 * std, z0=z0)
                    seconds = time.perf_counter() - t0
                    z0 = p.z
                    mean, var = p.predict(x)
                    auroc = bench.auroc(depleted, -mean / np.sqrt(var + 1e-12))
                    grid[f"{f}x{std}"] = (round(p.log_evidence, 2), round(auroc, 4), round(seconds, 2))
            best = max(grid, key=lambda k: grid[k][0])
            best1 = max((k for k in grid if k.endswith("x1.0")), key=lambda k: grid[k][0])
            row = {"n_cells": n, "seed": seed, "representation": name, "best": best}
            row |= {"best_at_default_std": best1, "grid": grid, "load_average": [round(v, 2) for v in os.getloadavg()]}
            print(json.dumps(row), flush=True)
            rows.append(row)
    out = HERE / "results" / "da_evidence_grid.json"
    out.write_text(json.dumps(rows, indent=1))
    print("wrote", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
