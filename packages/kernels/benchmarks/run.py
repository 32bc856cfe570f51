"""Benchmarks of cellflux-kernels side by side with CellRank, in one run.

Default (CI-sized): dentategyrus_100 (every mode, ours and CellRank) and a simulated 20,000-cell
graph (ours alone). ``--full``: the issue's sizes, the preprocessed pancreas (deterministic warm and
in a fresh process, stochastic, monte_carlo with 1,000 samples; ours and CellRank) and 100,000
simulated cells x 2,000 genes x 30 neighbours (ours alone, with peak memory).
Results go to ``benchmarks/results/`` as JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
RESULTS = HERE / "results"
DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"


def timed(fn, repeat: int = 1) -> tuple[float, object]:
    best, out = np.inf, None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def have_cellrank() -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import cellrank  # noqa: F401
    except ImportError:
        return False
    return True


def preprocess_pancreas():
    import anndata as ad
    import scanpy as sc
    import scvelo as scv

    adata = ad.read_h5ad(DATA / "pancreas.h5ad")
    scv.pp.filter_genes(adata, min_shared_counts=20)
    scv.pp.normalize_per_cell(adata)
    sc.pp.log1p(adata)
    sc.tl.pca(adata, n_comps=30, random_state=0)
    sc.pp.neighbors(adata, n_pcs=30, n_neighbors=30, random_state=0)
    scv.pp.moments(adata, n_pcs=None, n_neighbors=None)
    scv.tl.velocity(adata, mode="stochastic")
    return adata


def compare(adata, name: str, modes: list[str], repeat: int = 2) -> list[dict]:
    import cellflux_kernels as ck

    rows = []
    cr = None
    if have_cellrank():
        import cellrank as cr
    for mode in modes:
        kw = {"seed": 0} if mode == "monte_carlo" else {}
        ours_t, ours = timed(
            lambda mode=mode, kw=kw: ck.VelocityKernel(adata).compute_transition_matrix(
                mode=mode, show_progress_bar=False, **kw
            ),
            repeat,
        )
        row = {"data": name, "n_cells": adata.n_obs, "kernel": f"VelocityKernel[{mode}]", "ours_s": round(ours_t, 4)}
        if cr is not None:
            ref_t, ref = timed(
                lambda mode=mode, kw=kw: cr.kernels.VelocityKernel(adata).compute_transition_matrix(
                    model=mode, show_progress_bar=False, **kw
                ),
                repeat if mode == "deterministic" else 1,
            )
            row.update(
                cellrank_s=round(ref_t, 4),
                speedup=round(ref_t / ours_t, 1),
                max_abs_diff=float(abs(ref.transition_matrix - ours.transition_matrix).max()),
                softmax_scale_ours=ours.params["softmax_scale"],
                softmax_scale_cellrank=ref.params["softmax_scale"],
            )
        rows.append(row)
        print(row, flush=True)
    return rows


FRESH = """
import time, sys, warnings
warnings.simplefilter("ignore")
t = time.perf_counter()
import anndata as ad
adata = ad.read_h5ad(sys.argv[1])
t0 = time.perf_counter()
if sys.argv[2] == "ours":
    import cellflux_kernels as ck
    ck.VelocityKernel(adata).compute_transition_matrix(show_progress_bar=False)
else:
    import cellrank as cr
    cr.kernels.VelocityKernel(adata).compute_transition_matrix(show_progress_bar=False)
print(time.perf_counter() - t0)
"""


def fresh_process(path: Path, who: str) -> float:
    out = subprocess.run([sys.executable, "-c", FRESH, str(path), who], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


SCALE = """
import resource, sys, time
import numpy as np
from scipy import sparse
from scipy.spatial import cKDTree
n, G, k = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(0)
latent = rng.normal(size=(n, 8))
loadings = rng.normal(size=(8, G)) / np.sqrt(8)
X = latent @ loadings + 0.1 * rng.normal(size=(n, G))
V = (np.roll(latent, 1, axis=1) @ loadings) * 0.1 + 0.01 * rng.normal(size=(n, G))
_, idx = cKDTree(latent).query(latent, k=k + 1)
rows = np.repeat(np.arange(n), k)
W = sparse.csr_matrix((np.ones(n * k), (rows, idx[:, 1:].ravel())), shape=(n, n))
conn = W.maximum(W.T).tocsr()
del latent, W, idx
import anndata as ad
adata = ad.AnnData(X=sparse.csr_matrix((n, G)), layers={"Ms": X, "velocity": V}, obsp={"connectivities": conn})
del X, V
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
import cellflux_kernels as ck
t = time.perf_counter()
vk = ck.VelocityKernel(adata).compute_transition_matrix(show_progress_bar=False)
elapsed = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(elapsed, base / 2**20, peak / 2**20, conn.nnz)
"""


def scale(n: int, G: int, k: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", SCALE, str(n), str(G), str(k)], capture_output=True, text=True, check=True
    )
    elapsed, base, peak, nnz = out.stdout.strip().splitlines()[-1].split()
    row = {
        "data": "simulated",
        "n_cells": n,
        "n_genes": G,
        "n_neighbors": k,
        "edges": int(nnz),
        "kernel": "VelocityKernel[deterministic]",
        "ours_s": round(float(elapsed), 2),
        "peak_rss_gib_before": round(float(base), 2),
        "peak_rss_gib": round(float(peak), 2),
    }
    print(row, flush=True)
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--full", action="store_true", help="the issue's full sizes (pancreas, 100k cells)")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    import anndata as ad

    rows: list[dict] = []
    dg = ad.read_h5ad(DATA / "dentategyrus_100.h5ad")
    rows += compare(dg, "dentategyrus_100", ["deterministic", "stochastic", "monte_carlo"])
    if args.full:
        pancreas = preprocess_pancreas()
        rows += compare(pancreas, "pancreas", ["deterministic", "stochastic", "monte_carlo"])
        tmp = RESULTS / "_pancreas_tmp.h5ad"
        pancreas.write_h5ad(tmp)
        try:
            ours = min(fresh_process(tmp, "ours") for _ in range(2))
            row = {
                "data": "pancreas",
                "n_cells": pancreas.n_obs,
                "kernel": "VelocityKernel[deterministic] fresh process",
                "ours_s": round(ours, 3),
            }
            if have_cellrank():
                ref = fresh_process(tmp, "cellrank")
                row.update(cellrank_s=round(ref, 3), speedup=round(ref / ours, 1))
            rows.append(row)
            print(row, flush=True)
        finally:
            tmp.unlink(missing_ok=True)
        rows.append(scale(100_000, 2_000, 30))
    else:
        rows.append(scale(20_000, 500, 30))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / ("full.json" if args.full else "ci.json")
    meta = {"python": platform.python_version(), "machine": platform.machine(), "cpus": __import__("os").cpu_count()}
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1, default=float) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
