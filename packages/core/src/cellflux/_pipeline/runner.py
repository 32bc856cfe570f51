"""Run the pipeline's steps in order with a progress display, then write the h5ad, figures and report."""

from __future__ import annotations

import importlib
import logging
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from ._context import REQUIRES, STEPS, Context, PipelineConfig, StepRecord, StepSkipped
from .report import REPORT, write_report
from .scoring import has_truth

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["H5AD", "check_output", "run_pipeline"]

logger = logging.getLogger("cellflux.pipeline")

H5AD = "cellflux.h5ad"


def check_output(out: str | Path, *, overwrite: bool) -> Path:
    """Refuse an output folder that holds a previous run's results unless ``overwrite``."""
    out = Path(out)
    existing = [str(out / name) for name in (H5AD, REPORT) if (out / name).exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{', '.join(existing)} exist; pass --overwrite or choose another --out.")
    return out


def _progress(stream: TextIO | None, text: str, end: str = "\n") -> None:
    if stream is not None:
        print(text, end=end, file=stream, flush=True)


def _run_step(ctx: Context, name: str) -> StepRecord:
    missing = [r for r in REQUIRES[name] if not ctx.done(r)]
    if missing:
        which = " and ".join(missing)
        return StepRecord(
            name, "skipped", 0.0, f"needs the {which} step{'s' if len(missing) > 1 else ''}, which did not run"
        )
    module = importlib.import_module(f"{__package__}.{name}")
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            module.run(ctx)
            record = StepRecord(name, "done", 0.0)
        except StepSkipped as reason:
            record = StepRecord(name, "skipped", 0.0, str(reason))
        except (KeyError, ValueError, FileNotFoundError) as error:
            # a wrong option (missing column, unknown condition) is the user's to fix: say it, stop
            if isinstance(error, KeyError) and "--" in str(error):
                raise ValueError(str(error.args[0])) from None
            logger.debug("step %s failed", name, exc_info=True)
            record = StepRecord(name, "failed", 0.0, f"{type(error).__name__}: {error}")
        except Exception as error:  # keep the other steps and the report
            logger.debug("step %s failed", name, exc_info=True)
            record = StepRecord(name, "failed", 0.0, f"{type(error).__name__}: {error}")
    record.seconds = time.perf_counter() - start
    if caught:
        logger.debug("%s: %d warnings from libraries, e.g. %s", name, len(caught), caught[0].message)
    return record


def run_pipeline(
    adata: AnnData,
    out: str | Path,
    config: PipelineConfig | None = None,
    *,
    title: str = "cellflux report",
    source: str = "",
    overwrite: bool = False,
    stream: TextIO | None = None,
) -> Context:
    """Run the selected steps on ``adata`` (modified in place) and write the results into ``out``.

    Parameters
    ----------
    adata
        Raw counts in ``X`` (and ``layers["spliced"]``/``["unspliced"]`` for velocity).
    out
        Output folder: ``cellflux.h5ad``, ``figures/*.png``, ``report.html`` (and ``shards/``).
    config
        Steps and options.
    title, source
        Shown at the top of the report.
    overwrite
        Replace a previous run's results in ``out``.
    stream
        Where the progress display goes, e.g. ``sys.stderr`` (``None``: nowhere).

    Returns
    -------
    The pipeline's context: records of the steps, scores, figures and log.
    """
    config = config or PipelineConfig()
    out = check_output(out, overwrite=overwrite)
    out.mkdir(parents=True, exist_ok=True)
    ctx = Context(adata=adata, out=out, config=config, title=title, source=source, has_truth=has_truth(adata))
    selected = [s for s in STEPS if s in config.steps]
    total = len(selected) + 1
    for i, name in enumerate(selected, start=1):
        _progress(stream, f"[{i}/{total}] {name:<13}", end="")
        record = _run_step(ctx, name)
        ctx.records.append(record)
        status = {"done": "done", "skipped": "SKIPPED", "failed": "FAILED"}[record.status]
        _progress(stream, f"{status} ({record.seconds:.1f} s)" + (f": {record.message}" if record.message else ""))
        if record.status != "done":
            ctx.log.append(f"{name} {record.status}: {record.message}")
            logger.warning("%s %s: %s", name, record.status, record.message)
    for name in STEPS:
        if name not in selected:
            ctx.records.append(StepRecord(name, "skipped", 0.0, "not selected (--steps)"))
    _progress(stream, f"[{total}/{total}] {'report':<13}", end="")
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from .figures import draw_figures

        draw_figures(ctx)
        adata.write_h5ad(out / H5AD)
    write_report(ctx)
    _progress(stream, f"done ({time.perf_counter() - start:.1f} s)")
    _progress(stream, f"results in {out}: {H5AD}, {REPORT}, figures/")
    return ctx
