"""Shared fixtures: a small simulated dataset with moments, and one short-trained model per session."""

import pytest


@pytest.fixture(scope="session")
def prepared():
    """600 simulated cells with min-max scaled moments, filtered on the steady-state fit."""
    import cellflux as cf
    from cellflux_velocity_vae import moments, preprocess_data

    adata = cf.datasets.simulate(n_cells=600, n_genes=80, seed=1)
    moments(adata, n_neighbors=20, n_pcs=20)
    return preprocess_data(adata)


@pytest.fixture(scope="session")
def trained(prepared):
    """A VELOVI trained for a few epochs on ``prepared`` (session-wide; do not mutate)."""
    import scvi

    from cellflux_velocity_vae import VELOVI

    adata = prepared.copy()
    scvi.settings.seed = 0
    VELOVI.setup_anndata(adata, spliced_layer="Ms", unspliced_layer="Mu")
    model = VELOVI(adata, n_hidden=64)
    model.train(max_epochs=15, enable_progress_bar=False, batch_size=128)
    return model
