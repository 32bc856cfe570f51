"""The kernel algebra: expressions, constants, shared instances, inversion, copies and AnnData round trips."""

import anndata as ad
import pytest

from cellflux_kernels import (
    ConnectivityKernel,
    KernelAdd,
    PrecomputedKernel,
    PseudotimeKernel,
    VelocityKernel,
    read_kernel,
)


@pytest.fixture
def kernels(adata):
    vk = VelocityKernel(adata).compute_transition_matrix(softmax_scale=4.0, show_progress_bar=False)
    ck = ConnectivityKernel(adata).compute_transition_matrix()
    return vk, ck


def test_weighted_sum_normalises_constants(kernels, assert_stochastic):
    vk, ck = kernels
    expr = 4 * vk + 1 * ck
    assert isinstance(expr, KernelAdd)
    expr.compute_transition_matrix()
    assert_stochastic(expr.transition_matrix)
    expected = 0.8 * vk.transition_matrix + 0.2 * ck.transition_matrix
    assert abs(expr.transition_matrix - expected).max() < 1e-12
    assert repr(expr).startswith("((0.8 * <VelocityKernel[n=400, softmax_scale=4.0, mode=deterministic")
    assert "(0.2 * <ConnectivityKernel[n=400, density_normalize=True" in repr(expr)
    assert expr.kernels == (vk, ck)
    assert set(expr.params) == {"VelocityKernel:0", "ConnectivityKernel:1"}


def test_products_and_nesting(kernels, assert_stochastic):
    vk, ck = kernels
    prod = (vk * ck).compute_transition_matrix()
    raw = vk.transition_matrix.multiply(ck.transition_matrix).tocsr()
    expected = raw.multiply(1 / raw.sum(axis=1)).tocsr()
    assert abs(prod.transition_matrix - expected).max() < 1e-12
    nested = 0.5 * (vk * ck) + 0.5 * vk
    nested.compute_transition_matrix()
    assert_stochastic(nested.transition_matrix)
    assert abs(nested.transition_matrix - (0.5 * expected + 0.5 * vk.transition_matrix)).max() < 1e-12
    # constants merge: 2 * (3 * vk) is one constant times vk
    assert repr(2 * (3 * vk)).startswith("(6.0 * <VelocityKernel")


def test_shared_instance_is_computed_once(adata, monkeypatch):
    vk = VelocityKernel(adata)
    calls = []
    original = VelocityKernel.compute_transition_matrix

    def counting(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, softmax_scale=4.0, show_progress_bar=False)

    monkeypatch.setattr(VelocityKernel, "compute_transition_matrix", counting)
    expr = 0.3 * vk + 0.3 * (vk * ConnectivityKernel(adata)) + 0.4 * vk
    assert expr.kernels.count(vk) == 1 and len(expr.kernels) == 2
    expr.compute_transition_matrix()
    assert len(calls) == 1


def test_reading_the_matrix_of_a_base_kernel_computes_defaults(adata):
    ck = ConnectivityKernel(adata)
    assert ck.params == {}
    assert ck.transition_matrix is not None
    assert ck.params["density_normalize"] is True


def test_invert_in_place(kernels, adata):
    vk, ck = kernels
    same = ~vk
    assert same is vk and vk.backward is True and vk._transition_matrix is None and vk.params == {}
    assert repr(vk).startswith("~<VelocityKernel")
    expr = vk + ck
    pk = PseudotimeKernel(adata, time_key="true_time")
    expr2 = ~(pk + ck)
    assert pk.backward is True and ck.backward is None and expr2.backward is True
    assert expr.backward is True


def test_copy_is_independent_and_keeps_sharing(kernels):
    vk, ck = kernels
    vk2 = vk.copy()
    assert vk2 is not vk and vk2.adata is vk.adata
    vk2.__invert__()
    assert vk.backward is False and vk.transition_matrix is not None
    expr = vk + vk * ck
    copied = expr.copy()
    assert len(copied.kernels) == 2 and all(a is not b for a, b in zip(copied.kernels, expr.kernels, strict=True))
    deep = vk.copy(deep=True)
    assert deep.adata is not vk.adata


def test_combining_kernels_on_different_anndata_fails(adata, kernels):
    vk, _ = kernels
    other = ConnectivityKernel(adata.copy())
    with pytest.raises(ValueError, match="different AnnData"):
        vk + other
    pk = PseudotimeKernel(adata, time_key="true_time", backward=True)
    with pytest.raises(ValueError, match="forward and backward"):
        vk + pk
    with pytest.raises(ValueError, match="positive"):
        -1 * vk


def test_write_and_read_back_through_h5ad(kernels, adata, tmp_path):
    vk, ck = kernels
    vk.write_to_adata()
    with pytest.raises(KeyError, match="already exist"):
        vk.write_to_adata()
    expr = (0.8 * vk + 0.2 * ck).compute_transition_matrix()
    expr.write_to_adata("T_combined")
    adata.write_h5ad(tmp_path / "k.h5ad")
    back = ad.read_h5ad(tmp_path / "k.h5ad")
    vk2 = read_kernel(back, "T_fwd")
    assert isinstance(vk2, VelocityKernel)
    assert vk2.params["softmax_scale"] == 4.0 and vk2.params["mode"] == "deterministic"
    assert abs(vk2.transition_matrix - vk.transition_matrix).max() == 0
    comb = read_kernel(back, "T_combined")
    assert isinstance(comb, PrecomputedKernel)
    assert abs(comb.transition_matrix - expr.transition_matrix).max() == 0
    assert back.uns["T_combined"]["expression"] == repr(expr)
    assert "VelocityKernel:0" in comb.params


def test_sums_own_their_constants_and_do_not_depend_on_evaluation_order(kernels, adata):
    vk, ck = kernels
    pk = PseudotimeKernel(adata, time_key="true_time").compute_transition_matrix()
    weighted_vk = 0.8 * vk
    e = weighted_vk + 0.2 * ck
    e2 = e + 1.0 * pk
    T2_first = e2.compute_transition_matrix().transition_matrix.copy()
    T1 = e.compute_transition_matrix().transition_matrix.copy()
    T2_again = e2.compute_transition_matrix().transition_matrix.copy()
    assert abs(T2_first - T2_again).max() < 1e-12
    expected2 = 0.4 * vk.transition_matrix + 0.1 * ck.transition_matrix + 0.5 * pk.transition_matrix
    assert abs(T2_again - expected2).max() < 1e-12
    assert abs(T1 - (0.8 * vk.transition_matrix + 0.2 * ck.transition_matrix)).max() < 1e-12
    assert [t[0].value for t in e] == pytest.approx([0.8, 0.2])
    assert [t[0].value for t in e2] == pytest.approx([0.4, 0.1, 0.5])
    assert repr(e).startswith("((0.8 * <VelocityKernel") and "(0.2 * <ConnectivityKernel" in repr(e)
    assert repr(e2).startswith("((0.4 * <VelocityKernel") and "(0.5 * <PseudotimeKernel" in repr(e2)
    # the user's own constants are untouched and not shared with the sums
    assert weighted_vk[0].value == 0.8
    assert weighted_vk[0] is not e[0][0] and e[0][0] is not e2[0][0]
