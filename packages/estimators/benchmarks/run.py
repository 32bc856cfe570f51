"""Benchmarks of cellflux-estimators next to CellRank (no PETSc) in one process.

Default (CI-sized): a simulated 1,500-cell differentiation side by side, and 20,000 cells through ours alone.
``--full``: pancreas (3,696 cells; CellRank's pseudotime + connectivity kernels on scanpy's diffusion pseudotime)
side by side, 100,000 simulated cells and 1,000,000 cells on a synthetic three-lineage embedding (the simulator's
count sampling would dominate; same kNN kernel), 30-neighbour graphs, through Schur, macrostates and fate
probabilities. Writes ``results/bench[_full].json`` and a CSV beside it.

CellRank's steps are timed as it runs by default (multithreaded BLAS) and, for the cheap steps, again with BLAS
limited to one thread (``cellrank_*_1thread_s``), because on a loaded machine multithreaded OpenBLAS is itself a
large slowdown that our package avoids (it limits BLAS to one thread around its iterative kernels). The load
average is recorded next to the timings.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import cellflux as cf
from cellflux_estimators import CFLARE, GPCCA, knn_transition_matrix

RESULTS = Path(__file__).parent / "results"


def timed(fn, repeat: int = 1):
    """Run ``fn`` ``repeat`` times; its last output and the best (smallest) wall time."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return out, best


#: The cheap steps (fate probabilities, drivers, CFLARE) are timed as the best of this many runs, for both
#: packages alike: single timings of sub-second steps on a loaded, shared machine vary by 2x or more.
REPEAT = 3


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def synthetic(n_cells: int, seed: int = 0):
    """Cells on a three-lineage tree in 5-D (trunk, then three branches), with noise; no count sampling."""
    import anndata as ad
    import pandas as pd

    rng = np.random.default_rng(seed)
    time_ = rng.random(n_cells)
    lineage = rng.integers(0, 3, n_cells)
    directions = np.array([[0, 1, 0, 0, 0], [0, -0.5, 0.87, 0, 0], [0, -0.5, -0.87, 0, 0]], dtype=float)
    coords = np.zeros((n_cells, 5))
    coords[:, 0] = np.minimum(time_, 0.3)
    branch = np.clip(time_ - 0.3, 0, None)
    coords += branch[:, None] * (directions[lineage] + [[0.5, 0, 0, 0, 0]])
    coords += rng.normal(scale=0.02, size=coords.shape)
    stage = np.where(time_ < 0.3, "progenitor", np.char.add("lineage_", (lineage + 1).astype(str)))
    stage = np.char.add(stage, np.where(time_ > 0.8, "_late", "_early"))
    obs = pd.DataFrame({"clusters": pd.Categorical(stage), "true_time": time_}, index=np.arange(n_cells).astype(str))
    adata = ad.AnnData(obs=obs)
    t = knn_transition_matrix(coords, time_, n_neighbors=30, backflow=0.25)
    return adata, t


def simulated(n_cells: int, n_genes: int = 60, seed: int = 0):
    adata = cf.datasets.simulate(n_cells=n_cells, n_genes=n_genes, n_lineages=3, seed=seed)
    x = adata.layers["spliced"]
    x = np.asarray(x.toarray() if hasattr(x, "toarray") else x, dtype=np.float64)
    x = np.log1p(x / x.sum(axis=1, keepdims=True) * 1e4)
    adata.X = x
    xc = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(xc[: min(len(xc), 20000)], full_matrices=False)
    coords = xc @ vt[:10].T
    # forward-biased kNN walk plus 0.25 of the reversed edges: like 0.8 pseudotime + 0.2 connectivity kernels
    t = knn_transition_matrix(coords, adata.obs["true_time"].to_numpy(), n_neighbors=30, backflow=0.25)
    adata.obs["clusters"] = adata.obs["clusters"].astype("category")
    return adata, t


