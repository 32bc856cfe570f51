"""``cf.tl.velocity_vae``: prepare, train VELOVI and write velocity, latent time, rates and uncertainty."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from cellflux.results import Results, resolve_target

from ._keys import Key
from ._uncertainty import STATISTICS
from ._validate import check_layers, dense, layer_values

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["velocity_vae", "cell_latent_time"]

logger = logging.getLogger(__name__)

_DISTRIBUTION = "cellflux-velocity-vae"


def cell_latent_time(gene_time: np.ndarray, t_max: float = 20.0) -> np.ndarray:
    """A cell's latent time in ``[0, 1]``: the mean over genes of the (rescaled) gene-wise time, min-max scaled."""
    mean = np.nanmean(np.asarray(gene_time, dtype=np.float64) / t_max, axis=1)
    lo, hi = np.nanmin(mean), np.nanmax(mean)
    return (mean - lo) / (hi - lo) if hi > lo else np.zeros_like(mean)


def _rate_names(time_dependent: bool) -> tuple[str, ...]:
    """The per-gene fields in ``var``; ``alpha_1`` and ``lambda_alpha`` with a time-dependent transcription rate."""
    names = ("alpha", "beta", "gamma", "switch_time", "scaling", "genes")
    return (*names, *Key.TIME_DEPENDENT_RATES) if time_dependent else names


def _planned_fields(
    key_added: str, vkey: str, time_key: str, n_velocity_samples: int, time_dependent: bool = False
) -> list[tuple[str, str]]:
    layers = [vkey, f"{vkey}{Key.VELOCITY_U_SUFFIX}", f"{Key.VARIANCE_PREFIX}{vkey}", f"{key_added}_{Key.FIT_T}"]
    obs = [time_key, *(f"{key_added}_{s}" for s in STATISTICS)]
    var = [f"{key_added}_{n}" for n in _rate_names(time_dependent)]
    return (
        [("layers", k) for k in layers] + [("obs", k) for k in obs] + [("var", k) for k in var] + [("uns", key_added)]
    )


