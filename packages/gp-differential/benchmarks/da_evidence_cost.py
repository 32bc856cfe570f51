"""Cost of the evidence search of the ratio's length scale: fixed fit vs grid (warm, cold, fewer landmarks).

Run from the repository root: ``python packages/gp-differential/benchmarks/da_evidence_cost.py``. Writes
``results/da_evidence_cost.json``: on seed 1 (2,000 and 3,500 cells, both representations) the seconds of
one log-ratio fit at the fixed length scale (compiled), of the six-point evidence grid warm-started (as
``ratio_ls="evidence"`` does) and cold-started, and of the grid on 300 instead of 1,000 landmarks, with
the factor each chooses and the largest difference of the log evidence between warm and cold starts.
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

FACTORS = np.array([1.0, 2.0, 4.0, 8.0, 16.0, 32.0])


def _seconds(f):
    t0 = time.perf_counter()
    out = f()
    return out, time.perf_counter() - t0


def main() -> int:
    warnings.simplefilter("ignore")
    from cellflux_gp_differential._abundance import default_ratio_prior_std
    from cellflux_gp_differential._params import default_length_scale, landmarks_kmeans
    from cellflux_gp_differential._ratio import fit_log_ratio
    from cellflux_gp_differential._ratio_evidence import select_ratio_length_scale

    rows = []
    for n, n_genes, seed in [(2000, 400, 1), (3500, 1100, 1)]:
        adata, _, reps = bench.simulate(n, n_genes, seed)
        m1, m2, _ = bench.masks(adata)
        for name, x in reps.items():
            x1, x2 = x[m1], x[m2]
            pooled = np.vstack([x1, x2])
            u = landmarks_kmeans(pooled, 1000, 0)
            base, s0 = default_length_scale(pooled), default_ratio_prior_std(len(pooled))
            fit_log_ratio(x1, x2, u, ls=4 * base, scale=s0)  # compile
            _, t_fixed = _seconds(lambda: fit_log_ratio(x1, x2, u, ls=4 * base, scale=s0))  # noqa: B023
            sel, t_warm = _seconds(lambda: select_ratio_length_scale(x1, x2, u, ls=FACTORS * base, scales=[s0]))  # noqa: B023
            cold, t_cold = _seconds(lambda: [fit_log_ratio(x1, x2, u, ls=f * base, scale=s0) for f in FACTORS])  # noqa: B023
            u300 = landmarks_kmeans(pooled, 300, 0)
            sel300, t_300 = _seconds(lambda: select_ratio_length_scale(x1, x2, u300, ls=FACTORS * base, scales=[s0]))  # noqa: B023
            ev_cold = np.array([c.log_evidence for c in cold])
            row = {
                "n_cells": n,
                "seed": seed,
                "representation": name,
                "fixed_fit_s": round(t_fixed, 3),
                "grid_warm_s": round(t_warm, 3),
                "grid_cold_s": round(t_cold, 3),
                "grid_300_landmarks_s": round(t_300, 3),
                "choice_warm": float(sel.best_ls / base),
                "choice_cold": float(FACTORS[int(np.argmax(ev_cold))]),
                "choice_300_landmarks": float(sel300.best_ls / base),
                "max_abs_evidence_warm_minus_cold": float(np.abs(sel.log_evidence[:, 0] - ev_cold).max()),
                "load_average": [round(v, 2) for v in os.getloadavg()],
                "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            }
            print(json.dumps(row), flush=True)
            rows.append(row)
    (HERE / "results" / "da_evidence_cost.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
