"""VELOVI on scvi-tools' base classes: queries, invariants, parity of the batched queries, save/load."""

import pickle

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from cellflux_velocity_vae import VELOVI, default_max_epochs
from cellflux_velocity_vae._constants import STATES
from cellflux_velocity_vae._uncertainty import directional_statistics


def cosine_rows(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)


def test_base_classes():
    from scvi.model.base import BaseModelClass, UnsupervisedTrainingMixin, VAEMixin
    from scvi.module.base import BaseModuleClass

    from cellflux_velocity_vae import VELOVAE

    assert issubclass(VELOVI, BaseModelClass) and issubclass(VELOVI, VAEMixin)
    assert issubclass(VELOVI, UnsupervisedTrainingMixin) and issubclass(VELOVAE, BaseModuleClass)


def test_default_epochs_scale_with_cells():
    assert default_max_epochs(1000) == 400
    assert default_max_epochs(40_000) == 200
    assert default_max_epochs(100_000) == 80


def test_trained_and_history(trained):
    assert trained.is_trained
    assert len(trained.history["elbo_train"]) == 15
    assert np.isfinite(float(trained.get_elbo()))


def test_velocity_shapes_and_clip(trained):
    adata = trained.adata
    mean = trained.get_velocity(n_samples=4)
    assert mean.shape == adata.shape and list(mean.columns) == list(adata.var_names)
    samples = trained.get_velocity(n_samples=4, return_mean=False)
    assert samples.shape == (4, *adata.shape)
    assert np.all(samples >= -adata.layers["Ms"][None] - 1e-6)
    genes = list(adata.var_names[:3])
    subset = trained.get_velocity(n_samples=2, gene_list=genes, indices=[0, 5, 7])
    assert subset.shape == (3, 3) and list(subset.columns) == genes
    unspliced = trained.get_velocity(n_samples=2, velo_mode="unspliced", velo_statistic="max")
    assert unspliced.shape == adata.shape


def test_states_and_latent_time(trained):
    states, names = trained.get_state_assignment(n_samples=3)
    assert names == list(STATES)
    np.testing.assert_allclose(states.sum(-1), 1.0, rtol=1e-4)
    hard, _ = trained.get_state_assignment(n_samples=3, hard_assignment=True)
    assert set(np.unique(hard.to_numpy())) <= set(STATES)
    time = trained.get_latent_time(n_samples=3).to_numpy()
    assert np.all(time >= 0) and np.all(time <= trained.module.t_max + 1e-4)
    time_max = trained.get_latent_time(n_samples=3, time_statistic="max")
    assert time_max.shape == time.shape


def test_expression_fit_and_likelihood(trained):
    fit_s, fit_u = trained.get_expression_fit(n_samples=3)
    assert fit_s.shape == fit_u.shape == trained.adata.shape
    assert np.all(fit_s.to_numpy() >= -1e-5)
    ll = trained.get_gene_likelihood(n_samples=2)
    assert ll.shape == trained.adata.shape and np.isfinite(ll).all()


def test_rates_latent_and_marginal_ll(trained):
    rates = trained.get_rates()
    assert set(rates) == {"alpha", "beta", "gamma", "alpha_1", "lambda_alpha"}
    assert all(rates[k].shape == (trained.adata.n_vars,) and np.all(rates[k] >= 0) for k in ("alpha", "beta", "gamma"))
    assert trained.get_latent_representation().shape == (trained.adata.n_obs, 10)
    assert np.isfinite(trained.get_marginal_ll(n_mc_samples=10, indices=np.arange(50)))
    posterior = trained.get_aggregated_posterior(indices=np.arange(100))
    assert posterior.log_prob(torch.zeros(3, 10)).shape == (3,)


def test_directional_statistics_equal_scvi_tools_per_cell_loop(rng):
    from scvi.external.velovi._model import _directional_statistics_per_cell

    samples = rng.normal(size=(20, 6, 15))
    stats, cos = directional_statistics(samples)
    for cell in range(6):
        cosines, *expected = _directional_statistics_per_cell(samples[:, cell, :])
        np.testing.assert_allclose(cos[cell], cosines, rtol=1e-10)
        np.testing.assert_allclose(
            stats[cell], [expected[2], expected[3], expected[0], expected[1], expected[4]], rtol=1e-8
        )


