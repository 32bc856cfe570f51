"""Bad input gets clear errors naming the field and the fix; the input AnnData is untouched."""

import numpy as np
import pytest

import cellflux as cf
from cellflux_velocity_vae import VELOVI


def _fresh(prepared):
    adata = prepared.copy()
    for key in [k for k in adata.uns if k.startswith("_scvi")]:
        del adata.uns[key]
    return adata


def test_missing_layer(prepared):
    adata = _fresh(prepared)
    with pytest.raises(KeyError, match=r"layers\['Xs'\] is missing.*moments"):
        VELOVI.setup_anndata(adata, spliced_layer="Xs", unspliced_layer="Mu")


@pytest.mark.parametrize(("value", "match"), [(np.nan, "NaN"), (-1.0, "negative")])
def test_nan_and_negative(prepared, value, match):
    adata = _fresh(prepared)
    adata.layers["Ms"][3, 2] = value
    with pytest.raises(ValueError, match=match):
        VELOVI.setup_anndata(adata, spliced_layer="Ms", unspliced_layer="Mu")


def test_all_zero_gene(prepared):
    adata = _fresh(prepared)
    adata.layers["Mu"][:, 4] = 0
    with pytest.raises(ValueError, match="all zero"):
        VELOVI.setup_anndata(adata, spliced_layer="Ms", unspliced_layer="Mu")


def test_unscaled_layers_warn(prepared):
    adata = _fresh(prepared)
    adata.layers["Ms"] = adata.layers["Ms"] * 10
    with pytest.warns(UserWarning, match="not min-max scaled"):
        VELOVI.setup_anndata(adata, spliced_layer="Ms", unspliced_layer="Mu")


def test_fewer_cells_than_a_batch(prepared):
    adata = _fresh(prepared)[:100].copy()
    VELOVI.setup_anndata(adata, spliced_layer="Ms", unspliced_layer="Mu")
    model = VELOVI(adata, n_hidden=16)
    with pytest.raises(ValueError, match="fewer than one batch"):
        model.train(max_epochs=1, batch_size=256)


def test_query_with_other_genes(trained):
    other = trained.adata[:, trained.adata.var_names[:-1]].copy()
    with pytest.raises(ValueError, match="model's genes"):
        trained.get_velocity(other)
    with pytest.raises(KeyError, match="gene_list"):
        trained.get_velocity(gene_list=["not_a_gene"])


def test_tool_missing_layer_leaves_input_untouched(sim_adata):
    before = sim_adata.copy()
    with pytest.raises(KeyError, match="Ms"):
        cf.tl.velocity_vae(sim_adata)
    assert set(sim_adata.layers) == set(before.layers) and set(sim_adata.uns) == set(before.uns)


def test_tool_nan_leaves_input_untouched(prepared):
    adata = _fresh(prepared)
    adata.layers["Mu"][0, 0] = np.nan
    keys = {slot: set(getattr(adata, slot).keys()) for slot in ("obs", "var", "layers", "uns")}
    with pytest.raises(ValueError, match="NaN"):
        cf.tl.velocity_vae(adata, max_epochs=1)
    assert keys == {slot: set(getattr(adata, slot).keys()) for slot in ("obs", "var", "layers", "uns")}


def test_tool_refuses_to_overwrite_before_training(prepared):
    adata = _fresh(prepared)
    adata.layers["velocity"] = np.zeros(adata.shape, dtype=np.float32)
    with pytest.raises(KeyError, match="already exist"):
        cf.tl.velocity_vae(adata)


def test_tool_fits_around_a_gene_its_filter_drops(prepared):
    adata = _fresh(prepared)
    adata.layers["Mu"][:, 4] = 0  # no unspliced at all: the steady-state filter drops it
    cf.tl.velocity_vae(adata, max_epochs=1, n_samples=2, n_hidden=16, batch_size=128)
    assert not adata.var["velocity_vae_genes"].iloc[4]
    assert np.isnan(adata.layers["velocity"][:, 4]).all()
    assert np.isfinite(adata.layers["velocity"][:, adata.var["velocity_vae_genes"].to_numpy()]).all()


def test_tool_without_the_filter_still_refuses_an_all_zero_gene(prepared):
    adata = _fresh(prepared)
    adata.layers["Mu"][:, 4] = 0
    keys = {slot: set(getattr(adata, slot).keys()) for slot in ("obs", "var", "layers", "uns")}
    with pytest.raises(ValueError, match="all zero"):
        cf.tl.velocity_vae(adata, max_epochs=1, filter_on_r2=False)
    assert keys == {slot: set(getattr(adata, slot).keys()) for slot in ("obs", "var", "layers", "uns")}


def test_tool_refuses_more_stored_samples_than_draws(prepared):
    adata = _fresh(prepared)
    with pytest.raises(ValueError, match="n_velocity_samples must be between 0 and n_samples"):
        cf.tl.velocity_vae(adata, max_epochs=1, n_samples=4, n_velocity_samples=10)
    assert "velocity" not in adata.layers