def velocity_vae(
    adata: AnnData,
    *,
    spliced_layer: str = Key.SPLICED,
    unspliced_layer: str = Key.UNSPLICED,
    min_max_scale: bool = True,
    filter_on_r2: bool = True,
    max_epochs: int | None = None,
    n_samples: int = 25,
    batch_size: int = 256,
    n_hidden: int = 256,
    n_latent: int = 10,
    accelerator: str = "auto",
    seed: int = 0,
    n_velocity_samples: int = 0,
    train_kwargs: dict[str, Any] | None = None,
    model_kwargs: dict[str, Any] | None = None,
    vkey: str = Key.VELOCITY,
    time_key: str = Key.LATENT_TIME,
    progress_bar: bool = False,
    key_added: str = Key.KEY_ADDED,
    copy: bool = False,
    mod: str | None = None,
    overwrite: bool = False,
) -> AnnData | None:
    """RNA velocity by variational inference (veloVI) in one call: prepare, train, write.

    The moments are min-max scaled and genes filtered on the steady-state fit
    (:func:`~cellflux_velocity_vae.preprocess_data`), a :class:`~cellflux_velocity_vae.VELOVI` is
    trained on a private copy (the input is never registered with scvi-tools), and posterior means,
    variances and uncertainties from ``n_samples`` draws per cell are written back. Velocities and
    rates are expressed on veloVI's rescaled time axis (each gene's latent time stretched to
    ``[0, 20]``), as in the veloVI tutorials; velocities are in the units of the input layers (the
    min-max scaling is undone), so scVelo/CellRank-style kernels compare them with displacements
    in ``layers[spliced_layer]`` directly. Rates are those of the min-max scaled abundances (of the
    input's abundances with ``min_max_scale=False``).
    Genes dropped by the filter get NaN.

    Parameters
    ----------
    adata
        AnnData (or MuData with ``mod``) with first-order moments of spliced and unspliced counts.
    spliced_layer, unspliced_layer
        Layers with the moments (scVelo's ``Ms``/``Mu``; see :func:`~cellflux_velocity_vae.moments`).
    min_max_scale, filter_on_r2
        Preparation steps of :func:`~cellflux_velocity_vae.preprocess_data`.
    max_epochs
        Training epochs; ``None`` scales with the number of cells (at most 400).
    n_samples
        Posterior draws per cell for the means, variances and uncertainties.
    batch_size
        Training minibatch size.
    n_hidden, n_latent
        Network size.
    accelerator
        ``"auto"`` trains on a GPU when present.
    seed
        Seed of scvi-tools (``scvi.settings.seed``), set before training.
    n_velocity_samples
        Also store this many of the ``n_samples`` posterior velocity draws per cell in
        ``uns[key_added]["velocity_samples"]`` (samples x cells x genes; 0 stores none; at most
        ``n_samples``).
    train_kwargs
        Further keyword arguments of :meth:`VELOVI.train`.
    model_kwargs
        Further keyword arguments of :class:`VELOVI`.
    vkey
        Name of the velocity layer (scVelo's ``vkey``).
    time_key
        obs column of the cell-level latent time.
    progress_bar
        Show training progress.
    key_added
        uns key of the parameters and prefix of the obs/var/layer fields specific to this tool.
    copy
        Return a copy instead of writing into ``adata``.
    mod
        Modality of a MuData.
    overwrite
        Replace existing fields.

    Returns
    -------
    ``None``, or the AnnData with the results when ``copy=True``. Written fields:

    ``layers[vkey]``
        Posterior mean of the spliced velocity ``ds/dt`` (units of ``layers[spliced_layer]`` per unit
        time), estimated with the expected state weights of each latent draw (see
        ``VELOVI.get_velocity``'s ``state_weights``).
    ``layers[f"{vkey}_u"]``
        Posterior mean of the unspliced velocity ``du/dt`` (units of ``layers[unspliced_layer]``).
    ``layers[f"variance_{vkey}"]``
        Posterior variance of the spliced velocity (scVelo's ``variance_velocity``; what
        stochastic/Monte Carlo velocity kernels sample from).
    ``layers[f"{key_added}_fit_t"]``
        Gene-wise latent time on ``[0, 20]``.
    ``obs[time_key]``
        Cell-level latent time in ``[0, 1]``.
    ``obs[f"{key_added}_directional_variance"]`` and the other directional statistics
        ``obs[f"{key_added}_directional_difference"]``,
        ``obs[f"{key_added}_directional_cosine_sim_variance"]``,
        ``obs[f"{key_added}_directional_cosine_sim_difference"]``,
        ``obs[f"{key_added}_directional_cosine_sim_mean"]``: directional (intrinsic)
        uncertainty of each cell's velocity.
    ``var[f"{key_added}_alpha"]``, ``var[f"{key_added}_beta"]``, ``var[f"{key_added}_gamma"]``
        Transcription, splicing and degradation rates on the rescaled time axis (of the min-max
        scaled abundances, or of the input's with ``min_max_scale=False``).
    ``var[f"{key_added}_alpha_1"]``, ``var[f"{key_added}_lambda_alpha"]``
        Only with ``model_kwargs={"time_dep_transcription_rate": True}``: the transcription rate
        relaxes from ``alpha`` to ``alpha_1`` at rate ``lambda_alpha`` during induction (rescaled
        time axis, as the other rates).
    ``var[f"{key_added}_switch_time"]``, ``var[f"{key_added}_scaling"]``
        Switching time (rescaled) and the time scaling per gene.
    ``var[f"{key_added}_genes"]``
        Whether the gene was modelled (passed the filter).
    ``uns[key_added]``
        ``params`` (with ``time_dep_transcription_rate`` from ``model_kwargs``, and ``t_max``, the end of
        the rescaled time axis), ``provenance``, the
        training ``elbo_train``/``elbo_validation`` history and ``n_epochs``; with
        ``n_velocity_samples``, ``velocity_samples``.
    """
    target = resolve_target(adata, mod=mod, copy=copy)
    data = target.adata
    time_dependent = bool((model_kwargs or {}).get("time_dep_transcription_rate", False))
    if not overwrite:
        taken = [
            f"{s}[{k!r}]"
            for s, k in _planned_fields(key_added, vkey, time_key, n_velocity_samples, time_dependent)
            if k in getattr(data, s)
        ]
        if taken:
            raise KeyError(
                f"{', '.join(taken)} already exist; nothing was written. Pass key_added=/vkey=/time_key= to "
                "write elsewhere, or overwrite=True to replace."
            )
    if n_samples < 2:
        raise ValueError(f"n_samples must be at least 2 for variances and uncertainty, got {n_samples}.")
    if not 0 <= n_velocity_samples <= n_samples:
        raise ValueError(
            f"n_velocity_samples must be between 0 and n_samples ({n_samples}), got {n_velocity_samples}: the "
            "stored samples are among the n_samples posterior draws; raise n_samples to store more."
        )
    # all-zero genes (e.g. no unspliced counts) are dropped by the steady-state filter, and get NaN
    check_layers(data, spliced_layer, unspliced_layer, warn_unscaled=not min_max_scale, allow_zero_genes=filter_on_r2)
    results = _fit(
        data,
        spliced_layer=spliced_layer,
        unspliced_layer=unspliced_layer,
        min_max_scale=min_max_scale,
        filter_on_r2=filter_on_r2,
        max_epochs=max_epochs,
        n_samples=n_samples,
        batch_size=batch_size,
        n_hidden=n_hidden,
        n_latent=n_latent,
        accelerator=accelerator,
        seed=seed,
        n_velocity_samples=n_velocity_samples,
        train_kwargs=train_kwargs or {},
        model_kwargs=model_kwargs or {},
        progress_bar=progress_bar,
    )
    params = {
        "spliced_layer": spliced_layer,
        "unspliced_layer": unspliced_layer,
        "min_max_scale": min_max_scale,
        "filter_on_r2": filter_on_r2,
        "max_epochs": max_epochs,
        "n_samples": n_samples,
        "batch_size": batch_size,
        "n_hidden": n_hidden,
        "n_latent": n_latent,
        "seed": seed,
        "n_velocity_samples": n_velocity_samples,
        "vkey": vkey,
        "time_key": time_key,
        "time_dep_transcription_rate": time_dependent,
        "t_max": results["t_max"],
    }
    out = Results(key_added, function="tl.velocity_vae", plugin=_DISTRIBUTION, params=params)
    out.add("layers", vkey, results["velocity"])
    out.add("layers", f"{vkey}{Key.VELOCITY_U_SUFFIX}", results["velocity_u"])
    out.add("layers", f"{Key.VARIANCE_PREFIX}{vkey}", results["variance"])
    out.add("layers", f"{key_added}_{Key.FIT_T}", results["fit_t"])
    out.add("obs", time_key, results["latent_time"])
    for j, name in enumerate(STATISTICS):
        out.add("obs", f"{key_added}_{name}", results["directional"][:, j])
    for name in _rate_names(time_dependent):
        out.add("var", f"{key_added}_{name}", results[name])
    uns = {k: results[k] for k in ("elbo_train", "elbo_validation", "n_epochs")}
    if n_velocity_samples:
        uns[Key.SAMPLES] = results["samples"]
    out.add("uns", key_added, uns)
    out.write(data, overwrite=overwrite)
    return target.returned()