def pancreas():
    import cellrank as cr
    import scanpy as sc
    import scvelo as scv

    # the shared copy beside the repository (as the tests find it), else $CELLFLUX_DATA_DIR / the download cache
    shared = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "pancreas.h5ad"
    adata = cf.datasets.pancreas(path=shared if shared.exists() else None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scv.pp.filter_and_normalize(adata, min_shared_counts=20)  # the file holds 2,000 genes already
        sc.pp.log1p(adata)
        sc.pp.pca(adata, n_comps=30)
        sc.pp.neighbors(adata, n_neighbors=30, n_pcs=30)
        # scVelo 0.3's stochastic velocities fail under numpy 2 (scalar assignment in its least squares), so
        # the pseudotime is diffusion pseudotime rooted in the Ductal cell at the end of the first component
        sc.tl.diffmap(adata)
        ductal = np.flatnonzero((adata.obs["clusters"] == "Ductal").to_numpy())
        adata.uns["iroot"] = int(ductal[np.argmax(adata.obsm["X_diffmap"][ductal, 1])])
        sc.tl.dpt(adata)
        pk = cr.kernels.PseudotimeKernel(adata, time_key="dpt_pseudotime").compute_transition_matrix(
            show_progress_bar=False
        )
        ck = cr.kernels.ConnectivityKernel(adata).compute_transition_matrix()
        t = (0.8 * pk + 0.2 * ck).transition_matrix
    return adata, t


def side_by_side(name: str, adata, t, n_states: int, n_terminal: int) -> dict:
    import cellrank as cr

    row: dict = {"data": name, "n_cells": int(t.shape[0]), "nnz": int(t.nnz)}
    g = GPCCA(t, adata=adata)
    _, row["ours_schur_s"] = timed(lambda: g.compute_schur(20))
    _, row["ours_macrostates_s"] = timed(lambda: g.compute_macrostates(n_states, cluster_key="clusters"))
    g.predict_terminal_states(method="top_n", n_states=n_terminal)
    _, row["ours_fate_s"] = timed(lambda: g.compute_fate_probabilities(), REPEAT)
    _, row["ours_drivers_s"] = timed(lambda: g.compute_lineage_drivers(), REPEAT)
    c = CFLARE(t, adata=adata)
    _, row["ours_cflare_s"] = timed(lambda: c.fit(k=20, use=n_terminal, method="kmeans"), REPEAT)
    row["load_avg_before"] = load_average()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = cr.estimators.GPCCA(cr.kernels.PrecomputedKernel(t, adata=adata))
        _, row["cellrank_schur_s"] = timed(lambda: r.compute_schur(20))
        _, row["cellrank_macrostates_s"] = timed(lambda: r.compute_macrostates(n_states, cluster_key="clusters"))
        r.predict_terminal_states(method="top_n", n_states=n_terminal)
        _, row["cellrank_fate_s"] = timed(
            lambda: r.compute_fate_probabilities(use_petsc=False, show_progress_bar=False), REPEAT
        )
        _, row["cellrank_drivers_s"] = timed(lambda: r.compute_lineage_drivers(), REPEAT)
        rc = cr.estimators.CFLARE(cr.kernels.PrecomputedKernel(t, adata=adata))

        def cflare():
            rc.compute_eigendecomposition(k=20)
            rc.predict(use=n_terminal, method="kmeans")

        _, row["cellrank_cflare_s"] = timed(cflare, REPEAT)
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1):
            _, row["cellrank_macrostates_1thread_s"] = timed(
                lambda: r.compute_macrostates(n_states, cluster_key="clusters")
            )
            r.predict_terminal_states(method="top_n", n_states=n_terminal)
            _, row["cellrank_fate_1thread_s"] = timed(
                lambda: r.compute_fate_probabilities(use_petsc=False, show_progress_bar=False), REPEAT
            )
            _, row["cellrank_cflare_1thread_s"] = timed(cflare, REPEAT)
    row["load_avg_after"] = load_average()
    fp_ref = r.fate_probabilities
    common = [n for n in fp_ref.names if n in g.fate_probabilities.columns]
    row["same_terminal_states"] = set(fp_ref.names) == set(g.fate_probabilities.columns)
    row["fate_max_abs_diff"] = (
        float(max(np.abs(g.fate_probabilities[n].to_numpy() - fp_ref[n].X.ravel()).max() for n in common))
        if common
        else None
    )
    for step in ("schur", "cflare", "fate", "drivers", "macrostates"):
        row[f"speedup_{step}"] = row[f"cellrank_{step}_s"] / row[f"ours_{step}_s"]
    for step in ("cflare", "fate", "macrostates"):
        row[f"speedup_{step}_vs_1thread"] = row[f"cellrank_{step}_1thread_s"] / row[f"ours_{step}_s"]
    return row


