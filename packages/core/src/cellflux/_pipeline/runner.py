"""Run the pipeline's steps in order with a progress display, then write the h5ad, figures and report."""

from __future__ import annotations

import importlib
import logging
import shutil
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from ._context import REQUIRES, STEPS, Context, PipelineConfig, StepRecord, StepSkipped
from .report import REPORT, write_report
from .scoring import has_truth

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["H5AD", "check_options", "check_output", "run_pipeline"]

logger = logging.getLogger("cellflux.pipeline")

H5AD = "cellflux.h5ad"


def check_output(out: str | Path, *, overwrite: bool) -> Path:
    """Refuse an output folder that holds a previous run's results unless ``overwrite``."""
    out = Path(out)
    existing = [str(out / name) for name in (H5AD, REPORT) if (out / name).exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{', '.join(existing)} exist; pass --overwrite or choose another --out.")
    return out


def check_options(ctx: Context) -> None:
    """Check the options that name ``obs`` columns and conditions against the data, before any step runs.

    A wrong ``--cluster-key``, ``--groupby`` or ``--conditions`` is refused here, not when its step starts
    (which lost the work of the steps before it), and also when the step using it is not selected.
    """
    from .differential import _conditions
    from .preprocess import check_cluster_key

    if ctx.config.cluster_key is not None:
        check_cluster_key(ctx.adata.obs, ctx.config.cluster_key)
    if "differential" in ctx.config.steps or ctx.config.groupby is not None or ctx.config.conditions is not None:
        try:
            _conditions(ctx)
        except StepSkipped as reason:  # no condition column or one condition: the step says so, unless asked for
            if ctx.config.conditions is not None:
                raise ValueError(str(reason)) from None
        except KeyError as error:
            raise ValueError(str(error.args[0])) from None


def _remove_previous_outputs(out: Path) -> None:
    """With ``overwrite``: the figures and shards of an earlier run in ``out``, which this run may not redraw."""
    from .figures import FOLDER, is_pipeline_figure
    from .streaming import SHARDS

    for path in (out / FOLDER).glob("*.png"):
        if is_pipeline_figure(path.name):
            path.unlink()
    if (out / SHARDS).is_dir():
        shutil.rmtree(out / SHARDS)


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
        Replace a previous run's results in ``out`` (its figures and shards are removed first, so that
        none of them outlives the run that made it).
    stream
        Where the progress display goes, e.g. ``sys.stderr`` (``None``: nowhere).

    Returns
    -------
    The pipeline's context: records of the steps, scores, figures and log.

    Raises
    ------
    FileExistsError
        If ``out`` holds a previous run's results and not ``overwrite``.
    ValueError
        If ``cluster_key``, ``groupby`` or ``conditions`` name what ``adata`` does not have (checked before
        any step runs). A run that stops on an error removes the output folder if it created it.
    """
    config = config or PipelineConfig()
    out = check_output(out, overwrite=overwrite)
    ctx = Context(adata=adata, out=out, config=config, title=title, source=source, has_truth=has_truth(adata))
    check_options(ctx)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        return _run(ctx, stream, overwrite=overwrite)
    except BaseException:
        if created:  # nothing of an aborted run is left behind in a folder it created
            shutil.rmtree(out, ignore_errors=True)
        raise


def _run(ctx: Context, stream: TextIO | None, *, overwrite: bool) -> Context:
    config, out, adata = ctx.config, ctx.out, ctx.adata
    if overwrite:
        _remove_previous_outputs(out)
    if config.added_steps:
        ctx.info(f"also running {', '.join(config.added_steps)}: the selected steps need them")
        _progress(stream, f"also running {', '.join(config.added_steps)}: the selected steps need them")
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
