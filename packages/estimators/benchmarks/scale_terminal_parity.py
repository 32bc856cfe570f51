"""Terminal states of the scale benchmark's chain: ours and CellRank's on the same matrix.

The scale rows of ``run.py`` (simulated 20,000 and 100,000 cells) name early-progenitor macrostates among
the three terminal states. This script checks whether that is the chain or the estimator: it builds the same
chain (:func:`run.simulated`) at a size CellRank's dense ``brandts`` Schur decomposition can take, runs both
GPCCAs with the scale benchmark's settings (10 Schur vectors, 6 macrostates with 100 cells each, three
terminal states by stability) and writes both results to ``results/scale_terminal_parity.json``::

    python packages/estimators/benchmarks/scale_terminal_parity.py [--n-cells 5000]

Needs the reference tools (``benchmarks/reference-requirements.txt``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent


def _run(g, schur_kwargs: dict) -> dict:
    """The scale benchmark's steps on a GPCCA (ours or CellRank's) and what they found."""
    t0 = time.perf_counter()
    g.compute_schur(10, **schur_kwargs)
    g.compute_macrostates(6, n_cells=100, cluster_key="clusters")
    g.predict_terminal_states(method="top_n", n_states=3, n_cells=100)
    seconds = time.perf_counter() - t0
    return {
        "macrostates": [str(c) for c in g.macrostates.cat.categories],
        "coarse_T": np.asarray(g.coarse_T).round(4).tolist(),
        "terminal_states": [str(c) for c in g.terminal_states.cat.categories],
        "seconds": round(seconds, 2),
    }


def ours(adata, t) -> dict:
    from cellflux_estimators import GPCCA

    return _run(GPCCA(t, adata=adata), {})


def cellrank(adata, t) -> dict:
    import cellrank as cr
    from cellrank.kernels import PrecomputedKernel

    out = _run(cr.estimators.GPCCA(PrecomputedKernel(t, adata=adata)), {"method": "brandts"})
    return {**out, "version": cr.__version__}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-cells", type=int, default=5000)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE))
    from run import simulated

    warnings.simplefilter("ignore")
    adata, t = simulated(args.n_cells, n_genes=30)  # the scale benchmark's chain
    report = {"n_cells": args.n_cells, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    report["mean_true_time_per_cluster"] = {
        str(k): round(float(v), 3) for k, v in adata.obs.groupby("clusters", observed=True)["true_time"].mean().items()
    }
    report["ours"], report["cellrank"] = ours(adata, t), cellrank(adata, t)
    a, b = np.array(report["ours"]["coarse_T"]), np.array(report["cellrank"]["coarse_T"])
    report["same_macrostates"] = report["ours"]["macrostates"] == report["cellrank"]["macrostates"]
    report["same_terminal_states"] = report["ours"]["terminal_states"] == report["cellrank"]["terminal_states"]
    report["coarse_T_max_abs_difference"] = float(np.abs(a - b).max()) if a.shape == b.shape else None
    print(json.dumps(report, indent=1))
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "scale_terminal_parity.json").write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
