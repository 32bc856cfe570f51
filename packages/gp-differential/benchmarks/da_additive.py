"""Does a sum of length scales in one Gaussian process close the DA accuracy gaps? (A diagnosis; it does not.)

Run from the repository root::

    python packages/gp-differential/benchmarks/da_additive.py

``da_multiscale.py`` fitted the log ratio at several length scales separately and combined their
z-scores afterwards. Here the scales are combined inside one model: the log ratio is a sum of
independent Gaussian processes, ``g = sum_j s_j f_j`` with ``f_j`` on the Matern-5/2 kernel at
``factor_j`` times the density length scale, fitted jointly (Laplace approximation of the logistic
classifier of the condition labels, as in ``_ratio.py``) so that the data decide how much of the log
ratio each scale carries. The z-score at a cell is the posterior mean over the Laplace posterior std,
including the prior variance the landmarks do not explain. The landmarks and prior std are those of
``DifferentialAbundance()``'s own fit; the single-scale variant ``4x`` reproduces its z-scores (checked:
equal AUROC to 4 decimals on every setting).

For all 34 settings of ``da_accuracy.py`` (seeds 0-14 at 2,000 cells, 0-1 at 3,500; PCA and diffusion
components). kompot's figures come from ``results/da_accuracy*.json`` (same simulated data). Writes
``results/da_additive.json``: per setting the AUROC of each variant and the standard deviation over the cells
of each of its scales' parts of the fitted log ratio, and per variant the mean AUROC and the
settings below 0.95 and below kompot, over the 14 settings of ``da_accuracy.py`` and its held-out seeds and
over all 34.
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
from scipy.optimize import minimize  # noqa: E402

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

import run as bench  # noqa: E402
from da_multiscale import SETTINGS, kompot_figures, summary  # noqa: E402

#: Variants: (multiple of the density length scale, multiple of the default prior std) per component.
VARIANTS = {
    "4x": ((4, 1.0),),
    "4x+32x": ((4, 1.0), (32, 1.0)),
    "4x+32x_split_variance": ((4, 0.5**0.5), (32, 0.5**0.5)),
    "4x+32x_large_smooth": ((4, 1.0), (32, 2.0)),
    "4x+16x+32x": ((4, 1.0), (16, 1.0), (32, 1.0)),
    "2x+32x": ((2, 1.0), (32, 1.0)),
}


def additive_zscore(x1: np.ndarray, x2: np.ndarray, landmarks: np.ndarray, components) -> tuple[np.ndarray, list]:
    """z-score of the jointly fitted sum of scales at the pooled cells (``x1`` then ``x2``), and the standard
    deviation over the cells of each scale's part of the fitted log ratio."""
    from cellflux_gp_differential._density import _design
    from cellflux_gp_differential._jax import DEFAULT_JITTER

    x = np.vstack([x1, x2])
    labels = np.r_[np.zeros(len(x1)), np.ones(len(x2))]
    offset = np.log(len(x2) / len(x1))
    blocks, unexplained = [], np.zeros(len(x))
    for ls, scale in components:
        design = np.array(_design(x, landmarks, ls, DEFAULT_JITTER)[1])
        unexplained += scale**2 * np.maximum(1.0 - np.einsum("ij,ij->i", design, design), 0.0)
        blocks.append(scale * design)
    D = np.hstack(blocks)

    def loss(z):
        f = D @ z + offset
        return 0.5 * z @ z - np.sum(labels * f - np.logaddexp(0.0, f)), z - D.T @ (labels - 1.0 / (1.0 + np.exp(-f)))

    z = minimize(loss, np.zeros(D.shape[1]), jac=True, method="L-BFGS-B", options={"maxiter": 5000}).x
    f = D @ z + offset
    sizes = np.cumsum([0] + [b.shape[1] for b in blocks])
    part_std = [round(float(np.std(b @ z[i:j])), 4) for b, i, j in zip(blocks, sizes[:-1], sizes[1:], strict=True)]
    p = 1.0 / (1.0 + np.exp(-f))
    chol = np.linalg.cholesky(np.eye(D.shape[1]) + D.T @ (D * (p * (1.0 - p))[:, None]))
    B = np.linalg.solve(chol, D.T)
    return (f - offset) / np.sqrt(unexplained + np.einsum("ij,ij->j", B, B)), part_std


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
        order = np.r_[np.flatnonzero(m1), np.flatnonzero(m2)]
        for rep, x in reps.items():
            da = DifferentialAbundance(random_state=0).fit(x[m1], x[m2])
            default_z = da.predict(x, progress=False)["log_fold_change_zscore"]
            base = da.ratio_ls / 4.0
            auroc = {"default": round(bench.auroc(depleted, -default_z), 4)}
            part_std = {}
            for name, parts in VARIANTS.items():
                comps = [(f * base, c * da.ratio_prior_std) for f, c in parts]
                z = np.empty(len(x))
                z[order], part_std[name] = additive_zscore(x[m1], x[m2], da.ratio_landmarks, comps)
                auroc[name] = round(bench.auroc(depleted, -z), 4)
            row = {"n_cells": n_cells, "seed": seed, "representation": rep, "kompot": kompot[(n_cells, seed, rep)]}
            rows.append({**row, "auroc": auroc, "part_std": part_std})
            print(json.dumps(rows[-1]), flush=True)
    names = list(rows[0]["auroc"])
    out = {
        "date": f"{start} to {time.strftime('%H:%M UTC', time.gmtime())}",
        "variants": {name: [list(c) for c in parts] for name, parts in VARIANTS.items()},
        "summary": summary(rows, names),
        "rows": rows,
    }
    path = HERE / "results" / "da_additive.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out["summary"], indent=1))
    print("wrote", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
