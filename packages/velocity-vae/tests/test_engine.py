"""The fused training kernels: Gamma/Dirichlet sampler, Dirichlet KL node, mixture likelihood node."""

import numpy as np
import pytest
import torch
from scipy import stats
from torch.distributions import Categorical, Dirichlet, MixtureSameFamily, Normal, kl_divergence

from cellflux_velocity_vae._dirichlet import dirichlet_kl, rsample_dirichlet, sample_gamma
from cellflux_velocity_vae._likelihood import log_mixture_weights, mixture_log_lik
from cellflux_velocity_vae._special import gamma_functions


@pytest.mark.parametrize("shape", [0.05, 0.4, 1.0, 3.0, 40.0])
def test_gamma_sampler_has_torchs_distribution(shape):
    torch.manual_seed(0)
    ours = sample_gamma(torch.full((40_000,), shape)).double().numpy()
    reference = torch._standard_gamma(torch.full((40_000,), shape)).double().numpy()
    assert stats.ks_2samp(ours, reference).pvalue > 1e-3
    assert abs(ours.mean() - shape) < 5 * np.sqrt(shape / ours.size)
    assert ours.min() > 0  # clamped to the smallest normal float, as torch does


def test_dirichlet_draws_sum_to_one_along_the_state_axis():
    torch.manual_seed(1)
    conc = torch.rand(7, 4, 9) * 2 + 0.05
    draw = rsample_dirichlet(conc, dim=-2)
    torch.testing.assert_close(draw.sum(-2), torch.ones(7, 9))
    moved = rsample_dirichlet(conc.transpose(-1, -2), dim=-1)
    torch.testing.assert_close(moved.sum(-1), torch.ones(7, 9))


def test_dirichlet_pathwise_gradient_is_unbiased():
    # E[sum_k w_k pi_k^2] = sum_k w_k a_k (a_k + 1) / (A (A + 1)); its gradient in closed form
    torch.manual_seed(2)
    a = torch.tensor([0.3, 0.9, 2.0, 0.15], dtype=torch.float64)
    w = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    exact = a.clone().requires_grad_()
    total = exact.sum()
    (w * exact * (exact + 1) / (total * (total + 1))).sum().backward()
    conc = a.expand(200_000, 4).T.contiguous().requires_grad_()  # states first: (4, draws)
    draws = rsample_dirichlet(conc, dim=0)
    ((w[:, None] * draws.square()).sum() / draws.shape[1]).backward()
    per_draw = conc.grad.sum(1)
    torch.testing.assert_close(per_draw, exact.grad, atol=4e-3, rtol=0.05)


def test_dirichlet_kl_value_and_gradient():
    conc = (torch.rand(3, 4, 5, dtype=torch.float64) * 3 + 0.05).requires_grad_()
    expected = kl_divergence(Dirichlet(conc.transpose(-1, -2)), Dirichlet(torch.full((3, 5, 4), 0.25).double()))
    torch.testing.assert_close(dirichlet_kl(conc, 0.25, dim=-2), expected)
    assert torch.autograd.gradcheck(lambda c: dirichlet_kl(c, 0.25, dim=-2), (conc,))


def test_gamma_functions_match_torch_in_float32_and_fall_back_in_float64():
    x = torch.nn.functional.softplus(torch.randn(100_000, generator=torch.Generator().manual_seed(0)) * 3)
    x[:4] = torch.tensor([1e-8, 3e-3, 2e6, 1e12])
    ours = gamma_functions(x)
    exact = x.double()
    for values, reference in zip(
        ours, (torch.lgamma(exact), torch.digamma(exact), torch.polygamma(1, exact)), strict=True
    ):
        assert values.dtype == torch.float32
        error = (values.double() - reference).abs() / reference.abs().clamp_min(1.0)
        assert error.max() < 3e-6
    x64 = x.double()[:1000]
    torch.testing.assert_close(gamma_functions(x64)[2], torch.polygamma(1, x64), rtol=0, atol=0)


@pytest.mark.parametrize("requires_grad", [True, False])
def test_precomputed_gamma_functions_give_the_same_draws_kl_and_gradients(requires_grad):
    conc = (torch.rand(6, 4, 5) * 3 + 0.05).requires_grad_(requires_grad)
    special = gamma_functions(conc)
    torch.manual_seed(4)
    draw = rsample_dirichlet(conc.transpose(-1, -2), dim=-1, digamma=special[1].transpose(-1, -2))
    torch.manual_seed(4)
    plain = rsample_dirichlet(conc.transpose(-1, -2), dim=-1)
    torch.testing.assert_close(draw, plain)
    kl = dirichlet_kl(conc.transpose(-1, -2), 0.25, dim=-1, special=special.transpose(-1, -2))
    kl_plain = dirichlet_kl(conc, 0.25, dim=-2)
    torch.testing.assert_close(kl, kl_plain, rtol=1e-5, atol=1e-5)
    if requires_grad:
        weights = torch.rand(4, 5)
        grads = [
            torch.autograd.grad((d * weights.T).sum() + k.sum(), conc)[0] for d, k in ((draw, kl), (plain, kl_plain))
        ]
        torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-5)


