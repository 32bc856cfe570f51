"""The scanpy-style functions: parity with in-memory references, bad input, h5ad round trips."""

import anndata as ad
import numpy as np
import pytest

import cellflux as cf


@pytest.fixture
def log_adata():
    adata = cf.datasets.simulate(n_cells=600, n_genes=60, seed=2, truth_layers=False)
    x = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X)
    adata.layers["log1p"] = np.log1p(x / x.sum(1, keepdims=True) * 1e4).astype(np.float32)
    return adata


def test_pca_streaming_equals_exact_pca(log_adata, tmp_path):
    cf.tl.pca_streaming(log_adata, n_components=8, layer="log1p", chunk_size=128)
    y = log_adata.layers["log1p"].astype(np.float64)
    yc = y - y.mean(0)
    eigenvalues, eigenvectors = np.linalg.eigh(yc.T @ yc / len(y))
    eigenvalues, eigenvectors = eigenvalues[::-1][:8], eigenvectors[:, ::-1][:, :8]
    uns = log_adata.uns["X_pca_streaming"]
    np.testing.assert_allclose(uns["explained_variance"], eigenvalues, rtol=1e-5)
    np.testing.assert_allclose(uns["explained_variance_ratio"], eigenvalues / np.trace(yc.T @ yc / len(y)), rtol=1e-5)
    loadings = log_adata.varm["X_pca_streaming"]
    np.testing.assert_allclose(np.abs(loadings.T @ eigenvectors).diagonal(), 1, atol=1e-5)
    np.testing.assert_allclose(log_adata.obsm["X_pca_streaming"], yc @ loadings, rtol=1e-3, atol=1e-3)
    path = tmp_path / "pca.h5ad"
    log_adata.write_h5ad(path)
    back = ad.read_h5ad(path)
    np.testing.assert_array_equal(back.obsm["X_pca_streaming"], log_adata.obsm["X_pca_streaming"])
    np.testing.assert_array_equal(back.uns["X_pca_streaming"]["explained_variance"], uns["explained_variance"])


def test_pca_streaming_bad_input_leaves_adata_untouched(log_adata):
    before = log_adata.copy()
    with pytest.raises(ValueError, match="n_components"):
        cf.tl.pca_streaming(log_adata, n_components=0, layer="log1p")
    with pytest.raises(ValueError, match="algorithm"):
        cf.tl.pca_streaming(log_adata, n_components=3, layer="log1p", algorithm="exact")
    assert set(log_adata.obsm) == set(before.obsm) and set(log_adata.uns) == set(before.uns)
    np.testing.assert_array_equal(log_adata.layers["log1p"], before.layers["log1p"])


def test_missing_batch_labels_are_named(log_adata):
    log_adata.obs["b"] = np.where(np.arange(log_adata.n_obs) % 2 == 0, "x", "y").astype(object)
    log_adata.obs.loc[log_adata.obs_names[:3], "b"] = np.nan
    before = set(log_adata.var)
    with pytest.raises(ValueError, match=r"obs\['b'\] has 3 missing value"):
        cf.pp.highly_variable_genes_streaming(log_adata, n_top_genes=10, batch_key="b")
    assert set(log_adata.var) == before
