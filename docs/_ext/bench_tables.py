"""Collect the committed benchmark results of every package into one tidy table for the docs.

Each package's ``benchmarks/run.py`` writes its own CSV/JSON into ``benchmarks/results/``; the readers
below turn them into rows of ``package, benchmark, data, n_cells, ours_s, reference, reference_s,
speedup``. A missing file is skipped: the page shows what has been measured.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2] / "packages"
COLUMNS = ["package", "benchmark", "data", "n_cells", "ours_s", "reference", "reference_s", "speedup"]


def _row(package, benchmark, data, n_cells, ours, reference, reference_s) -> dict:
    ours = None if ours is None or pd.isna(ours) else float(ours)
    reference_s = None if reference_s is None or pd.isna(reference_s) else float(reference_s)
    speedup = reference_s / ours if ours and reference_s else None
    return dict(zip(COLUMNS, [package, benchmark, data, n_cells, ours, reference, reference_s, speedup], strict=True))


def _csv(path: Path) -> pd.DataFrame | None:
    return pd.read_csv(path) if path.exists() else None


def _json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def _csv_reader(package: str, files: tuple[str, ...], name: str, reference: str, ref_col: str, data: str | None = None):
    """A reader for packages whose results are CSV rows with ``ours_s`` and the reference's seconds."""

    def read(results: Path) -> Iterator[dict]:
        for file in files:
            frame = _csv(results / file)
            if frame is None:
                continue
            for rec in frame.to_dict("records"):
                yield _row(
                    package,
                    rec[name],
                    data or rec["data"],
                    rec.get("n_cells"),
                    rec["ours_s"],
                    reference,
                    rec.get(ref_col),
                )

    return read


kernels = _csv_reader(
    "kernels", ("full.csv", "ci.csv", "full_pancreas.csv", "full_million.csv"), "kernel", "CellRank", "cellrank_s"
)
_estimators_steps = _csv_reader(
    "estimators", ("bench_full.csv", "bench.csv", "bench_full_scale.csv"), "step", "CellRank", "cellrank_s"
)


def estimators(results: Path) -> Iterator[dict]:
    yield from _estimators_steps(results)
    frame = _csv(results / "bench_cflare_cold.csv")  # CFLARE in fresh processes: first and warm calls
    for rec in [] if frame is None else frame.to_dict("records"):
        if rec["step"] != "import":
            label = f"CFLARE {rec['step'].replace('_', ' ')}, new process ({rec['method']})"
            yield _row("estimators", label, "pancreas", 3696, rec["ours_s"], "CellRank", rec["cellrank_s"])


streaming_models = _csv_reader(
    "streaming-models", ("bench_full.csv", "bench_ci.csv"), "model", "cellarium-ml", "cellarium_s", "simulated shards"
)


def gp_differential(results: Path) -> Iterator[dict]:
    # DA fit + predict, each tool's defaults, warm (da_speed[_full].csv; older runs in bench*.json)
    da_files = (("da_speed_full.csv", 3500), ("da_speed.csv", 2000))
    for name, n_cells in da_files:
        table = _csv(results / name)
        for rec in [] if table is None else table.to_dict("records"):
            yield _row(
                "gp-differential", "da warm", "simulated", n_cells, rec["ours_warm_s"], "kompot", rec["kompot_warm_s"]
            )
    have_da = {n for name, n in da_files if (results / name).exists()}
    for name in ("bench_full.json", "bench.json", "bench_100k.json"):
        data = _json(results / name)
        if data is None or "speed" not in data:
            continue
        speed = data["speed"]
        for key, ours in speed.items():
            if not key.endswith("_ours"):
                continue
            stem = key[: -len("_ours")]
            if stem == "da" and data.get("n_cells") in have_da:
                continue
            ref = speed.get(f"{stem}_kompot", {})
            seconds = ours.get("warm_s", ours.get("s"))
            ref_seconds = ref.get("warm_s", ref.get("s"))
            yield _row("gp-differential", stem, "simulated", data.get("n_cells"), seconds, "kompot", ref_seconds)
    # DE fit + predict + Mahalanobis, same landmarks and length scale, warm (de_speed[_full].csv)
    for name, n_cells in (("de_speed_full.csv", 3500), ("de_speed.csv", 2000)):
        table = _csv(results / name)
        if table is None:
            continue
        for rec in table.to_dict("records"):
            ev = "empirical variance" if str(rec["empirical_variance"]) == "True" else "no empirical variance"
            stem = f"de warm ({rec['representation']}, {ev})"
            ours, ref = rec["ours_warm_s"], rec["kompot_warm_s"]
            yield _row("gp-differential", stem, "simulated", n_cells, ours, "kompot", ref)


def velocity_vae(results: Path) -> Iterator[dict]:
    for name in ("bench_full.json", "bench.json"):
        data = _json(results / name)
        if data is None:
            continue
        cells = data.get("data", {}).get("cells")
        dataset = data.get("data", {}).get("name", "simulated")
        ours, ref = data.get("ours", {}), data.get("reference", {})
        for key in ("seconds_per_epoch", "get_velocity_s", "get_latent_time_s"):
            if key in ours:
                yield _row(
                    "velocity-vae", key.removesuffix("_s"), dataset, cells, ours[key], "scvi-tools VELOVI", ref.get(key)
                )
        for key, label, summary in (
            ("interleaved_seconds_per_epoch", "seconds_per_epoch (median of interleaved runs)", "median"),
            ("interleaved_cpu_seconds_per_epoch", "CPU seconds_per_epoch (mean of interleaved runs)", "mean"),
        ):
            runs = data.get(key)
            if runs:
                ours_s, ref_s = (getattr(pd.Series(runs[side]), summary)() for side in ("ours", "reference"))
                yield _row("velocity-vae", label, dataset, cells, ours_s, "scvi-tools VELOVI", ref_s)


READERS: dict[str, Callable[[Path], Iterator[dict]]] = {
    "kernels": kernels,
    "estimators": estimators,
    "gp-differential": gp_differential,
    "velocity-vae": velocity_vae,
    "streaming-models": streaming_models,
}


def collect(root: Path = ROOT) -> pd.DataFrame:
    """Every package's side-by-side timings as one table (seconds; ``speedup`` = reference / ours)."""
    rows = [row for package, read in READERS.items() for row in read(root / package / "benchmarks" / "results")]
    frame = pd.DataFrame(rows, columns=COLUMNS)
    return frame.drop_duplicates(subset=["package", "benchmark", "data", "n_cells"], keep="first")