#: CFLARE alone (``--cflare-only``): ours and CellRank's alternate, this many times each; medians are reported.
REPEAT_CFLARE = 9


def _spmv_s(t, repeat: int = 200) -> float:
    """Median wall time of one product with ``P^T`` (CSR), the unit every Krylov method pays per step."""
    from scipy import sparse

    tt = sparse.csr_matrix(t.T)
    x = np.random.default_rng(0).random(tt.shape[0])
    times = []
    for _ in range(7):
        t0 = time.perf_counter()
        for _ in range(repeat):
            tt @ x
        times.append((time.perf_counter() - t0) / repeat)
    return float(np.median(times))


def _partition(codes) -> set[frozenset[int]]:
    """The cells of each terminal state, whatever the states' names (codes: -1 for no state)."""
    codes = np.asarray(codes)
    return {frozenset(np.flatnonzero(codes == i).tolist()) for i in np.unique(codes[codes >= 0])}


def cflare_side_by_side(adata, t, n_terminal: int = 4) -> dict:
    """CFLARE alone on pancreas, ours and CellRank's alternately (medians of ``REPEAT_CFLARE``), with our time split.

    Also times one sparse product with ``P^T``: a Krylov method needs at least ~175 of them for the 20 left
    eigenvalues to 1e-8 and ~55 more for the right eigenvectors that the clustering uses (unrestarted Arnoldi
    from the same start vector, see the README), so ``230 * spmv_s`` bounds any such CFLARE from below.
    """
    import cellrank as cr

    row: dict = {"data": "pancreas", "n_cells": int(t.shape[0]), "nnz": int(t.nnz), "load_avg_before": load_average()}
    c = CFLARE(t, adata=adata)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = cr.estimators.CFLARE(cr.kernels.PrecomputedKernel(t, adata=adata))

        def cellrank_cflare():
            rc.compute_eigendecomposition(k=20)
            rc.predict(use=n_terminal, method="kmeans")

        steps = {
            "ours": lambda: c.fit(k=20, use=n_terminal, method="kmeans"),
            "cellrank": cellrank_cflare,
            "eig": lambda: c.compute_eigendecomposition(20, n_right=0),
            "predict": lambda: c.predict(use=n_terminal, method="kmeans"),  # right eigenvectors + clustering
        }
        runs: dict[str, list[float]] = {name: [] for name in steps}
        for _ in range(REPEAT_CFLARE):
            for name, step in steps.items():
                time.sleep(0.05)  # let multithreaded BLAS workers of the previous step stop spinning
                t0 = time.perf_counter()
                step()
                runs[name].append(time.perf_counter() - t0)
    row["repeat"] = REPEAT_CFLARE
    row["ours_cflare_s"] = float(np.median(runs["ours"]))
    row["ours_cflare_min_s"] = min(runs["ours"])
    row["ours_eig_s"] = float(np.median(runs["eig"]))
    row["ours_predict_s"] = float(np.median(runs["predict"]))
    row["cellrank_cflare_s"] = float(np.median(runs["cellrank"]))
    row["cellrank_cflare_min_s"] = min(runs["cellrank"])
    row["spmv_s"] = _spmv_s(t)
    row["krylov_lower_bound_s"] = 230 * row["spmv_s"]
    row["load_avg_after"] = load_average()
    row["same_terminal_states"] = sorted(map(str, c.terminal_states.cat.categories)) == sorted(
        map(str, rc.terminal_states.cat.categories)
    )

    row["same_terminal_cells"] = _partition(c.terminal_states.cat.codes) == _partition(rc.terminal_states.cat.codes)
    # cells in a different state after matching each of our states to CellRank's with the largest overlap (-1: none)
    ours_codes = c.terminal_states.cat.codes.to_numpy()
    ref_codes = rc.terminal_states.cat.codes.to_numpy()
    table = pd.crosstab(ours_codes, ref_codes)
    matched = sum(int(table.loc[i].drop(-1, errors="ignore").max()) for i in table.index if i != -1)
    row["terminal_cells_differing"] = int(((ours_codes >= 0) | (ref_codes >= 0)).sum() - matched)
    d_ours, d_ref = c.eigendecomposition["D"], rc.eigendecomposition["D"]
    row["max_eigenvalue_difference"] = float(np.abs(d_ours - d_ref).max())
    row["speedup_cflare"] = row["cellrank_cflare_s"] / row["ours_cflare_s"]
    return row


