"""Contrastive MLP: the NT-Xent loss, augmentations, training and prediction."""

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from cellflux_streaming_models.models import ContrastiveMLP, latent_metrics, nt_xent
from cellflux_streaming_models.transforms import (
    BinomialResample,
    Duplicate,
    GaussianNoise,
    Log1p,
    NormalizeTotal,
    RandomGeneDropout,
    apply_transforms,
)


def _naive_nt_xent(z1, z2, t):
    z = torch.cat([z1, z2])
    n, losses = len(z1), []
    for i in range(2 * n):
        j = (i + n) % (2 * n)
        sims = torch.stack([z[i] @ z[k] / t for k in range(2 * n) if k != i])
        losses.append(-(z[i] @ z[j] / t) + torch.logsumexp(sims, 0))
    return torch.stack(losses).mean()


def test_nt_xent_matches_its_definition():
    torch.manual_seed(0)
    z1, z2 = F.normalize(torch.randn(6, 4)), F.normalize(torch.randn(6, 4))
    torch.testing.assert_close(nt_xent(z1, z2, 0.3), _naive_nt_xent(z1, z2, 0.3))
    # identical views far apart from the others: the loss tends to zero as the temperature falls
    eye = torch.eye(4)
    assert float(nt_xent(eye, eye, 0.01)) < 1e-6
    with pytest.raises(ValueError, match="same"):
        nt_xent(z1, z2[:3], 0.5)


@pytest.mark.parity
def test_nt_xent_parity_with_cellarium():
    nt = pytest.importorskip("cellarium.ml.losses.nt_xent")
    torch.manual_seed(1)
    z1, z2 = F.normalize(torch.randn(16, 8)), F.normalize(torch.randn(16, 8))
    with pytest.warns(UserWarning, match="process group"):
        expected = nt.NT_Xent(0.5)(z1, z2)
    torch.testing.assert_close(nt_xent(z1, z2, 0.5), expected, rtol=1e-5, atol=1e-6)


def test_augmentations():
    torch.manual_seed(0)
    x = torch.poisson(torch.full((20, 30), 4.0))
    doubled = Duplicate()(x)["x_ng"]
    assert torch.equal(doubled, torch.cat([x, x]))
    thinned = BinomialResample(0.3, 0.6)(x)["x_ng"]
    assert torch.all(thinned <= x) and torch.equal(thinned, thinned.round()) and thinned.sum() < 0.7 * x.sum()
    assert torch.equal(BinomialResample(0.3, 0.6, p_apply=0.0)(x)["x_ng"], x)
    dropped = RandomGeneDropout(0.5, 0.5)(x)["x_ng"]
    assert torch.all((dropped == x) | (dropped == 0)) and 0.3 < float((dropped == 0).float().mean()) < 0.7
    noisy = GaussianNoise(0.1, 0.2)(x)["x_ng"]
    assert 0.05 < float((noisy - x).std()) < 0.25
    for transform in (Duplicate(), BinomialResample(0.3, 0.6), GaussianNoise(0.1, 0.2), RandomGeneDropout(0.5, 0.5)):
        transform.eval()  # prediction: the identity
        assert torch.equal(transform(x)["x_ng"], x)
    with pytest.raises(ValueError, match="min"):
        BinomialResample(0.6, 0.3)


def test_training_learns_an_embedding_that_separates_labels():
    import cellflux as cf

    adata = cf.datasets.simulate(n_cells=600, n_genes=60, seed=2, truth_layers=False)
    x = torch.as_tensor(adata.X.toarray(), dtype=torch.float32)
    genes = np.asarray(adata.var_names, dtype=object)
    labels = adata.obs["clusters"].to_numpy()
    model = ContrastiveMLP(genes, 60, hidden_size=[64], embed_dim=16, temperature=0.5, lr=3e-3)
    transforms = [Duplicate(), BinomialResample(0.5, 1.0), NormalizeTotal(), Log1p()]
    prediction = [NormalizeTotal(), Log1p()]
    optimizer = model.default_optimizer(100)
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    losses = []
    for _ in range(8):
        for rows in torch.randperm(600, generator=generator).split(100):
            batch = apply_transforms(transforms, {"x_ng": x[rows], "var_names_g": genes})
            optimizer.zero_grad()
            loss = model(**batch)["loss"]
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
    assert np.mean(losses[-6:]) < np.mean(losses[:6]) - 0.3
    model.eval()
    out = model.predict(**apply_transforms(prediction, {"x_ng": x, "var_names_g": genes}))
    z = out["x_ng"]
    assert z.shape == (600, 16) and list(out["var_names_g"][:2]) == ["feature_0", "feature_1"]
    torch.testing.assert_close(z.norm(dim=1), torch.ones(600))
    assert latent_metrics(z.numpy(), labels, k=10)["knn_accuracy"] > 0.5


def test_bad_inputs():
    genes = np.array([f"g{i}" for i in range(10)], dtype=object)
    with pytest.raises(ValueError, match="n_obs"):
        ContrastiveMLP(genes, 12, [8], 4)
    with pytest.raises(ValueError, match="temperature"):
        ContrastiveMLP(genes, 10, [8], 4, temperature=0.0)
    model = ContrastiveMLP(genes, 10, [8], 4)
    with pytest.raises(ValueError, match="Duplicate"):
        model(torch.ones(5, 10), genes)
    with pytest.raises(ValueError, match="differ"):
        model(torch.ones(6, 10), genes[::-1].copy())