def _fit(data: AnnData, **kw: Any) -> dict[str, Any]:
    """Train on a private AnnData and collect full-size (cells x all genes) results."""
    import anndata as ad
    import scvi

    from ._model import VELOVI
    from ._preprocess import preprocess_data

    work = ad.AnnData(
        obs=data.obs[[]].copy(),
        var=data.var[[c for c in ("highly_variable",) if c in data.var]].copy(),
        layers={
            kw["spliced_layer"]: dense(layer_values(data, kw["spliced_layer"]), np.float32),
            kw["unspliced_layer"]: dense(layer_values(data, kw["unspliced_layer"]), np.float32),
        },
    )
    spans = {}
    for key in ("spliced_layer", "unspliced_layer"):  # min-max spans: velocities go back to the input's units
        values = work.layers[kw[key]]
        spans[key] = np.ptp(values, axis=0) if kw["min_max_scale"] else np.ones(work.n_vars, dtype=np.float32)
        spans[key] = np.where(spans[key] > 0, spans[key], 1.0)
    work = preprocess_data(
        work,
        kw["spliced_layer"],
        kw["unspliced_layer"],
        min_max_scale=kw["min_max_scale"],
        filter_on_r2=kw["filter_on_r2"],
    )
    check_layers(work, kw["spliced_layer"], kw["unspliced_layer"], warn_unscaled=False)  # the filter kept none
    genes = np.asarray(data.var_names.isin(work.var_names))
    span_s, span_u = spans["spliced_layer"][genes], spans["unspliced_layer"][genes]
    scvi.settings.seed = kw["seed"]
    VELOVI.setup_anndata(work, spliced_layer=kw["spliced_layer"], unspliced_layer=kw["unspliced_layer"])
    model = VELOVI(work, n_hidden=kw["n_hidden"], n_latent=kw["n_latent"], **kw["model_kwargs"])
    batch_size = min(kw["batch_size"], max(2, work.n_obs // 2))
    train = {"enable_progress_bar": kw["progress_bar"], "batch_size": batch_size, **kw["train_kwargs"]}
    model.train(max_epochs=kw["max_epochs"], accelerator=kw["accelerator"], **train)

    n = kw["n_samples"]
    velo = model.get_velocity(n_samples=n, return_mean=False, return_numpy=True)  # S x cells x genes
    velo_mean = model.get_velocity(n_samples=n, return_numpy=True)  # expected state weights: less noise
    velo_u = model.get_velocity(n_samples=n, velo_mode="unspliced", return_numpy=True)
    gene_time = model.get_latent_time(n_samples=n, return_numpy=True)
    directional, _ = model.get_directional_uncertainty(n_samples=n)
    rates = model.get_rates()
    switch = model.module.switch_time().detach().cpu().numpy()
    t_max = float(model.module.t_max)
    scaling = t_max / np.maximum(gene_time.max(axis=0), 1e-12)

    def full(values: np.ndarray, fill: float = np.nan) -> np.ndarray:
        out = np.full((*values.shape[:-1], data.n_vars), fill, dtype=np.float32)
        out[..., genes] = values
        return out

    history = model.history
    results = {
        "velocity": full(velo_mean * span_s / scaling),
        "velocity_u": full(velo_u * span_u / scaling),
        "variance": full(velo.var(0) * (span_s / scaling) ** 2),
        "fit_t": full(gene_time * scaling),
        "latent_time": cell_latent_time(gene_time * scaling, t_max),
        "directional": directional.to_numpy(),
        "alpha": full(rates["alpha"] / scaling),
        "beta": full(rates["beta"] / scaling),
        "gamma": full(rates["gamma"] / scaling),
        "alpha_1": full(rates["alpha_1"] / scaling),
        "lambda_alpha": full(rates["lambda_alpha"] / scaling),
        "switch_time": full(switch * scaling),
        "scaling": full(scaling),
        "genes": genes,
        "elbo_train": np.asarray(history["elbo_train"]).ravel().astype(np.float64),
        "elbo_validation": np.asarray(history.get("elbo_validation", [[np.nan]])).ravel().astype(np.float64),
        "n_epochs": len(history["elbo_train"]),
        "t_max": t_max,
    }
    if kw["n_velocity_samples"]:
        results["samples"] = full(velo[: kw["n_velocity_samples"]] * span_s / scaling)
    return results


def example(adata: AnnData) -> dict[str, Any]:
    """Prepare a small simulated AnnData for :func:`velocity_vae` (moments) and return short-run kwargs."""
    from ._moments import moments

    moments(adata, n_neighbors=15, n_pcs=20)
    return {"max_epochs": 3, "n_samples": 4, "batch_size": 128, "n_hidden": 32}
