"""scVI: likelihoods, training, options, prediction, reconstruction and checkpoints (in memory)."""

import io

import numpy as np
import pytest
import torch

from cellflux_streaming_models.models import SingleCellVariationalInference, latent_metrics
from cellflux_streaming_models.models._scvi_flow import SplineFlowPrior, rational_quadratic_spline
from cellflux_streaming_models.models._scvi_likelihoods import nb_log_prob, poisson_log_prob, zinb_log_prob
from cellflux_streaming_models.models._scvi_options import kl_weight


@pytest.fixture(scope="module")
def counts():
    """600 cells x 60 genes, 6 samples with batch effects, 8 clusters."""
    import cellflux as cf

    adata = cf.datasets.simulate(n_cells=600, n_genes=60, seed=1, sample_variability=0.3, truth_layers=False)
    x = torch.as_tensor(adata.X.toarray(), dtype=torch.float32)
    batch = torch.as_tensor(adata.obs["sample"].cat.codes.to_numpy().copy(), dtype=torch.long)
    labels = adata.obs["clusters"].to_numpy()
    return x, batch, labels, np.asarray(adata.var_names, dtype=object)


def _train(model, x, batch, steps, batch_size=100, seed=0):
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    optimizer = model.default_optimizer(batch_size)
    model.train()
    for step in range(steps):
        model.on_train_epoch_start(step * batch_size // len(x))
        rows = torch.randperm(len(x), generator=generator)[:batch_size]
        optimizer.zero_grad()
        model(x[rows], model.var_names_g, batch[rows] if batch is not None else None)["loss"].backward()
        optimizer.step()
    model.eval()
    return model


def test_likelihoods_match_torch_distributions():
    torch.manual_seed(0)
    x = torch.poisson(torch.full((50, 7), 3.0))
    mu, theta = torch.rand(50, 7) * 5 + 0.1, torch.rand(7) * 3 + 0.2
    nb = torch.distributions.NegativeBinomial(total_count=theta, logits=torch.log(mu) - torch.log(theta))
    torch.testing.assert_close(nb_log_prob(x, mu, theta, eps=0.0), nb.log_prob(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        poisson_log_prob(x, mu, eps=0.0), torch.distributions.Poisson(mu).log_prob(x), rtol=1e-5, atol=1e-5
    )
    # zero inflation: no extra zeros -> NB; the ZINB sums to one over the counts; zeros get the extra mass
    support = torch.arange(0, 400.0)[:, None]
    pi_logits = torch.tensor([-2.0])
    total = zinb_log_prob(support, torch.tensor([4.0]), torch.tensor([0.7]), pi_logits).exp().sum()
    assert abs(float(total) - 1.0) < 1e-4
    torch.testing.assert_close(
        zinb_log_prob(x, mu, theta, torch.full_like(mu, -30.0)), nb_log_prob(x, mu, theta), rtol=1e-5, atol=1e-5
    )
    p0 = zinb_log_prob(torch.zeros(1), torch.tensor([4.0]), torch.tensor([0.7]), pi_logits).exp()
    nb0 = nb_log_prob(torch.zeros(1), torch.tensor([4.0]), torch.tensor([0.7])).exp()
    pi = torch.sigmoid(pi_logits)
    torch.testing.assert_close(p0, pi + (1 - pi) * nb0)


def test_kl_warmup_schedule():
    assert kl_weight(0, 0, 4, None) == 0.0 and kl_weight(2, 0, 4, None) == 0.5 and kl_weight(9, 0, 4, None) == 1.0
    assert kl_weight(0, 5, None, 10, start=0.2) == pytest.approx(0.6) and kl_weight(0, 0, None, None) == 1.0


@pytest.mark.parametrize(
    ("likelihood", "dispersion"),
    [("nb", "gene"), ("zinb", "gene-cell"), ("poisson", "gene"), ("nb", "gene-batch")],
)
def test_training_improves_elbo_and_separates_labels(counts, likelihood, dispersion):
    x, batch, labels, genes = counts
    model = SingleCellVariationalInference(
        genes, n_batch=6, gene_likelihood=likelihood, dispersion=dispersion, kl_warmup_steps=50, kl_warmup_epochs=None
    )
    before = float(model.negative_elbo(x, genes, batch).mean())
    _train(model, x, batch, steps=150)
    after = float(model.negative_elbo(x, genes, batch).mean())
    assert after < 0.8 * before  # about 95 -> 68 nats per cell
    z = model.predict(x, genes, batch)["x_ng"].numpy()
    assert z.shape == (600, 10) and np.isfinite(z).all()
    # 8 clusters along 3 lineages: well above chance (0.17 for the largest cluster)
    assert latent_metrics(z, labels, k=10)["knn_accuracy"] > 0.5


def test_state_is_checkpointed_and_reloads_identically(counts):
    x, batch, _, genes = counts
    model = _train(
        SingleCellVariationalInference(genes, n_batch=6, kl_warmup_steps=20, kl_warmup_epochs=None), x, batch, 30
    )
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    fresh = SingleCellVariationalInference(genes, n_batch=6, kl_warmup_steps=20, kl_warmup_epochs=None, seed=5)
    assert not torch.equal(fresh.px_r, model.px_r)
    fresh.load_state_dict(torch.load(buffer, weights_only=False))
    fresh.eval()
    assert fresh.step == model.step == 30
    torch.testing.assert_close(fresh.predict(x, genes, batch)["x_ng"], model.predict(x, genes, batch)["x_ng"])


def test_embedded_batch_starts_as_one_hot(counts):
    x, batch, _, genes = counts
    plain = SingleCellVariationalInference(genes, n_batch=6)
    embedded = SingleCellVariationalInference(
        genes, n_batch=6, batch_embedded=True, batch_representation_sampled=True, batch_kl_weight_max=1.0
    )
    torch.testing.assert_close(
        embedded.batch_representation_from_batch_index(batch, True), plain.batch_representation_from_batch_index(batch)
    )
    torch.manual_seed(3)
    a = plain.negative_elbo(x, genes, batch)
    torch.manual_seed(3)
    b = embedded.negative_elbo(x, genes, batch)
    torch.testing.assert_close(a, b)
    # a smaller learnt embedding trains, and its KL term enters the loss
    small = SingleCellVariationalInference(
        genes,
        n_batch=6,
        batch_embedded=True,
        n_latent_batch=3,
        batch_representation_sampled=True,
        batch_kl_weight_max=1.0,
    )
    assert small.batch_representation_from_batch_index(batch).shape == (600, 3)
    _train(small, x, batch, 20)
    assert np.isfinite(small.negative_elbo(x, genes, batch).numpy()).all()


def test_reconstruct(counts):
    x, batch, _, genes = counts
    model = _train(
        SingleCellVariationalInference(genes, n_batch=6, kl_warmup_steps=50, kl_warmup_epochs=None), x, batch, 60
    )
    torch.manual_seed(0)
    own = model.reconstruct(x, genes, batch, transform_batch=None, n_latent_samples=5)["x_ng"]
    torch.testing.assert_close(own.sum(1), torch.full((600,), 1e4), rtol=1e-4, atol=0)
    # the posterior mean decoded in batch 0 equals predict's latent decoded by generative
    mean = model.reconstruct(x, genes, batch, transform_batch=0, use_latent_mean=True, reconstructed_library_size=1.0)[
        "x_ng"
    ]
    z = model.predict(x, genes, batch)["x_ng"]
    scale = model.generative(z, torch.zeros(600, 1), model.batch_representation_from_batch_index(torch.zeros(600)))[
        "px"
    ].scale
    torch.testing.assert_close(mean, scale, rtol=1e-5, atol=1e-7)
    # every cell decoded in the same batch: the batch effect is removed, so cells from different
    # samples with the same latent get the same profile; "mean" averages the batches
    several = [
        model.reconstruct(x[:50], genes, batch[:50], transform_batch=b, use_latent_mean=True)["x_ng"] for b in range(6)
    ]
    average = model.reconstruct(x[:50], genes, batch[:50], transform_batch="mean", use_latent_mean=True)["x_ng"]
    torch.testing.assert_close(average, torch.stack(several).mean(0))
    subset = model.reconstruct(
        x[:50], genes, batch[:50], var_names=list(genes[[5, 2]]), use_latent_mean=True, transform_batch=0
    )
    torch.testing.assert_close(subset["x_ng"], several[0][:, [5, 2]])
    # importance sampling: weights sum to one, so a single sample equals the plain estimate
    torch.manual_seed(1)
    one = model.reconstruct(x[:50], genes, batch[:50], n_latent_samples=1, use_importance_sampling=True)["x_ng"]
    torch.manual_seed(1)
    torch.testing.assert_close(one, model.reconstruct(x[:50], genes, batch[:50], n_latent_samples=1)["x_ng"])
    # predict returns reconstructions when configured
    model.reconstruct_counts_on_predict, model.reconstruction_use_latent_mean = True, True
    torch.testing.assert_close(model.predict(x[:50], genes, batch[:50])["x_ng"], several[0])


def test_size_factor_gene_label_and_covariates(counts):
    x, batch, labels, genes = counts
    codes = torch.as_tensor(np.unique(labels, return_inverse=True)[1])
    cov = (codes % 2)[:, None]
    layer = {"class_path": "LinearWithBatchAndCovariates", "init_args": {"out_features": 32}}
    decoder = {
        "hidden_layers": [layer],
        "final_layer": {"class_path": "torch.nn.Linear", "init_args": {}},
        "final_additive_bias": True,
    }
    model = SingleCellVariationalInference(
        genes,
        decoder=decoder,
        n_batch=6,
        n_cats_per_cov=[2],
        dispersion="gene-label",
        n_labels=8,
        use_size_factor_key=True,
    )
    out = model(x[:100], genes, batch[:100], cov[:100], x[:100].sum(1), codes[:100])
    assert torch.isfinite(out["loss"])
    with pytest.raises(ValueError, match="total_mrna_umis_n"):
        model(x[:100], genes, batch[:100], cov[:100], None, codes[:100])
    with pytest.raises(ValueError, match="y_n"):
        model(x[:100], genes, batch[:100], cov[:100], x[:100].sum(1))
    with pytest.raises(ValueError, match="transform_categorical_covariates"):
        model.reconstruct(x[:10], genes, batch[:10], cov[:10], x[:10].sum(1), transform_batch=0)


def test_bad_inputs_and_unimplemented_options(counts):
    x, batch, _, genes = counts
    for kwargs, match in [
        ({"latent_distribution": "ln"}, "logistic normal"),
        ({"n_continuous_cov": 2}, "Continuous"),
    ]:
        with pytest.raises(NotImplementedError, match=match):
            SingleCellVariationalInference(genes, **kwargs)
    for kwargs, match in [
        ({"dispersion": "gene-sample"}, "dispersion"),
        ({"gene_likelihood": "normal"}, "gene_likelihood"),
        ({"dispersion": "gene-batch"}, "n_batch"),
        ({"kl_warmup_steps": 5}, "not both"),
        ({"n_batch": 3, "n_latent_batch": 2}, "batch_embedded"),
        ({"use_batch_norm": "all"}, "use_batch_norm"),
        (
            {
                "encoder": {
                    "hidden_layers": [{"class_path": "Conv1d", "init_args": {"out_features": 3}}],
                    "final_layer": {"class_path": "Linear"},
                }
            },
            "Unknown layer",
        ),
    ]:
        with pytest.raises(ValueError, match=match):
            SingleCellVariationalInference(genes, **kwargs)
    model = SingleCellVariationalInference(genes, n_batch=6)
    with pytest.raises(ValueError, match="batch_index_n"):
        model(x[:10], genes)
    with pytest.raises(ValueError, match="outside"):
        model(x[:10], genes, torch.full((10,), 6))
    with pytest.raises(ValueError, match="differ"):
        model(x[:10], genes[::-1].copy(), batch[:10])
    with pytest.raises(ValueError, match="transform_batch"):
        model.reconstruct(x[:10], genes, batch[:10], transform_batch=9)


def test_spline_flow_prior_is_a_density():
    torch.manual_seed(0)
    z = torch.randn(20, 3)
    standard = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    torch.testing.assert_close(SplineFlowPrior(3).log_prob(z), standard)  # starts as Normal(0, I)
    # the spline's log-Jacobian is its derivative's log; outside the interval it is the identity
    x = torch.linspace(-6, 6, 41, requires_grad=True)
    w, h, d = torch.randn(41, 8), torch.randn(41, 8), torch.randn(41, 7)
    y, log_det = rational_quadratic_spline(x, w, h, d, 5.0)
    (grad,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(grad.log(), log_det, atol=1e-4, rtol=1e-4)
    assert torch.equal(y[x.abs() >= 5].detach(), x[x.abs() >= 5].detach())
    # random flows still integrate to one: 1-D (unconditional splines) on a fine grid, 2-D (couplings) on a coarse one
    flat = SplineFlowPrior(1).double()
    for coupling in flat.couplings:
        torch.nn.init.normal_(coupling.params)
    g = torch.linspace(-12, 12, 200_001, dtype=torch.float64)[:, None]
    with torch.no_grad():
        assert abs(float(flat.log_prob(g).exp().sum() * (g[1, 0] - g[0, 0])) - 1.0) < 1e-3
    flow = SplineFlowPrior(2, [16])
    for coupling in flow.couplings:
        torch.nn.init.normal_(coupling.net[-1].weight, std=0.1)
        torch.nn.init.normal_(coupling.net[-1].bias, std=0.1)
    g = torch.linspace(-8, 8, 801)
    grid = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    with torch.no_grad():
        mass = float(flow.log_prob(grid).exp().sum() * (g[1] - g[0]) ** 2)
    assert abs(mass - 1.0) < 0.01


def test_flow_prior_trains_and_reloads(counts):
    x, batch, _, genes = counts
    model = SingleCellVariationalInference(genes, n_batch=6, n_latent=4, use_flow=True, flow_hidden_features=[16])
    before = float(model.negative_elbo(x, genes, batch).mean())
    _train(model, x, batch, 100)
    assert float(model.negative_elbo(x, genes, batch).mean()) < 0.85 * before
    assert any(
        float(p.detach().abs().sum()) > 0 for p in model.flow.couplings[0].net[-1].parameters()
    )  # the prior moved
    fresh = SingleCellVariationalInference(genes, n_batch=6, n_latent=4, use_flow=True, flow_hidden_features=[16])
    fresh.load_state_dict(model.state_dict())
    fresh.eval()
    z = torch.randn(10, 4)
    torch.testing.assert_close(fresh.flow.log_prob(z), model.flow.log_prob(z))