def test_directional_uncertainty_streams_over_chunks(trained):
    df, cos = trained.get_directional_uncertainty(n_samples=8, batch_size=50)
    assert df.shape == (trained.adata.n_obs, 5) and cos.shape == (trained.adata.n_obs, 8)
    assert np.all(cos <= 1) and np.all(df["directional_cosine_sim_variance"] >= 0)


def _reference_with_our_weights(model):
    import scvi
    from scvi.external import VELOVI as ReferenceVELOVI

    adata = model.adata.copy()
    for key in [k for k in adata.uns if k.startswith("_scvi")]:
        del adata.uns[key]
    ReferenceVELOVI.setup_anndata(adata, spliced_layer="Ms", unspliced_layer="Mu")
    scvi.settings.seed = 0
    reference = ReferenceVELOVI(adata, n_hidden=64)
    reference.module.load_state_dict(model.module.state_dict())
    reference.module.eval()
    reference.is_trained_ = True
    return reference


def test_batched_queries_match_scvi_tools_queries_on_the_same_weights(trained):
    reference = _reference_with_our_weights(trained)
    cells = np.arange(120)
    ours_v = trained.get_velocity(n_samples=60, indices=cells).to_numpy()
    ref_v = reference.get_velocity(n_samples=60, indices=cells).to_numpy()
    ref_v2 = reference.get_velocity(n_samples=60, indices=cells).to_numpy()
    # agreement with the reference is as good as the reference's agreement with itself (Monte Carlo noise)
    noise = np.median(cosine_rows(ref_v2, ref_v))
    assert np.median(cosine_rows(ours_v, ref_v)) > noise - 0.03
    ours_t = trained.get_latent_time(n_samples=60, indices=cells).to_numpy().mean(1)
    ref_t = reference.get_latent_time(n_samples=60, indices=cells).to_numpy().mean(1)
    ref_t2 = reference.get_latent_time(n_samples=60, indices=cells).to_numpy().mean(1)
    assert spearmanr(ours_t, ref_t)[0] > spearmanr(ref_t2, ref_t)[0] - 0.03
    ours_fit, _ = trained.get_expression_fit(n_samples=30, indices=cells)
    ref_fit, _ = reference.get_expression_fit(n_samples=30, indices=cells)
    np.testing.assert_allclose(ours_fit.to_numpy().mean(0), ref_fit.to_numpy().mean(0), atol=0.02)


def test_expected_state_weights_estimate_the_same_posterior_mean_with_less_noise(trained):
    cells = np.arange(150)
    kw = {"indices": cells, "clip": False}
    torch.manual_seed(1)
    expected = [trained.get_velocity(n_samples=20, state_weights="expected", **kw).to_numpy() for _ in range(2)]
    sampled = [trained.get_velocity(n_samples=20, state_weights="sampled", **kw).to_numpy() for _ in range(2)]
    # "auto" picks the expected weights for a mean over samples of a linear statistic
    torch.manual_seed(1)
    np.testing.assert_array_equal(trained.get_velocity(n_samples=20, **kw).to_numpy(), expected[0])
    noise_expected = np.abs(expected[0] - expected[1]).mean()
    noise_sampled = np.abs(sampled[0] - sampled[1]).mean()
    assert noise_expected < 0.5 * noise_sampled
    # the same expectation: many sampled draws converge to the expected-weights estimate
    many = trained.get_velocity(n_samples=400, state_weights="sampled", **kw).to_numpy()
    assert np.abs(many - expected[0]).mean() < 0.5 * noise_sampled
    assert np.median(cosine_rows(many, expected[0])) > 0.98
    for query in (trained.get_latent_time, lambda **k: trained.get_state_assignment(**k)[0]):
        e = np.asarray(query(n_samples=20, indices=cells, state_weights="expected"))
        m = np.asarray(query(n_samples=400, indices=cells, state_weights="sampled"))
        m2 = np.asarray(query(n_samples=400, indices=cells, state_weights="sampled"))
        # 20 draws with expected weights are as close to a 400-draw sampled mean as another one is
        assert np.abs(e - m).mean() < np.abs(m2 - m).mean()


