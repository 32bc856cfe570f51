"""Probabilistic PCA recovers the principal subspace of low-rank plus noise data."""

import numpy as np
import pytest
import torch

from cellflux_streaming_models._fit import stream_fit
from cellflux_streaming_models.models import ProbabilisticPCA

N, G, K = 4000, 50, 3


@pytest.fixture(scope="module")
def low_rank():
    """Rank 3 (variances 20, 10, 5) plus unit noise in 50 genes, mean 2."""
    rng = np.random.default_rng(0)
    U, _ = np.linalg.qr(rng.normal(size=(G, K)))
    z = rng.normal(size=(N, K)) * np.sqrt([20.0, 10.0, 5.0])
    x = (2.0 + z @ U.T + rng.normal(size=(N, G))).astype(np.float32)
    xc = x - x.mean(0)
    eigenvalues, eigenvectors = np.linalg.eigh(xc.T.astype(np.float64) @ xc / N)
    genes = np.array([f"g{i}" for i in range(G)], dtype=object)
    return x, z, eigenvalues[::-1], eigenvectors[:, ::-1], genes


def _batches(x, genes, batch_size=200):
    def batches(epoch):
        order = np.random.default_rng(epoch).permutation(len(x))
        for start in range(0, len(x), batch_size):
            yield {"x_ng": torch.from_numpy(x[order[start : start + batch_size]]), "var_names_g": genes}

    return batches


@pytest.mark.parametrize("known_mean", [False, True])
def test_marginalized_recovers_pca_subspace(low_rank, known_mean):
    x, z, eigenvalues, eigenvectors, genes = low_rank
    model = ProbabilisticPCA(N, genes, K, "marginalized", mean_g=x.mean(0) if known_mean else None)
    stream_fit(model, _batches(x, genes), n_epochs=10)
    cosines = np.linalg.svd(model.U_gk.numpy().T @ eigenvectors[:, :K], compute_uv=False)
    assert cosines.min() >= 0.995  # principal angles below 6 degrees
    # the maximum-likelihood solution (Tipping and Bishop): L_k = top eigenvalues, sigma^2 = mean of the rest
    np.testing.assert_allclose(model.L_k.numpy(), eigenvalues[:K], rtol=0.1)
    np.testing.assert_allclose(float(model.sigma.detach() ** 2), eigenvalues[K:].mean(), rtol=0.02)
    total = model.W_variance + model.sigma_variance
    np.testing.assert_allclose(total, eigenvalues.sum(), rtol=0.03)
    np.testing.assert_allclose(model.mean_g.detach().numpy(), x.mean(0), atol=0.05)
    # the posterior means carry the latent factors: z is linear in them with the R^2 that unit noise
    # allows, variance / (variance + 1)
    out = model.predict(torch.from_numpy(x), genes)
    embedding = out["x_ng"].numpy()
    assert list(out["var_names_g"]) == ["PPC1", "PPC2", "PPC3"]
    design = np.column_stack([embedding, np.ones(N)])
    coef = np.linalg.lstsq(design, z, rcond=None)[0]
    r2 = 1 - ((z - design @ coef) ** 2).sum(0) / ((z - z.mean(0)) ** 2).sum(0)
    np.testing.assert_allclose(r2, np.array([20.0, 10.0, 5.0]) / np.array([21.0, 11.0, 6.0]), atol=0.02)


def test_linear_vae_recovers_pca_subspace(low_rank):
    x, _, eigenvalues, eigenvectors, genes = low_rank
    model = ProbabilisticPCA(N, genes, K, "linear_vae")
    stream_fit(model, _batches(x, genes), n_epochs=10)
    cosines = np.linalg.svd(model.U_gk.numpy().T @ eigenvectors[:, :K], compute_uv=False)
    assert cosines.min() >= 0.99
    np.testing.assert_allclose(float(model.sigma.detach() ** 2), eigenvalues[K:].mean(), rtol=0.02)


def test_ppca_bad_input(low_rank):
    x, _, _, _, genes = low_rank
    with pytest.raises(ValueError, match="ppca_flavor"):
        ProbabilisticPCA(N, genes, K, "vae")
    with pytest.raises(ValueError, match="n_components"):
        ProbabilisticPCA(N, genes, G)
    with pytest.raises(ValueError, match="mean_g"):
        ProbabilisticPCA(N, genes, K, mean_g=np.zeros(3))
    model = ProbabilisticPCA(N, genes, K)
    with pytest.raises(ValueError, match="differ from the model"):
        model(torch.from_numpy(x[:4, :10]), genes[:10])