def test_kl_with_precomputed_functions_has_the_exact_gradient_in_float64():
    conc = (torch.rand(3, 4, 5, dtype=torch.float64) * 3 + 0.05).requires_grad_()
    kl = lambda c: dirichlet_kl(c, 0.25, dim=-2, special=gamma_functions(c))  # noqa: E731
    assert torch.autograd.gradcheck(kl, (conc,))


def test_mixture_node_equals_torch_mixture_value_and_gradients():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 5, dtype=torch.float64, generator=g)
    mean = torch.rand(6, 4, 5, dtype=torch.float64, generator=g).requires_grad_()
    sd = (torch.rand(4, 5, dtype=torch.float64, generator=g) + 0.2).requires_grad_()
    pi = Dirichlet(torch.full((6, 4, 5), 0.7, dtype=torch.float64)).sample().requires_grad_()

    def ours(mean, sd, pi):
        return mixture_log_lik(x, mean, sd, log_mixture_weights(pi))

    def reference(mean, sd, pi):
        mix = Categorical(probs=pi.transpose(-1, -2))
        return MixtureSameFamily(mix, Normal(mean.transpose(-1, -2), sd.T.expand(6, 5, 4))).log_prob(x)

    torch.testing.assert_close(ours(mean, sd, pi), reference(mean, sd, pi))
    weights = torch.rand(6, 5, dtype=torch.float64, generator=g)
    grads = torch.autograd.grad((ours(mean, sd, pi) * weights).sum(), (mean, sd, pi))
    expected = torch.autograd.grad((reference(mean, sd, pi) * weights).sum(), (mean, sd, pi))
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got, want)
    assert torch.autograd.gradcheck(ours, (mean, sd, pi))


def test_mixture_node_without_gradients_and_with_sample_axis():
    x = torch.rand(3, 5)
    mean, log_w = torch.rand(2, 3, 4, 5), log_mixture_weights(torch.rand(2, 3, 4, 5))
    sd = torch.rand(4, 5) + 0.1
    with torch.no_grad():
        batched = mixture_log_lik(x, mean, sd, log_w)
    for s in range(2):
        torch.testing.assert_close(batched[s], mixture_log_lik(x, mean[s], sd, log_w[s]))


def test_log_mixture_weights_node_equals_categorical_value_and_gradient():
    pi = (torch.rand(5, 4, 7, dtype=torch.float64) + 1e-3).requires_grad_()
    with torch.no_grad():
        pi[0, 0, 0] = 1e-20  # clamped to eps: no gradient through it

    def reference(pi):  # what MixtureSameFamily.log_prob uses as log mixture weights
        return torch.log_softmax(Categorical(probs=pi.transpose(-1, -2)).logits, dim=-1).transpose(-1, -2)

    torch.testing.assert_close(log_mixture_weights(pi), reference(pi))
    weights = torch.rand(5, 4, 7, dtype=torch.float64)
    got = torch.autograd.grad((log_mixture_weights(pi) * weights).sum(), pi)[0]
    want = torch.autograd.grad((reference(pi) * weights).sum(), pi)[0]
    torch.testing.assert_close(got, want)
    assert torch.autograd.gradcheck(log_mixture_weights, (pi.detach()[1:].clone().requires_grad_(),))


def test_gamma_shape_gradient_matches_the_incomplete_gamma_derivative():
    from scipy import special

    from cellflux_velocity_vae._dirichlet import gamma_shape_grad

    torch.manual_seed(3)
    conc = torch.rand(20_000, dtype=torch.float64) * 3 + 0.05
    sample = torch._standard_gamma(conc).clamp_min(1e-4)
    series = sample <= 1.5
    assert series.any() and (~series).any()
    ours = gamma_shape_grad(conc, sample).numpy()
    a, x, h = conc.numpy(), sample.numpy(), 1e-6
    # implicit derivative dx/da = -(dF/da) / f(x) with F scipy's regularised lower incomplete Gamma
    d_cdf = (special.gammainc(a + h, x) - special.gammainc(a - h, x)) / (2 * h)
    exact = -d_cdf / np.exp((a - 1) * np.log(x) - x - special.gammaln(a))
    s = series.numpy()
    np.testing.assert_allclose(ours[s], exact[s], rtol=1e-5)
    # above the series' range: torch's kernel on those elements
    np.testing.assert_array_equal(ours[~s], torch._standard_gamma_grad(conc, sample).numpy()[~s])