def test_expected_state_weights_are_exact_per_latent_draw(trained):
    from cellflux_velocity_vae._posterior import iterate_posterior

    adata, cells = trained.adata, np.arange(40)
    torch.manual_seed(3)
    (chunk,) = iterate_posterior(trained.module, adata.layers["Ms"], adata.layers["Mu"], cells, 5, expected_states=True)
    np.testing.assert_allclose(chunk.pi, chunk.pi_alpha / chunk.pi_alpha.sum(-1, keepdim=True), rtol=1e-6)
    # the latent draws do not depend on how the state weights are taken
    torch.manual_seed(3)
    (sampled,) = iterate_posterior(trained.module, adata.layers["Ms"], adata.layers["Mu"], cells, 5)
    np.testing.assert_array_equal(chunk.z, sampled.z)
    np.testing.assert_allclose(sampled.pi.sum(-1), 1.0, rtol=1e-5)


def test_state_weights_option_is_checked(trained):
    with pytest.raises(ValueError, match="state_weights must be one of"):
        trained.get_velocity(n_samples=2, state_weights="mean")
    with pytest.raises(ValueError, match="linear in the state weights"):
        trained.get_velocity(n_samples=2, return_mean=False, state_weights="expected")
    with pytest.raises(ValueError, match="linear in the state weights"):
        trained.get_latent_time(n_samples=2, time_statistic="max", state_weights="expected")


def test_permutation_scores(trained):
    trained.adata.obs["type"] = np.where(np.arange(trained.adata.n_obs) % 2 == 0, "a", "b")
    scores, permuted = trained.get_permutation_scores("type", seed=0)
    assert scores.shape == (trained.adata.n_vars, 2)
    for layer in ("Ms", "Mu"):  # a within-type permutation keeps each type's values per gene
        for label in ("a", "b"):
            rows = trained.adata.obs["type"].to_numpy() == label
            np.testing.assert_allclose(
                np.sort(permuted.layers[layer][rows], axis=0), np.sort(trained.adata.layers[layer][rows], axis=0)
            )
    with pytest.raises(KeyError, match="missing"):
        trained.get_permutation_scores("no_such_column")


def test_save_load_round_trip_weights_only(trained, tmp_path):
    trained.save(str(tmp_path / "model"), save_anndata=True, prefix="v_")
    with pytest.raises(ValueError, match="already exists"):
        trained.save(str(tmp_path / "model"))
    payload = torch.load(tmp_path / "model" / "v_model.pt", weights_only=True)  # no pickled code inside
    assert "model_state_dict" in payload
    loaded = VELOVI.load(str(tmp_path / "model"), prefix="v_")
    for key, value in trained.module.state_dict().items():
        torch.testing.assert_close(loaded.module.state_dict()[key], value)
    assert loaded.is_trained and len(loaded.history["elbo_train"]) == 15
    np.testing.assert_allclose(loaded.get_latent_representation(), trained.get_latent_representation(), rtol=1e-5)
    loaded2 = VELOVI.load(str(tmp_path / "model"), adata=trained.adata.copy(), prefix="v_")
    np.testing.assert_allclose(loaded2.get_rates()["gamma"], trained.get_rates()["gamma"])


class _Boom:
    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path('PWNED').write_text('x')",))


