"""DA accuracy sweep: AUROC of the planted depletion, ours vs kompot, two sizes x two seeds x two representations.

Run from the repository root (one process, each tool with its defaults)::

    python packages/gp-differential/benchmarks/da_accuracy.py [--skip-reference]

Writes ``benchmarks/results/da_accuracy.json``. Truth: ``obs[TruthKey.DA_LOG_FOLD_CHANGE] < 0`` (every
cell of the depleted lineage's branch, from the branch point on); ranking statistic ``-z`` (and ``-lfc``).
For scale, a model-free baseline is reported too: the share of condition-2 cells among each cell's
``k`` nearest neighbours (a classifier estimate of the density ratio). ``ours`` is the default
(``method="ratio"``), ``ours_density`` the kompot-parity estimator (``method="density"``),
``ours_samples`` the default with the between-sample variance (``obs["sample"]``, three per condition).
Calls: precision and recall of the cells called ``"down"`` (default thresholds) against the depletion.

``--reuse-reference`` takes kompot's figures for settings already in the previous results file (same
simulated data: the simulator is seeded) instead of re-running kompot (minutes per setting); settings
not in it (e.g. the held-out seed 2) run kompot in this process. Rows say which (``kompot_source``).

``--held-out`` runs the settings of :data:`HELD_OUT` instead (seeds 3 and 4 at 2,000 cells, on which no
default was chosen), ours and kompot in this process, into ``results/da_accuracy_heldout.json``.

``--seeds 5,6,...`` runs more replicates at 2,000 cells (ours and kompot only, both in this process)
into ``results/da_accuracy_seeds.json``: none of these seeds was used to choose a default, so they say
how often, and by how much, ours ranks below kompot beyond the settings above.

``--reference-only`` runs kompot alone and writes ``results/da_accuracy_kompot.json``, each row with the
SHA-1 of its input (representation and condition masks); ``--reference-from FILE`` then takes kompot's
figures from such a file for every setting whose input hash matches (so kompot, minutes per setting,
need not run again in the same process as ours when only our code changed), and runs kompot otherwise.
``--evidence`` runs, on any of the setting lists above, our default (``ours``, fixed length scale) and
``ours_evidence`` (``DifferentialAbundance(ratio_ls="evidence")``: the ratio's length scale by the
largest Laplace evidence over 1-32 times the density length scale) side by side, with kompot's figures
from ``--reference-from`` files (repeatable: the kompot-only file, the held-out and the seeds results all
carry input hashes), into ``results/da_accuracy_evidence[_heldout|_seeds].json``. Each row records the
chosen factor and the log evidence of every grid point. ``--evidence-prior-std`` also searches 0.5, 1 and
2 times the default prior std (``ours_evidence_std``).

Findings of ``--evidence`` (2026-11-22, all 34 settings; re-run with 0.7.1, whose fixed-rule column moved by
at most 0.0004 and whose evidence columns did not move; the evidence rule has no tuned knob besides its
grid, so every seed is an evaluation of it): the evidence chooses 2x (51 of 68 choices over the three
files, with and without the prior-std search) or 4x, never the 8-32x that the trunk's sampling noise on
seed 1 wants, and its choice anti-correlates with the AUROC over the grid on most settings
(``results/da_evidence_grid.json``). Mean AUROC fixed / evidence / evidence+prior std: 0.9441 / 0.9411 /
0.9384 (ten settings), 0.9642 / 0.9548 / 0.9522 (held-out), 0.9479 / 0.9419 / 0.9377 (seeds 5-14);
below kompot 2 / 2 / 2, 1 / 2 / 2 and 5 / 6 / 5. So it stays an option, not the default. Why: the
labels' log evidence over the null model (no ratio, the offset alone; about ``n log 2`` here) is 4-32
nats at 2-4x and -0.6 to +4.8 at 16-32x on 2,000 cells (26-64 and 1-12 at 3,500 cells): the smooth fits
whose ``z`` ranks the depletion best on most seeds explain next to nothing of the labels (a near-flat,
strongly shrunk trend whose ranking happens to separate the branch). The same holds on a representation
without the planted DE genes (``da_evidence_without_de.py``: the evidence still picks 2x / 4x, the AUROC
is still best at 16-32x), so it is not the expression change that misleads it. The evidence measures
how well the label probabilities are fitted; the AUROC only the ranking.

The ratio estimator's defaults: length scale factor 4 (chosen on the 2,000-cell seeds 0/1 in 0.2); prior
std 0.1 at 2,000 cells scaled by ``sqrt(2000 / n)``, chosen from a sweep of length-scale factors
1-128 x prior std 0.05-1 over all ten settings here and 20,000 cells of seed 0 (so these rows are no
held-out test of it); the 100,000-cell run (``run.py --scale-only``) was not used to choose it.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

import run as bench  # noqa: E402

#: Settings no default of the ratio estimator was chosen on (``--held-out``).
HELD_OUT = [(2000, 400, 3), (2000, 400, 4)]


def knn_label_fraction(x: np.ndarray, m2: np.ndarray, k: int) -> np.ndarray:
    from scipy.spatial import cKDTree

    _, idx = cKDTree(x).query(x, k=k)
    return m2[idx].mean(axis=1)


def input_sha1(x: np.ndarray, m1: np.ndarray, m2: np.ndarray) -> str:
    h = hashlib.sha1()
    for a in (np.ascontiguousarray(x, dtype=np.float64), m1.astype(np.uint8), m2.astype(np.uint8)):
        h.update(a.tobytes())
    return h.hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--reuse-reference", action="store_true", help="kompot figures from the previous results")
    parser.add_argument("--reference-only", action="store_true", help="kompot alone -> da_accuracy_kompot.json")
    parser.add_argument(
        "--reference-from",
        type=Path,
        action="append",
        help="kompot figures from a results file with input hashes (same hash); repeatable",
    )
    parser.add_argument("--evidence", action="store_true", help="ours vs ours with ratio_ls='evidence'")
    parser.add_argument("--evidence-prior-std", action="store_true", help="also search 0.5-2 x the prior std")
    parser.add_argument(
        "--held-out", action="store_true", help="seeds 3 and 4 at 2,000 cells -> da_accuracy_heldout.json"
    )
    parser.add_argument(
        "--seeds",
        type=lambda v: [int(s) for s in v.split(",")],
        help="comma-separated seeds at 2,000 cells, ours and kompot only -> da_accuracy_seeds.json",
    )
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    import logging

    logging.disable(logging.WARNING)
    from cellflux._keys import TruthKey

    name = "da_accuracy_kompot.json" if args.reference_only else "da_accuracy.json"
    if args.evidence:
        name = "da_accuracy_evidence.json"
    if args.held_out:
        name = name.replace(".json", "_heldout.json")
    elif args.seeds:
        name = name.replace(".json", "_seeds.json")
    out = HERE / "results" / name
    hashed = {}
    for ref in args.reference_from or []:
        for r in json.loads(ref.read_text()):
            source = r.get("kompot_source", "this run")
            if "kompot" in r and (source == "this run" or "sha1 match" in source) and "input_sha1" in r:
                hashed.setdefault(r["input_sha1"], r)
    previous = {}
    if args.reuse_reference and out.exists():
        for old in json.loads(out.read_text()):
            if "kompot" in old and old.get("kompot_source", "this run") == "this run":
                previous[(old["n_cells"], old["seed"], old["representation"])] = old["kompot"]
    rows = []
    settings = [(2000, 400, 0), (2000, 400, 1), (2000, 400, 2), (3500, 1100, 0), (3500, 1100, 1)]
    if args.held_out:
        settings = HELD_OUT
    elif args.seeds:
        settings = [(2000, 400, seed) for seed in args.seeds]
    for n_cells, n_genes, seed in settings:
        adata, _, reps = bench.simulate(n_cells, n_genes, seed)
        m1, m2, samples = bench.masks(adata)
        depleted = adata.obs[TruthKey.DA_LOG_FOLD_CHANGE].to_numpy() < 0
        on_branch = adata.obs[TruthKey.DA].to_numpy().astype(bool)
        for name, x in reps.items():
            sha1 = input_sha1(x, m1, m2)
            row = {"n_cells": n_cells, "seed": seed, "representation": name, "input_sha1": sha1}
            tools = [] if args.reference_only else ["ours"] if args.seeds else ["ours", "ours_density", "ours_samples"]
            if args.evidence:
                tools = ["ours", "ours_evidence"] + (["ours_evidence_std"] if args.evidence_prior_std else [])
            if args.reference_only:
                tools.append("kompot")
                row["kompot_source"] = "this run"
            elif sha1 in hashed:
                ref_row = hashed[sha1]
                row["kompot"] = ref_row["kompot"]
                row["kompot_source"] = (
                    ref_row["kompot_source"]  # already reused: keep where and when kompot ran
                    if ref_row.get("kompot_source", "this run") != "this run"
                    else f"run of this script on the same input (sha1 match), {ref_row['date']}"
                )
            elif (n_cells, seed, name) in previous:
                row["kompot"] = previous[(n_cells, seed, name)]
                row["kompot_source"] = "previous run of this script (same data)"
            elif not args.skip_reference:
                tools.append("kompot")
                row["kompot_source"] = "this run"
            for tool in tools:
                t0 = time.perf_counter()
                if tool.startswith("ours_evidence"):
                    from cellflux_gp_differential import DifferentialAbundance

                    std_factors = (0.5, 1.0, 2.0) if tool == "ours_evidence_std" else (1.0,)
                    model = DifferentialAbundance(
                        random_state=0, ratio_ls="evidence", ratio_prior_std_factors=std_factors
                    ).fit(x[m1], x[m2])
                    r = model.predict(x, progress=False)
                    sel = model.ratio_evidence
                    base = sel.ls[0] / model.ratio_ls_factors[0]
                    row[f"{tool}_choice"] = {
                        "ls_factor": round(model.ratio_ls / base, 4),
                        "prior_std": round(model.ratio_prior_std, 5),
                        "grid_ls_factors": [round(v, 4) for v in sel.ls / base],
                        "grid_prior_std": [round(v, 5) for v in sel.scales],
                        "log_evidence": np.round(sel.log_evidence, 3).tolist(),
                    }
                elif tool == "ours_samples":
                    from cellflux_gp_differential import DifferentialAbundance

                    r = (
                        DifferentialAbundance(random_state=0)
                        .fit(x[m1], x[m2], condition1_sample_indices=samples[m1], condition2_sample_indices=samples[m2])
                        .predict(x, progress=False)
                    )
                else:
                    r = bench.run_da(tool, x, m1, m2)
                down = np.asarray(r["log_fold_change_direction"]) == "down"
                z = np.asarray(r["log_fold_change_zscore"])
                lfc = np.asarray(r["log_fold_change"])
                row[tool] = {
                    "auroc_depleted_z": round(bench.auroc(depleted, -z), 4),
                    "auroc_depleted_lfc": round(bench.auroc(depleted, -lfc), 4),
                    "auroc_depleted_vs_other_branches_z": round(bench.auroc(depleted[on_branch], -z[on_branch]), 4),
                    "seconds": round(time.perf_counter() - t0, 2),
                    "called_down": int(down.sum()),
                    "precision_down": round(float(depleted[down].mean()), 4) if down.any() else None,
                    "recall_down": round(float(down[depleted].mean()), 4),
                }
            row["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
            row["load_average"] = [round(v, 2) for v in os.getloadavg()]
            for k in (30, 200):
                row[f"knn{k}_label_fraction"] = round(bench.auroc(depleted, -knn_label_fraction(x, m2, k)), 4)
            print(json.dumps(row), flush=True)
            rows.append(row)
    out.write_text(json.dumps(rows, indent=1))
    print("wrote", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
