"""The report's PNG figures, drawn with the suite's ``cf.pl`` functions where one exists."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .._keys import TruthKey
from ._context import Context

__all__ = ["FIGURES", "FOLDER", "draw_figures", "is_pipeline_figure"]

logger = logging.getLogger(__name__)

FOLDER = "figures"


def _axes(ncols: int = 1, size: float = 4.6):
    import matplotlib.pyplot as plt

    # constrained layout leaves room for legends outside the axes (a panel's legend would otherwise
    # hide under the next panel)
    fig, axes = plt.subplots(1, ncols, figsize=(size * ncols + 0.6, size), squeeze=False, layout="constrained")
    return fig, list(axes[0])


def _scatter(ax, coords, values, title: str, categorical: bool = False, cmap: str = "viridis") -> None:
    if categorical:
        import matplotlib.pyplot as plt

        cats = list(dict.fromkeys(sorted(map(str, values))))
        colors = plt.get_cmap("tab20" if len(cats) > 10 else "tab10")
        for i, cat in enumerate(cats):
            mask = np.asarray(values).astype(str) == cat
            ax.scatter(*coords[mask].T, s=4, color=colors(i % colors.N), label=cat, rasterized=True)
        ax.legend(markerscale=3, fontsize=7, frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))
    else:
        points = ax.scatter(*coords.T, c=values, s=4, cmap=cmap, rasterized=True)
        ax.figure.colorbar(points, ax=ax, shrink=0.8)
    ax.set(title=title, xticks=[], yticks=[], xlabel="UMAP1", ylabel="UMAP2")


def _umap(ctx: Context) -> np.ndarray:
    return np.asarray(ctx.adata.obsm["X_umap"])[:, :2]


def overview(ctx: Context) -> Any:
    adata, key = ctx.adata, ctx.objects["cluster_key"]
    groups = [key] + [c for c in (ctx.config.groupby or TruthKey.CONDITION,) if c in adata.obs and c != key]
    fig, axes = _axes(len(groups))
    for ax, column in zip(axes, groups, strict=True):
        _scatter(ax, _umap(ctx), adata.obs[column].astype(str).to_numpy(), column, categorical=True)
    return fig


def velocity_projection(ctx: Context) -> Any:
    import cellflux as cf

    fig, (ax,) = _axes(1, 6.0)
    cf.pl.kernel_projection(ctx.adata, key="T_fwd", basis="umap", color=ctx.objects["cluster_key"], ax=ax)
    ax.set_title("transition matrix projected on the UMAP (0.8 velocity + 0.2 connectivity)")
    return fig


def time_panels(ctx: Context) -> Any:
    adata = ctx.adata
    keys = [k for k in ("latent_time", "absorption_pseudotime", TruthKey.TIME) if k in adata.obs]
    fig, axes = _axes(len(keys))
    for ax, k in zip(axes, keys, strict=True):
        _scatter(ax, _umap(ctx), adata.obs[k].to_numpy(dtype=float), k, cmap="gnuplot")
    return fig


def spectrum(ctx: Context) -> Any:
    import cellflux as cf

    return cf.pl.spectrum(ctx.objects["gpcca"])


def macrostates(ctx: Context) -> Any:
    import cellflux as cf

    return cf.pl.macrostates(ctx.objects["gpcca"], basis="umap")


def fate_probabilities(ctx: Context) -> Any:
    import cellflux as cf

    return cf.pl.fate_probabilities(ctx.objects["gpcca"], basis="umap", ncols=3)


def fate_uncertainty(ctx: Context) -> Any:
    sd = ctx.objects["fate_sd"]
    fig, axes = _axes(len(sd.columns[:3]))
    for ax, name in zip(axes, sd.columns[:3], strict=False):
        _scatter(ax, _umap(ctx), sd[name].to_numpy(), f"posterior s.d. of P({name})", cmap="magma")
    return fig


def drivers(ctx: Context) -> list[Any]:
    import cellflux as cf

    return [
        cf.pl.lineage_drivers(ctx.objects["gpcca"], lineage=name, n_genes=8) for name in ctx.objects["terminal"][:4]
    ]


def gene_trends(ctx: Context) -> Any:
    import cellflux as cf

    layer = "Ms" if "Ms" in ctx.adata.layers else None  # dense moments (smoothed, size-normalised)
    return cf.pl.gene_trends(
        ctx.objects["gpcca"], genes=ctx.objects["trend_genes"], time_key=ctx.objects["time_key"], layer=layer, ncols=3
    )


def da_volcano(ctx: Context) -> Any:
    import cellflux as cf

    fig, axes = _axes(2)
    cf.pl.differential_abundance_volcano(ctx.adata, ax=axes[0])
    cf.pl.fold_change_embedding(ctx.adata, basis="X_umap", ax=axes[1])
    return fig


def de_volcano(ctx: Context) -> Any:
    import cellflux as cf

    fig, (ax,) = _axes(1, 5.5)
    cf.pl.differential_expression_volcano(ctx.adata, ax=ax)
    return fig


# name, title, caption, needs (steps done, objects present), function
FIGURES: list[tuple[str, str, str, tuple[str, ...], Callable[[Context], Any]]] = [
    ("overview", "Data", "UMAP of the preprocessed data, by cluster and condition.", ("preprocess",), overview),
    (
        "velocity",
        "Velocity projection",
        "Expected displacement of each cell under the transition matrix, as streamlines on the UMAP.",
        ("kernels",),
        velocity_projection,
    ),
    (
        "latent_time",
        "Latent time",
        "Latent time of the velocity VAE (or the pseudotime from the mean time to absorption) and, "
        "on simulated data, the true time.",
        ("fates",),
        time_panels,
    ),
    (
        "spectrum",
        "Spectrum",
        "Leading eigenvalues of the transition matrix; the eigengap suggests the number of macrostates.",
        ("fates",),
        spectrum,
    ),
    (
        "macrostates",
        "Macrostates",
        "GPCCA macrostates, named after the majority cluster of their cells.",
        ("fates",),
        macrostates,
    ),
    (
        "fate_probabilities",
        "Fate probabilities",
        "Probability of each cell to reach each terminal state.",
        ("fates",),
        fate_probabilities,
    ),
    (
        "fate_uncertainty",
        "Fate uncertainty",
        "Spread of the fate probabilities over transition matrices built from posterior velocity samples of the VAE.",
        ("fates", "fate_sd"),
        fate_uncertainty,
    ),
    ("drivers", "Lineage drivers", "Genes most correlated with each fate.", ("fates",), drivers),
    (
        "gene_trends",
        "Gene trends",
        "Top drivers (first-order moments Ms) smoothed along the pseudotime, one curve per lineage "
        "(weighted by its fate probabilities).",
        ("fates",),
        gene_trends,
    ),
    (
        "da_volcano",
        "Differential abundance",
        "GP differential abundance between the conditions: volcano (log fold change vs posterior tail "
        "probability) and the fold change on the UMAP.",
        ("differential",),
        da_volcano,
    ),
    (
        "de_volcano",
        "Differential expression",
        "GP differential expression: mean log fold change vs Mahalanobis distance per gene.",
        ("differential",),
        de_volcano,
    ),
]


def is_pipeline_figure(name: str) -> bool:
    """Whether a file name is one :func:`draw_figures` writes (``NN_<figure>[_K].png``)."""
    stem = name.removesuffix(".png")
    if stem == name or len(stem) < 4 or not stem[:2].isdigit() or stem[2] != "_":
        return False
    i = int(stem[:2]) - 1
    if not 0 <= i < len(FIGURES):
        return False
    base = f"{stem[:2]}_{FIGURES[i][0]}"
    return stem == base or (stem.startswith(base + "_") and stem[len(base) + 1 :].isdigit())


def draw_figures(ctx: Context) -> None:
    """Draw every figure whose steps ran into ``out/figures`` (failures are logged, not raised)."""

    def ready(needs: tuple[str, ...]) -> bool:
        return all(
            ctx.done(n) if n in ("preprocess", "kernels", "fates", "differential") else n in ctx.objects for n in needs
        )

    todo = [(i, entry) for i, entry in enumerate(FIGURES) if ready(entry[3])]
    if not todo or "X_umap" not in ctx.adata.obsm:
        ctx.info("no figures: the steps that draw them did not run")
        return
    try:
        import matplotlib
    except ImportError:
        ctx.info("no figures: matplotlib is not installed")
        return
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    folder = ctx.out / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    done = 0
    for i, (name, title, caption, _, func) in todo:
        try:
            result = func(ctx)
        except Exception as error:  # a figure must not lose the run
            logger.warning("figure %s failed: %s", name, error)
            ctx.log.append(f"figure {name!r} failed: {type(error).__name__}: {error}")
            plt.close("all")
            continue
        figs = result if isinstance(result, list) else [result]
        for j, fig in enumerate(figs):
            fig = getattr(fig, "figure", fig)  # an Axes gives its figure
            suffix = f"_{j + 1}" if len(figs) > 1 else ""
            path = Path(folder) / f"{i + 1:02d}_{name}{suffix}.png"
            fig.savefig(path, dpi=100, bbox_inches="tight")
            ctx.figures.append((title if not suffix else f"{title} ({j + 1})", path, caption))
            done += 1
        plt.close("all")
    ctx.info(f"{done} figures in {folder}")
