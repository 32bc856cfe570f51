"""Shared fixtures: a small simulated dataset with moments, and one short-trained model per session."""

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """One intra-op thread: the suite's tensors are small, and on a shared machine more threads only spin."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
