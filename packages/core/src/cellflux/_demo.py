"""``cellflux demo``: the suite's main job on simulated data.

For now it simulates a two-condition branching differentiation, writes the annotated h5ad and a
short summary of the ground truth; the analysis steps join as their packages land.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from ._keys import TruthKey

__all__ = ["run_demo"]

logger = logging.getLogger(__name__)

_H5AD = "demo.h5ad"
_SUMMARY = "summary.md"


def run_demo(
    out: str | Path,
    *,
    n_cells: int | None = None,
    n_genes: int | None = None,
    seed: int = 0,
    quick: bool = False,
    overwrite: bool = False,
) -> Path:
    """Simulate data, write ``demo.h5ad`` and ``summary.md`` into ``out`` and return the folder.

    Parameters
    ----------
    out
        Output folder; created if needed.
    n_cells, n_genes
        Size of the simulation (defaults 3,000 x 500, or 1,000 x 200 with ``quick``).
    seed
        Random seed of the simulation.
    quick
        Smaller defaults for a fast run.
    overwrite
        Replace ``demo.h5ad``/``summary.md`` if they exist.
    """
    from .datasets import simulate

    out = Path(out)
    targets = [out / _H5AD, out / _SUMMARY]
    existing = [str(p) for p in targets if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{', '.join(existing)} exist; pass --overwrite or choose another --out.")
    out.mkdir(parents=True, exist_ok=True)
    n_cells = n_cells or (1_000 if quick else 3_000)
    n_genes = n_genes or (200 if quick else 500)

    steps: list[tuple[str, float]] = []
    start = time.perf_counter()
    print(f"[1/2] simulating {n_cells} cells x {n_genes} genes (seed {seed})", flush=True)
    adata = simulate(n_cells=n_cells, n_genes=n_genes, n_conditions=2, seed=seed)
    steps.append(("simulate", time.perf_counter() - start))

    start = time.perf_counter()
    print(f"[2/2] writing {targets[0]}", flush=True)
    adata.write_h5ad(targets[0], compression="gzip")
    steps.append(("write h5ad", time.perf_counter() - start))

    targets[1].write_text(_summary(adata, steps))
    print(f"done: {out}", flush=True)
    return out


def _summary(adata, steps: list[tuple[str, float]]) -> str:
    obs, var = adata.obs, adata.var
    lines = [
        "# cellflux demo",
        "",
        f"Simulated {adata.n_obs:,} cells x {adata.n_vars:,} genes.",
        "",
        "## Ground truth",
        "",
        "| lineage | " + " | ".join(str(c) for c in obs[TruthKey.CONDITION].cat.categories) + " |",
        "|---|" + "---|" * len(obs[TruthKey.CONDITION].cat.categories),
    ]
    zeros = 1 - adata.layers[TruthKey.SPLICED].nnz / (adata.n_obs * adata.n_vars)
    counts = obs.groupby([TruthKey.STATE, TruthKey.CONDITION], observed=False).size().unstack(fill_value=0)
    for state, row in counts.iterrows():
        lines.append(f"| {state} | " + " | ".join(str(int(v)) for v in row) + " |")
    lines += [
        "",
        f"- terminal cells: {int(obs[TruthKey.TERMINAL].sum())}, initial cells: {int(obs[TruthKey.INITIAL].sum())}",
        f"- cells with planted differential abundance: {int(obs[TruthKey.DA].sum())}",
        f"- genes with planted differential expression: {int(var[TruthKey.DE].sum())}",
        f"- fraction of zero spliced counts: {zeros:.2f}",
        "",
        "## Steps",
        "",
        "| step | seconds |",
        "|---|---|",
        *(f"| {name} | {seconds:.2f} |" for name, seconds in steps),
        "",
    ]
    return "\n".join(lines)
