"""DA at 100,000 cells (the data of ``run.py``'s scale run), one version: time, peak RSS increase, AUROC.

Run once per version, each in a fresh process, with the repository (or a worktree of an older commit)
whose ``src`` trees are on ``PYTHONPATH``::

    PYTHONPATH=$REPO/packages/gp-differential/src:$REPO/packages/core/src python da_scale.py $REPO

Prints one JSON line; ``results/da_scale.json`` holds the lines of two versions from one session (same
hour). Peak memory is the resident-set increase over the level after the data were prepared.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import json
import logging
import sys
import time
import warnings

import numpy as np


def main(repo: str) -> dict:
    sys.path.insert(0, f"{repo}/packages/gp-differential/benchmarks")
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    import run as bench
    from sklearn.decomposition import PCA

    import cellflux as cf
    from cellflux._keys import TruthKey
    from cellflux_gp_differential import DifferentialAbundance, __version__
    from cellflux_gp_differential._representation import log_normalize

    n = 100_000
    adata = cf.datasets.simulate(n_cells=n, n_genes=2000, n_conditions=2, seed=0, truth_layers=False)
    counts = adata.layers["spliced"]
    pcs = PCA(20, random_state=0).fit(log_normalize(counts[::5]))
    x = np.vstack([pcs.transform(log_normalize(counts[i : i + 10_000])) for i in range(0, n, 10_000)])
    m1, m2, _ = bench.masks(adata)
    depleted = adata.obs[TruthKey.DA_LOG_FOLD_CHANGE].to_numpy() < 0
    del adata, counts
    with bench.PeakRSS(interval=0.05) as peak:
        t0 = time.perf_counter()
        r = DifferentialAbundance(random_state=0).fit(x[m1], x[m2]).predict(x, progress=False)
        seconds = time.perf_counter() - t0
    z = np.asarray(r["log_fold_change_zscore"])
    return {
        "version": __version__,
        "seconds": round(seconds, 1),
        "auroc_depleted_z": round(bench.auroc(depleted, -z), 4),
        "peak_rss_increase_bytes": int(peak.peak - peak.start),
        "load": [round(v, 2) for v in os.getloadavg()],
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1] if len(sys.argv) > 1 else ".")))
