"""Differential expression at 100,000 cells x 2,000 genes: time, memory and accuracy, outputs in memory and on disk.

``python de_scale.py [--n-cells N] [--n-genes G]`` simulates two conditions (seed 0, planted DE genes), takes
20 principal components (fitted on every fifth cell), then runs ``DifferentialExpression`` (1,000 landmarks,
empirical variance, Mahalanobis distances of all genes) twice, each in a fresh process: with the
``cells x genes`` outputs in memory (``store_arrays_on_disk=False``) and in memory-mapped files
(``True``). Peak memory is read from ``/proc/self/status`` every 50 ms, above the level after the inputs
were loaded: resident set, its anonymous part (heap: what cannot be paged out) and its file-backed part
(pages of the memory-mapped outputs, which the kernel writes back and evicts under memory pressure).
Writes ``results/de_scale.json``.

``--accuracy`` instead fits once (no per-cell outputs) and ranks the genes by both gene statistics, the
calibrated Mahalanobis distance and the support-matched distance (``_support.supported_distances``, the
default of ``cf.tl.differential_expression``), timing each; writes ``results/de_scale_accuracy.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent


def _status() -> dict[str, int]:
    values = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS", "RssAnon", "RssFile")):
                key, value = line.split(":")
                values[key] = int(value.split()[0]) * 1024
    return values


class PeakStatus:
    """Peak ``VmRSS``/``RssAnon``/``RssFile`` of this process while the block runs (polled)."""

    def __enter__(self) -> PeakStatus:
        self.start = _status()
        self.peak = dict(self.start)
        self._done = False
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._done:
            for key, value in _status().items():
                self.peak[key] = max(self.peak[key], value)
            time.sleep(0.05)

    def __exit__(self, *exc) -> None:
        self._done = True
        self._thread.join()

    def increase_gb(self, key: str) -> float:
        return round((self.peak[key] - self.start[key]) / 1024**3, 2)


def prepare(path: Path, n_cells: int, n_genes: int) -> float:
    """Simulate, normalise and project; save the inputs to ``path``; return the seconds taken."""
    from sklearn.decomposition import PCA

    import cellflux as cf
    from cellflux._keys import TruthKey
    from cellflux_gp_differential._representation import log_normalize

    sys.path.insert(0, str(HERE))
    from run import masks

    t0 = time.perf_counter()
    adata = cf.datasets.simulate(n_cells=n_cells, n_genes=n_genes, n_conditions=2, seed=0, truth_layers=False)
    counts = adata.layers["spliced"]
    pcs = PCA(20, random_state=0).fit(log_normalize(counts[::5]))
    blocks = range(0, n_cells, 10_000)
    x = np.vstack([pcs.transform(log_normalize(counts[i : i + 10_000])) for i in blocks])
    y = np.vstack([log_normalize(counts[i : i + 10_000]) for i in blocks])
    m1, m2, _ = masks(adata)
    np.savez(path, x=x, y=y, m1=m1, m2=m2, de=adata.var[TruthKey.DE].to_numpy())
    return time.perf_counter() - t0


def child(path: Path, on_disk: bool) -> dict:
    """One DE run on the saved inputs (in this process)."""
    import ctypes
    import logging
    import warnings

    from sklearn.metrics import roc_auc_score

    from cellflux_gp_differential import DifferentialExpression

    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    data = np.load(path)
    x, y, m1, m2 = data["x"], data["y"], data["m1"], data["m2"]
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with PeakStatus() as peak:
        t0 = time.perf_counter()
        model = DifferentialExpression(
            n_landmarks=1000, use_empirical_variance=True, random_state=0, store_arrays_on_disk=on_disk
        ).fit(x[m1], y[m1], x[m2], y[m2])
        result = model.predict(x, compute_mahalanobis=True, progress=False)
        seconds = time.perf_counter() - t0
    outputs = [v for v in result.values() if getattr(v, "ndim", 0) == 2]
    return {
        "store_arrays_on_disk": on_disk,
        "seconds": round(seconds, 1),
        "peak_rss_increase_gb": peak.increase_gb("VmRSS"),
        "peak_anonymous_increase_gb": peak.increase_gb("RssAnon"),
        "peak_file_backed_increase_gb": peak.increase_gb("RssFile"),
        "outputs_gb": round(sum(v.nbytes for v in outputs) / 1024**3, 2),
        "outputs_memory_mapped": all(isinstance(v, np.memmap) for v in outputs),
        "expression_input_gb": round(y.nbytes / 1024**3, 2),
        "mahalanobis_step_estimate_gb": round(model.estimate_memory()["bytes"] / 1024**3, 3),
        "auroc_planted_genes_mahalanobis": round(
            float(roc_auc_score(data["de"], np.asarray(result["mahalanobis_distances"]))), 4
        ),
        "n_planted_genes": int(data["de"].sum()),
        "load_average_end": [round(v, 2) for v in os.getloadavg()],
    }


def accuracy(path: Path) -> dict:
    """Planted-gene AUROC and seconds of both gene statistics on one fit (in this process)."""
    import logging
    import warnings

    from sklearn.metrics import roc_auc_score

    from cellflux_gp_differential import DifferentialExpression
    from cellflux_gp_differential._support import supported_distances

    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    data = np.load(path)
    x, y, m1, m2, de = data["x"], data["y"], data["m1"], data["m2"], data["de"]
    t0 = time.perf_counter()
    model = DifferentialExpression(n_landmarks=1000, random_state=0, distance="calibrated")
    model.fit(x[m1], y[m1], x[m2], y[m2])
    out = {"fit_seconds": round(time.perf_counter() - t0, 1)}
    for name, compute in (
        ("calibrated", lambda: model.compute_mahalanobis_distances(x, progress=False)),
        ("supported", lambda: supported_distances(model, x[m1], x[m2])),
    ):
        t0 = time.perf_counter()
        d = compute()
        out[f"{name}_seconds"] = round(time.perf_counter() - t0, 1)
        out[f"auroc_{name}"] = round(float(roc_auc_score(de, d)), 4)
    out["n_planted_genes"] = int(de.sum())
    out["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-cells", type=int, default=100_000)
    parser.add_argument("--n-genes", type=int, default=2000)
    parser.add_argument("--child", nargs=2, metavar=("INPUTS", "ON_DISK"), help=argparse.SUPPRESS)
    parser.add_argument("--accuracy", action="store_true", help="only the two gene statistics' AUROC")
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(Path(args.child[0]), args.child[1] == "1")))
        return 0
    report: dict = {"n_cells": args.n_cells, "n_genes": args.n_genes, "n_landmarks": 1000, "cpu_count": os.cpu_count()}
    report["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    if args.accuracy:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "inputs.npz"
            report["prepare_seconds"] = round(prepare(path, args.n_cells, args.n_genes), 1)
            report.update(accuracy(path))
        print(json.dumps(report), flush=True)
        (HERE / "results").mkdir(exist_ok=True)
        (HERE / "results" / "de_scale_accuracy.json").write_text(json.dumps(report, indent=2))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "inputs.npz"
        report["prepare_seconds"] = round(prepare(path, args.n_cells, args.n_genes), 1)
        report["runs"] = []
        for on_disk in (False, True):
            out = subprocess.run(
                [sys.executable, __file__, "--child", str(path), str(int(on_disk))],
                capture_output=True,
                text=True,
                check=True,
            )
            report["runs"].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(json.dumps(report["runs"][-1]), flush=True)
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "de_scale.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