def test_load_never_executes_pickled_code(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "evil"
    trained.save(str(folder))
    with open(folder / "model.pt", "wb") as handle:
        pickle.dump({"model_state_dict": _Boom()}, handle, protocol=2)
    with pytest.raises(pickle.UnpicklingError):
        VELOVI.load(str(folder), adata=trained.adata.copy())
    assert not (tmp_path / "PWNED").exists()


def test_default_optimizer_is_scvi_tools_adamw_with_the_same_hyper_parameters():
    from cellflux_velocity_vae._model import _plan_with_fused_adamw

    plan = _plan_with_fused_adamw({"lr": 0.02, "weight_decay": 0.03, "optimizer": "AdamW"})
    params = [torch.nn.Parameter(torch.ones(3))]
    optimizer = plan["optimizer_creator"](iter(params))
    assert isinstance(optimizer, torch.optim.AdamW)
    group = optimizer.param_groups[0]
    assert (group["lr"], group["eps"], group["weight_decay"], group["fused"]) == (0.02, 0.01, 0.03, True)
    # one update equals the unfused AdamW's
    reference_params = [torch.nn.Parameter(torch.ones(3))]
    reference = torch.optim.AdamW(reference_params, lr=0.02, eps=0.01, weight_decay=0.03)
    for p, opt in ((params[0], optimizer), (reference_params[0], reference)):
        p.grad = torch.tensor([0.5, -1.0, 2.0])
        opt.step()
    torch.testing.assert_close(params[0], reference_params[0])
    custom = {"lr": 0.1, "weight_decay": 0.0, "optimizer": "Adam"}
    assert _plan_with_fused_adamw(custom) == custom


def test_initial_rates_are_velovis_where_the_data_sets_them_and_defaults_elsewhere():
    from cellflux_velocity_vae._model import _softplus_inverse, initial_rates

    us = np.array([0.4, 0.0, 0.3, 0.0, 25.0])
    ms = np.array([0.8, 0.5, 0.0, 0.0, 1.0])
    alpha, gamma = initial_rates(us, ms, gamma_init_data=True)
    # VeloVI's own formulas where they are finite (gene 2: no spliced at the top, capped at 10 as VeloVI does)
    np.testing.assert_allclose(alpha[[0, 2, 4]], _softplus_inverse(us[[0, 2, 4]]))
    np.testing.assert_allclose(gamma[[0, 4]], np.clip(_softplus_inverse(us[[0, 4]] / ms[[0, 4]]), None, 10))
    assert gamma[2] == 10.0
    # no unspliced at the top: VeloVI's -inf / NaN replaced by the module's defaults
    assert np.all(np.isfinite(alpha)) and np.all(np.isfinite(gamma))
    assert alpha[1] == alpha[3] == 0.0 and gamma[1] == gamma[3] == -1.0
    assert initial_rates(us, ms, gamma_init_data=False)[1] is None


@pytest.mark.parametrize("gamma_init_data", [False, True])
def test_a_gene_with_almost_no_unspliced_trains_without_nan(prepared, gamma_init_data):
    import scvi

    adata = prepared.copy()
    mu = adata.layers["Mu"].copy()
    mu[:, 0] = 0.0
    mu[0, 0] = 1.0  # unspliced in one cell of 600: its top-1% median is 0
    adata.layers["Mu"] = mu
    scvi.settings.seed = 0
    VELOVI.setup_anndata(adata, spliced_layer="Ms", unspliced_layer="Mu")
    model = VELOVI(adata, n_hidden=16, gamma_init_data=gamma_init_data)
    assert all(torch.isfinite(p).all() for p in model.module.parameters())
    model.train(max_epochs=2, enable_progress_bar=False, batch_size=128)
    assert all(torch.isfinite(p).all() for p in model.module.parameters())
    assert np.isfinite(model.get_velocity(n_samples=2, return_numpy=True)).all()


def test_permutation_scores_on_sparse_layers_equal_dense(trained):
    from scipy import sparse

    adata = trained.adata.copy()
    adata.obs["type"] = np.where(np.arange(adata.n_obs) % 2 == 0, "a", "b")
    sparse_data = adata.copy()
    for layer in ("Ms", "Mu"):
        sparse_data.layers[layer] = sparse.csr_matrix(sparse_data.layers[layer])
    VELOVI.setup_anndata(sparse_data, spliced_layer="Ms", unspliced_layer="Mu")
    on_sparse = VELOVI(sparse_data, n_hidden=64)
    on_sparse.module.load_state_dict(trained.module.state_dict())
    on_sparse.is_trained_ = True
    torch.manual_seed(0)
    dense_scores, _ = trained.get_permutation_scores("type", adata=adata, seed=0)
    torch.manual_seed(0)
    sparse_scores, _ = on_sparse.get_permutation_scores("type", seed=0)
    np.testing.assert_allclose(sparse_scores.to_numpy(), dense_scores.to_numpy(), rtol=1e-5, atol=1e-6)
    assert np.isfinite(sparse_scores.to_numpy()).all()
