"""The self-contained HTML report: steps and timings, what was found, scores, figures (base64 PNGs)."""

from __future__ import annotations

import base64
import html
from datetime import UTC, datetime

from .._version import __version__
from ._context import Context

__all__ = ["REPORT", "write_report"]

REPORT = "report.html"

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;padding:0 1.5em;
color:#222;line-height:1.45}
h1{margin-bottom:.1em}h2{border-bottom:2px solid #e4e4e4;padding-bottom:.2em;margin-top:1.8em}
.sub{color:#666;margin-top:0}
table{border-collapse:collapse;margin:.6em 0 1em 0;font-size:.93em}
th,td{border:1px solid #ddd;padding:.35em .7em;text-align:left;vertical-align:top}
th{background:#f4f6f8}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.done{color:#1a7f37;font-weight:600}.skipped{color:#9a6700;font-weight:600}.failed{color:#cf222e;font-weight:600}
figure{margin:1.2em 0 2em 0}figure img{max-width:100%;border:1px solid #eee}
.row{display:flex;flex-wrap:wrap;gap:.5em;align-items:flex-start}
.row img{flex:0 1 auto;min-width:0;max-width:100%;height:auto}
figcaption{color:#555;font-size:.9em;margin-top:.3em}
ul.found li{margin:.2em 0}
pre{background:#f6f8fa;padding:.8em;font-size:.8em;overflow-x:auto;white-space:pre-wrap}
.note{color:#666;font-size:.88em}
"""


def _esc(text: object) -> str:
    return html.escape(str(text))


def _steps(ctx: Context) -> str:
    rows = "".join(
        f"<tr><td>{_esc(r.name)}</td><td class='{r.status}'>{r.status}</td>"
        f"<td class='num'>{r.seconds:.1f} s</td><td>{_esc(r.message)}</td></tr>"
        for r in ctx.records
    )
    total = sum(r.seconds for r in ctx.records)
    return (
        "<table><tr><th>step</th><th>status</th><th>time</th><th>details</th></tr>"
        f"{rows}<tr><th>total</th><th></th><th class='num'>{total:.1f} s</th><th></th></tr></table>"
    )


def _scores(ctx: Context) -> str:
    if not ctx.scores:
        return "<p>No scores: the data carry no ground truth and no step produced a check.</p>"
    rows = "".join(
        f"<tr><td>{_esc(s)}</td><td>{_esc(m)}</td><td class='num'>{_esc(v)}</td><td class='note'>{_esc(n)}</td></tr>"
        for s, m, v, n in ctx.scores
    )
    return f"<table id='scores'><tr><th>step</th><th>score</th><th>value</th><th>note</th></tr>{rows}</table>"


def _figures(ctx: Context) -> str:
    # figures drawn as several PNGs (e.g. drivers, one per lineage) share one block, side by side
    groups: list[tuple[str, str, list]] = []
    for title, path, caption in ctx.figures:
        base = title.split(" (")[0]
        if groups and groups[-1][0] == base:
            groups[-1][2].append(path)
        else:
            groups.append((base, caption, [path]))
    parts = []
    for title, caption, paths in groups:
        images = "".join(
            f"<img alt='{_esc(title)}' src='data:image/png;base64,{base64.b64encode(p.read_bytes()).decode('ascii')}'>"
            for p in paths
        )
        names = ", ".join(p.name for p in paths)
        parts.append(
            f"<figure><h3>{_esc(title)}</h3><div class='row'>{images}</div>"
            f"<figcaption>{_esc(caption)} <span class='note'>({_esc(names)})</span></figcaption></figure>"
        )
    return "".join(parts) or "<p>No figures (no step that draws one ran).</p>"


def write_report(ctx: Context) -> None:
    """Write ``out/report.html``."""
    adata = ctx.adata
    found = "".join(f"<li>{line}</li>" for line in ctx.found) or "<li>Nothing: the analysis steps did not run.</li>"
    skipped = [r for r in ctx.records if r.status != "done"]
    skipped_html = (
        "<p><b>Not run:</b></p><ul>" + "".join(f"<li>{_esc(r.name)}: {_esc(r.message)}</li>" for r in skipped) + "</ul>"
        if skipped
        else ""
    )
    truth = (
        "Scores compare every step with the simulator's ground truth."
        if ctx.has_truth
        else "These data carry no ground truth: scores are limited to internal checks."
    )
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    cfg = ctx.config
    text = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{_esc(ctx.title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_CSS}</style></head>
<body>
<h1>{_esc(ctx.title)}</h1>
<p class="sub">{_esc(ctx.source)} · {adata.n_obs:,} cells × {adata.n_vars:,} genes · velocity: {_esc(cfg.velocity)}
· cellflux {__version__} · {stamp}</p>
<h2>What was found</h2>
<ul class="found">{found}</ul>
{skipped_html}
<h2>Scores</h2>
<p>{truth}</p>
{_scores(ctx)}
<h2>Steps</h2>
{_steps(ctx)}
<h2>Figures</h2>
{_figures(ctx)}
<h2>Log</h2>
<pre>{_esc(chr(10).join(ctx.log))}</pre>
<p class="note">Annotated data: cellflux.h5ad in the output folder. Figures: figures/*.png.</p>
</body></html>
"""
    (ctx.out / REPORT).write_text(text, encoding="utf-8")
