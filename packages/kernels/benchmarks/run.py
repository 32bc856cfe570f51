"""Benchmarks of cellflux-kernels side by side with CellRank, in one run.

Default (CI-sized): dentategyrus_100 (every mode, ours and CellRank) and simulated graphs of 5,000 and
20,000 cells (ours alone, peak memory). ``--full``: the issue's sizes, the preprocessed pancreas
(deterministic warm and in a fresh process, stochastic, monte_carlo with 1,000 samples; ours and
CellRank) and 25,000 / 50,000 / 100,000 simulated cells x 2,000 genes x 30 neighbours (ours alone,
peak memory, to show it grows linearly). ``--million`` adds 1,000,000 cells x 200 genes.
``--only pancreas|scale|million`` runs one part, ``--modes`` picks the pancreas modes. Results go to
``benchmarks/results/`` as JSON and CSV.
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
            repeat + 1 if mode == "deterministic" else repeat,
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
import sys, time
import numpy as np
from scipy import sparse
from scipy.spatial import cKDTree
n, G, k = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(0)
latent = rng.normal(size=(n, 8))
loadings = (rng.normal(size=(8, G)) / np.sqrt(8)).astype(np.float32)
X = np.empty((n, G), dtype=np.float32)
V = np.empty((n, G), dtype=np.float32)
step = 50_000
for s in range(0, n, step):  # float32 layers (as scVelo writes them), built in blocks
    lat = latent[s : s + step].astype(np.float32)
    X[s : s + step] = lat @ loadings + 0.1 * rng.standard_normal((len(lat), G), dtype=np.float32)
    noise = rng.standard_normal((len(lat), G), dtype=np.float32)
    V[s : s + step] = 0.1 * (np.roll(lat, 1, axis=1) @ loadings) + 0.01 * noise
if n <= 200_000:
    _, idx = cKDTree(latent).query(latent, k=k + 1)
    rows = np.repeat(np.arange(n), k)
    W = sparse.csr_matrix((np.ones(n * k, dtype=np.float32), (rows, idx[:, 1:].ravel())), shape=(n, n))
    conn = W.maximum(W.T).tocsr()
    del W, idx, rows
else:  # a cheap graph of the same size (an exact kNN query of 10^6 points takes longer than the kernel)
    order = np.argsort(latent[:, 0])
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    offsets = np.r_[-(k // 2) : 0, 1 : k - k // 2 + 1]
    nbr_rank = rank[:, None] + offsets[None, :]
    nbr_rank = np.where(nbr_rank < 0, nbr_rank + k + 1, nbr_rank)
    nbr_rank = np.where(nbr_rank >= n, nbr_rank - k - 1, nbr_rank)
    rows = np.repeat(np.arange(n), k)
    W = sparse.csr_matrix((np.ones(n * k, dtype=np.float32), (rows, order[nbr_rank].ravel())), shape=(n, n))
    conn = W.maximum(W.T).tocsr()
    del W, rows, nbr_rank, rank, order
del latent
import anndata as ad
empty = sparse.csr_matrix((n, G), dtype=np.float32)
adata = ad.AnnData(X=empty, layers={"Ms": X, "velocity": V}, obsp={"connectivities": conn})
del X, V
import tracemalloc
import cellflux_kernels as ck


def rss_gib(field):
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(field)) / 2**20


try:  # reset the peak resident set size (Linux), so that it is the kernel's peak
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
except OSError:  # noqa: SIM105 - a script without imports beyond the standard ones
    pass
base = rss_gib("VmRSS:")
tracemalloc.start()
t = time.perf_counter()
vk = ck.VelocityKernel(adata).compute_transition_matrix(show_progress_bar=False)
elapsed = time.perf_counter() - t
traced = tracemalloc.get_traced_memory()[1] / 2**30
print(elapsed, base, rss_gib("VmHWM:"), traced, conn.nnz)
"""


def scale(n: int, G: int, k: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", SCALE, str(n), str(G), str(k)], capture_output=True, text=True, check=True
    )
    elapsed, base, peak, traced, nnz = out.stdout.strip().splitlines()[-1].split()
    row = {
        "data": "simulated",
        "n_cells": n,
        "n_genes": G,
        "n_neighbors": k,
        "edges": int(nnz),
        "kernel": "VelocityKernel[deterministic]",
        "ours_s": round(float(elapsed), 2),
        "rss_gib_inputs": round(float(base), 3),
        "peak_rss_gib": round(float(peak), 3),
        "kernel_peak_alloc_gib": round(float(traced), 3),
    }
    print(row, flush=True)
    return row


def write(rows: list[dict], name: str) -> None:
    import csv
    import os

    RESULTS.mkdir(exist_ok=True)
    meta = {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()}
    if hasattr(os, "getloadavg"):  # how busy the shared machine was
        meta["load_average_1min_at_end"] = round(os.getloadavg()[0], 2)
    out = RESULTS / f"{name}.json"
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1, default=float) + "\n")
    fields = sorted({key for row in rows for key in row}, key=lambda f: (f not in ("data", "kernel"), f))
    with open(RESULTS / f"{name}.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {out} and {out.with_suffix('.csv')}")


def pancreas_part(modes: list[str]) -> list[dict]:
    pancreas = preprocess_pancreas()
    rows = compare(pancreas, "pancreas", modes)
    tmp = RESULTS / "_pancreas_tmp.h5ad"
    RESULTS.mkdir(exist_ok=True)
    pancreas.write_h5ad(tmp)
    try:
        fresh_process(tmp, "ours")  # compiles and caches the engine once, as after installation
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
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--full", action="store_true", help="the issue's full sizes (pancreas, 100k cells)")
    parser.add_argument("--million", action="store_true", help="with --full: also 1,000,000 cells x 200 genes")
    parser.add_argument("--only", choices=["pancreas", "scale", "million"], help="with --full: run one part")
    parser.add_argument(
        "--modes",
        nargs="+",
        default=["deterministic", "stochastic", "monte_carlo"],
        help="with --full: the pancreas modes to compare (CellRank's stochastic takes minutes)",
    )
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    import anndata as ad

    rows: list[dict] = []
    if not args.full:
        dg = ad.read_h5ad(DATA / "dentategyrus_100.h5ad")
        rows += compare(dg, "dentategyrus_100", ["deterministic", "stochastic", "monte_carlo"])
        rows += [scale(5_000, 500, 30), scale(20_000, 500, 30)]
        write(rows, "ci")
        return
    if args.only in (None, "pancreas"):
        rows += pancreas_part(args.modes)
    if args.only in (None, "scale"):
        rows += [scale(n, 2_000, 30) for n in (25_000, 50_000, 100_000)]
    if args.million or args.only == "million":
        rows.append(scale(1_000_000, 200, 30))
    write(rows, "full" if args.only is None else f"full_{args.only}")


if __name__ == "__main__":
    main()
