"""Does combining the log ratio's length scales close the DA accuracy gaps? (A diagnosis; it does not.)

Run from the repository root::

    python packages/gp-differential/benchmarks/da_multiscale.py

For all 34 settings of ``da_accuracy.py`` (seeds 0-14 at 2,000 cells, 0-1 at 3,500; PCA and diffusion
components) it fits the log ratio at 1, 2, 4, 8, 16 and 32 times the density length scale
(``DifferentialAbundance(ratio_ls="evidence", ratio_ls_factors=(f,))``: a one-point grid, the densities'
landmarks, the default prior std) and ranks the planted depletion by ``-z`` of each, and of two
combinations over several scales: the mean ``z`` and the smallest ``z`` (the most depleted call of any
scale). kompot's figures come from ``results/da_accuracy*.json`` (same simulated data). Writes
``results/da_multiscale.json``: per setting the AUROC of every statistic, and per statistic the mean
AUROC and the settings below 0.95 and below kompot, over the 14 settings of ``da_accuracy.py`` and its
held-out seeds and over all 34.
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

SETTINGS = [(2000, 400, seed) for seed in range(15)] + [(3500, 1100, 0), (3500, 1100, 1)]
FACTORS = (1, 2, 4, 8, 16, 32)
#: Combinations over the scales (indices into FACTORS).
COMBINATIONS = {"mean_z_4_32": (2, 3, 4, 5), "min_z_4_32": (2, 3, 4, 5), "min_z_4_16": (2, 3, 4)}


def kompot_figures() -> dict:
    out = {}
    for name in ("da_accuracy.json", "da_accuracy_heldout.json", "da_accuracy_seeds.json"):
        for r in json.loads((HERE / "results" / name).read_text()):
            out[(r["n_cells"], r["seed"], r["representation"])] = r["kompot"]["auroc_depleted_z"]
    return out


def statistics(z: np.ndarray) -> dict[str, np.ndarray]:
    """Ranking scores (higher: more depleted) of each single scale and of each combination."""
    out = {f"z_{f}x": -z[i] for i, f in enumerate(FACTORS)}
    for name, idx in COMBINATIONS.items():
        pick = z[list(idx)]
        out[name] = -(pick.mean(axis=0) if name.startswith("mean") else pick.min(axis=0))
    return out


def summary(rows: list[dict], names: list[str]) -> dict:
    out = {}
    for subset, keep in (("da_accuracy_and_held_out", lambda r: r["seed"] <= 4), ("all", lambda r: True)):
        chosen = [r for r in rows if keep(r)]
        out[subset] = {
            name: {
                "mean_auroc": round(float(np.mean([r["auroc"][name] for r in chosen])), 4),
                "below_0.95": sum(r["auroc"][name] < 0.95 for r in chosen),
                "below_kompot": sum(r["auroc"][name] < r["kompot"] for r in chosen),
                "settings": len(chosen),
            }
            for name in names
        }
    return out


def main() -> int:
    warnings.simplefilter("ignore")
    import logging

    logging.disable(logging.WARNING)
    from cellflux._keys import TruthKey
    from cellflux_gp_differential import DifferentialAbundance

    kompot = kompot_figures()
    rows = []
    start = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    for n_cells, n_genes, seed in SETTINGS:
        adata, _, reps = bench.simulate(n_cells, n_genes, seed)
        m1, m2, _ = bench.masks(adata)
        depleted = adata.obs[TruthKey.DA_LOG_FOLD_CHANGE].to_numpy() < 0
        for rep, x in reps.items():
            z = np.array(
                [
                    DifferentialAbundance(random_state=0, ratio_ls="evidence", ratio_ls_factors=(f,))
                    .fit(x[m1], x[m2])
                    .predict(x, progress=False)["log_fold_change_zscore"]
                    for f in FACTORS
                ]
            )
            auroc = {name: round(bench.auroc(depleted, s), 4) for name, s in statistics(z).items()}
            row = {"n_cells": n_cells, "seed": seed, "representation": rep, "kompot": kompot[(n_cells, seed, rep)]}
            rows.append({**row, "auroc": auroc})
            print(json.dumps(rows[-1]), flush=True)
    names = list(rows[0]["auroc"])
    out = {
        "date": f"{start} to {time.strftime('%H:%M UTC', time.gmtime())}",
        "load_average_end": [round(v, 2) for v in os.getloadavg()],
        "summary": summary(rows, names),
        "rows": rows,
    }
    path = HERE / "results" / "da_multiscale.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out["summary"], indent=1))
    print("wrote", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