#: CFLARE in fresh processes (``--cflare-cold``): runs per tool and method, alternating ours and CellRank's.
REPEAT_COLD = 5


def cflare_cold(adata, t, repeat: int = REPEAT_COLD) -> list[dict]:
    """CFLARE as the issue timed it: each run a fresh process (``cflare_first_call.py``), medians reported.

    CellRank's ``predict`` defaults to Leiden clustering on a scanpy kNN graph, whose first call in a process
    compiles numba code; ours defaults to k-means. Three settings: each package's defaults, and both with
    ``method="kmeans"`` and ``method="leiden"`` (``k=20, use=4``). A run's first call (after the import) is
    what a user waits for in a new session; its second call in the same process is the warm time.
    """
    from scipy import sparse

    script = Path(__file__).with_name("cflare_first_call.py")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        sparse.save_npz(Path(tmp) / "t.npz", sparse.csr_matrix(t))
        adata.write_h5ad(Path(tmp) / "adata.h5ad")
        for method in ("default", "kmeans", "leiden"):
            runs: dict[str, list[dict]] = {"ours": [], "cellrank": []}
            load_before = load_average()
            for _ in range(repeat):
                for tool in runs:
                    out = subprocess.run(
                        [sys.executable, str(script), tool, method, tmp], capture_output=True, text=True, check=True
                    )
                    runs[tool].append(json.loads(out.stdout.strip().splitlines()[-1]))
            row: dict = {"method": method, "repeat": repeat, "load_avg_before": load_before}
            for tool, results in runs.items():
                for key in ("import_s", "first_call_s", "warm_call_s"):
                    row[f"{tool}_{key}"] = float(np.median([r[key] for r in results]))
                row[f"{tool}_state_sizes"] = results[-1]["state_sizes"]
            row["load_avg_after"] = load_average()
            row["speedup_first_call"] = row["cellrank_first_call_s"] / row["ours_first_call_s"]
            row["speedup_warm_call"] = row["cellrank_warm_call_s"] / row["ours_warm_call_s"]
            ours_codes, ref_codes = (np.asarray(runs[tool][-1]["codes"]) for tool in ("ours", "cellrank"))
            row["same_terminal_cells"] = bool(np.array_equal(ours_codes >= 0, ref_codes >= 0))
            row["same_terminal_partition"] = _partition(ours_codes) == _partition(ref_codes)
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def scale(n_cells: int, data: str = "simulated") -> dict:
    (adata, t), row = (synthetic(n_cells) if data == "synthetic" else simulated(n_cells, n_genes=30)), {}
    row.update(data=data, n_cells=n_cells, nnz=int(t.nnz), load_avg_before=load_average())
    g = GPCCA(t, adata=adata)
    _, row["schur_s"] = timed(lambda: g.compute_schur(10))
    print(f"{n_cells} cells: Schur {row['schur_s']:.1f} s, peak RSS {peak_rss_gb():.2f} GB", flush=True)
    # the synthetic tree has three metastable ends and a spectral gap after them: 6 states leave one empty
    n_states = 4 if data == "synthetic" else 6
    row["n_states"] = n_states
    _, row["macrostates_s"] = timed(lambda: g.compute_macrostates(n_states, n_cells=100, cluster_key="clusters"))
    print(f"{n_cells} cells: macrostates {row['macrostates_s']:.1f} s", flush=True)
    g.predict_terminal_states(method="top_n", n_states=3, n_cells=100)
    _, row["fate_s"] = timed(lambda: g.compute_fate_probabilities())
    row["total_s"] = row["schur_s"] + row["macrostates_s"] + row["fate_s"]
    row["fate_solver"] = g.params["fate_probabilities"]["solver"]
    row["fate_preconditioner"] = g.params["fate_probabilities"]["preconditioner"]
    row["fate_max_residual"] = g.params["fate_probabilities"]["max_residual"]
    row["schur_residual"] = g.params["schur"]["residual"]
    row["schur_tol"] = g.params["schur"]["tol"]
    row["terminal_states"] = list(g.fate_probabilities.columns)
    row["peak_rss_gb"] = peak_rss_gb()
    row["load_avg_after"] = load_average()
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--full", action="store_true", help="pancreas side by side, 100k and 1M cells")
    parser.add_argument("--scale-only", action="store_true", help="skip the side-by-side part")
    parser.add_argument("--cflare-only", action="store_true", help="CFLARE on pancreas side by side only")
    parser.add_argument(
        "--cflare-cold", action="store_true", help="CFLARE on pancreas in fresh processes (first and warm calls)"
    )
    parser.add_argument("--sizes", type=int, nargs="*", help="scale sizes (default 20k; --full 100k and 1M)")
    args = parser.parse_args(argv)
    out = {
        "repeat_cheap_steps": REPEAT,
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "full": args.full,
        "side_by_side": [],
        "scale": [],
    }
    from threadpoolctl import threadpool_info

    out["blas_threads"] = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
    out["cpu_count"] = os.cpu_count()
    if args.cflare_only:
        out["cflare"] = [cflare_side_by_side(*pancreas())]
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "bench_cflare.json").write_text(json.dumps(out, indent=1))
        print(json.dumps(out["cflare"], indent=1))
        return 0
    if args.cflare_cold:
        out["cflare_cold"] = cflare_cold(*pancreas())
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "bench_cflare_cold.json").write_text(json.dumps(out, indent=1))
        with (RESULTS / "bench_cflare_cold.csv").open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["method", "step", "ours_s", "cellrank_s", "speedup"])
            for row in out["cflare_cold"]:
                for step in ("first_call", "warm_call", "import"):
                    ours, ref = row[f"ours_{step}_s"], row[f"cellrank_{step}_s"]
                    writer.writerow([row["method"], step, round(ours, 4), round(ref, 4), round(ref / ours, 1)])
        return 0
    if not args.scale_only:
        if args.full:
            adata, t = pancreas()
            out["side_by_side"].append(side_by_side("pancreas", adata, t, n_states=10, n_terminal=4))
        else:
            adata, t = simulated(1500)
            out["side_by_side"].append(side_by_side("simulated", adata, t, n_states=6, n_terminal=3))
        print(json.dumps(out["side_by_side"], indent=1), flush=True)
    sizes = args.sizes if args.sizes else ((100_000, 1_000_000) if args.full else (20_000,))
    for n in sizes:
        out["scale"].append(scale(n, "synthetic" if n > 200_000 else "simulated"))
        print(json.dumps(out["scale"][-1], indent=1), flush=True)
    RESULTS.mkdir(exist_ok=True)
    stem = "bench_full" if args.full else "bench"
    if args.scale_only:
        stem += "_scale"
    (RESULTS / f"{stem}.json").write_text(json.dumps(out, indent=1))
    with (RESULTS / f"{stem}.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["part", "data", "n_cells", "step", "ours_s", "cellrank_s", "cellrank_1thread_s"])
        for row in out["side_by_side"]:
            for step in ("schur", "macrostates", "fate", "drivers", "cflare"):
                writer.writerow(
                    [
                        "side_by_side",
                        row["data"],
                        row["n_cells"],
                        step,
                        round(row[f"ours_{step}_s"], 4),
                        round(row[f"cellrank_{step}_s"], 4),
                        round(row.get(f"cellrank_{step}_1thread_s", float("nan")), 4),
                    ]
                )
        for row in out["scale"]:
            for step in ("schur", "macrostates", "fate", "total"):
                writer.writerow(["scale", row["data"], row["n_cells"], step, round(row[f"{step}_s"], 3), "", ""])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
