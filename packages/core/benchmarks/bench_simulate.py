"""Time and peak memory of the simulator.

Cases (each run in a fresh child process, so that its peak RSS is its own):

``simulate_3k``
    ``cf.datasets.simulate(3000, 500)`` in memory (best of a few repeats).
``shards_<n>``
    ``cf.datasets.simulate_shards(tmp, n, 500, shard_size=100_000)`` written to a temporary folder;
    ``--no-truth-layers`` writes lean shards without the dense true-velocity layers.

Peak RSS is ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` of the child (after its imports, the
baseline is reported too). Results go to ``results/simulate.json`` next to this script::

    python packages/core/benchmarks/bench_simulate.py            # 3k, then 1M cells
    python packages/core/benchmarks/bench_simulate.py --large 200000 --large 1000000 --n-jobs 1
    python packages/core/benchmarks/bench_simulate.py --large 1000000 --no-truth-layers
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "simulate.json"


def _rss_mib() -> float:
    # ru_maxrss is in KiB on Linux, bytes on macOS
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024**2 if sys.platform == "darwin" else 1024)


def _case_small(repeats: int) -> dict:
    import cellflux.datasets as cfd

    cfd.simulate(200, 50)  # warm-up: imports, first-call overheads
    baseline = _rss_mib()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        adata = cfd.simulate(3000, 500, seed=0)
        times.append(time.perf_counter() - start)
        del adata
    return {
        "n_cells": 3000,
        "n_genes": 500,
        "seconds_best": min(times),
        "seconds_all": times,
        "peak_rss_mib": _rss_mib(),
        "baseline_rss_mib": baseline,
    }


def _case_shards(n_cells: int, shard_size: int, n_jobs: int, truth_layers: bool) -> dict:
    import cellflux.datasets as cfd

    cfd.simulate(200, 50)
    baseline = _rss_mib()
    with tempfile.TemporaryDirectory(prefix="cellflux-bench-") as tmp:
        start = time.perf_counter()
        paths = cfd.simulate_shards(
            tmp,
            n_cells,
            500,
            shard_size=shard_size,
            show_progress=False,
            truth_layers=truth_layers,
            n_jobs=n_jobs,
            seed=0,
        )
        seconds = time.perf_counter() - start
        disk = sum(p.stat().st_size for p in paths)
    return {
        "n_cells": n_cells,
        "n_genes": 500,
        "shard_size": shard_size,
        "n_shards": len(paths),
        "n_jobs": n_jobs,
        "truth_layers": truth_layers,
        "seconds": seconds,
        "cells_per_second": n_cells / seconds,
        "disk_gib": disk / 1024**3,
        "peak_rss_mib": _rss_mib(),
        "baseline_rss_mib": baseline,
    }


def _child(args: argparse.Namespace) -> None:
    if args.case == "small":
        result = _case_small(args.repeats)
    else:
        result = _case_shards(args.n_cells, args.shard_size, args.n_jobs, args.truth_layers)
    print(json.dumps(result))


def _run_child(*extra: str) -> dict:
    command = [sys.executable, __file__, "--child", *extra]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--large", type=int, action="append", help="cells of a sharded run (repeatable)")
    parser.add_argument("--shard-size", type=int, default=100_000)
    parser.add_argument("--n-jobs", type=int, default=-1, help="threads of the sharded runs (-1: all CPUs)")
    parser.add_argument(
        "--truth-layers",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="store the dense true-velocity layers in the shards (--no-truth-layers: lean shards)",
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--case", choices=["small", "shards"], help=argparse.SUPPRESS)
    parser.add_argument("--n-cells", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return

    import cellflux

    results: dict = {
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "cellflux": cellflux.__version__,
        },
        "cases": {},
    }
    results["cases"]["simulate_3k"] = _run_child("--case", "small", "--repeats", str(args.repeats))
    print("simulate 3k x 500:", json.dumps(results["cases"]["simulate_3k"]), flush=True)
    for n_cells in args.large or [1_000_000]:
        extra = ["--case", "shards", "--n-cells", str(n_cells), "--shard-size", str(args.shard_size)]
        lean = [] if args.truth_layers else ["--no-truth-layers"]
        case = _run_child(*extra, "--n-jobs", str(args.n_jobs), *lean)
        results["cases"][f"shards_{n_cells}"] = case
        print(f"shards {n_cells} x 500:", json.dumps(case), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
