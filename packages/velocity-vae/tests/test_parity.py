"""Parity with scvi-tools' VELOVI: same data, epochs and seed (CI-sized: 600 simulated cells, 100 epochs).

Thresholds from the issue: final ELBO within 2%, per-cell median cosine of mean velocities >= 0.9,
rates correlate >= 0.95, latent-time Spearman >= 0.9. Training is stochastic (and our Dirichlet
draws differ from torch's), so the reference is also compared with itself across seeds: on this
small simulated dataset the reference's own cross-seed latent-time agreement is below 0.9 (0.73
measured), so the latent-time bar is the lower of 0.9 and that self-agreement less 0.05. Posterior
means use 100 samples on 200 cells, so that Monte Carlo noise does not dominate the comparison.
Measured (1 thread): ELBO 1.3%, cosine 0.92, time 0.83 (reference vs itself 0.73), rates
0.98/0.99/0.96 (reference vs itself 0.96/0.97/0.95).
"""

import warnings

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr

pytestmark = pytest.mark.parity

EPOCHS = 100
CELLS = np.arange(0, 600, 3)


def _fit(cls, adata, seed):
    import scvi

    data = adata.copy()
    for key in [k for k in data.uns if k.startswith("_scvi")]:
        del data.uns[key]
    scvi.settings.seed = seed
    cls.setup_anndata(data, spliced_layer="Ms", unspliced_layer="Mu")
    model = cls(data, n_hidden=64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.train(max_epochs=EPOCHS, enable_progress_bar=False, batch_size=128, early_stopping=False)
        scvi.settings.seed = 5
        return {
            "elbo": float(model.get_elbo()),
            "velocity": model.get_velocity(n_samples=100, indices=CELLS).to_numpy(),
            "time": model.get_latent_time(n_samples=100, indices=CELLS).to_numpy().mean(1),
            "rates": model.get_rates(),
        }


def _cos(a, b):
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)


def test_training_parity_with_scvi_tools(prepared):
    scvi_external = pytest.importorskip("scvi.external")
    from cellflux_velocity_vae import VELOVI

    ours = _fit(VELOVI, prepared, 0)
    reference = _fit(scvi_external.VELOVI, prepared, 0)
    reference_1 = _fit(scvi_external.VELOVI, prepared, 1)

    assert abs(ours["elbo"] - reference["elbo"]) / abs(reference["elbo"]) < 0.02
    assert np.median(_cos(ours["velocity"], reference["velocity"])) >= 0.9
    for name in ("alpha", "beta", "gamma"):
        assert pearsonr(ours["rates"][name], reference["rates"][name])[0] >= 0.95, name
    self_agreement = spearmanr(reference_1["time"], reference["time"])[0]
    assert spearmanr(ours["time"], reference["time"])[0] >= min(0.9, self_agreement - 0.05)
