"""Cached, checksummed downloads and the pancreas loader, against local files only."""

import anndata as ad
import numpy as np
import pytest
from scipy import sparse

from cellflux.datasets import pancreas
from cellflux.datasets._download import fetch, sha256_of


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "remote" / "file.bin"
    path.parent.mkdir()
    path.write_bytes(b"cellflux" * 1000)
    return path


def test_fetch_downloads_once_and_records_checksum(source, tmp_path):
    dest = tmp_path / "cache" / "file.bin"
    got = fetch(source.as_uri(), dest)
    assert got.read_bytes() == source.read_bytes()
    assert (tmp_path / "cache" / "file.bin.sha256").read_text().strip() == sha256_of(source)
    source.unlink()  # cached: no second download
    assert fetch(source.as_uri(), dest) == dest


def test_fetch_refuses_wrong_checksum(source, tmp_path):
    dest = tmp_path / "cache" / "file.bin"
    with pytest.raises(OSError, match="expected 00"):
        fetch(source.as_uri(), dest, sha256="00" * 32)
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []  # no partial file left behind


def test_fetch_detects_corrupted_cache(source, tmp_path):
    dest = tmp_path / "cache" / "file.bin"
    fetch(source.as_uri(), dest)
    dest.write_bytes(b"truncated")
    with pytest.raises(OSError, match="corrupt"):
        fetch(source.as_uri(), dest)


def test_fetch_reports_unreachable_source(tmp_path):
    with pytest.raises(OSError, match=r"Could not download .*CELLFLUX_DATA_DIR"):
        fetch((tmp_path / "missing.bin").as_uri(), tmp_path / "cache" / "x.bin")


def fake_pancreas(path):
    counts = sparse.csr_matrix(np.eye(4, 3, dtype=np.float32))
    adata = ad.AnnData(counts, layers={"spliced": counts, "unspliced": counts})
    adata.obs["clusters"] = ["Ductal", "Beta", "Alpha", "Delta"]
    adata.write_h5ad(path)
    return path


def test_pancreas_downloads_into_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("CELLFLUX_DATA_DIR", raising=False)
    monkeypatch.setenv("CELLFLUX_CACHE_DIR", str(tmp_path / "cache"))
    remote = fake_pancreas(tmp_path / "published.h5ad")
    adata = pancreas(url=remote.as_uri(), sha256=sha256_of(remote))
    assert adata.n_obs == 4
    assert (tmp_path / "cache" / "pancreas.h5ad").exists()


def test_pancreas_from_data_dir_and_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("CELLFLUX_DATA_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="has no pancreas.h5ad"):
        pancreas()
    fake_pancreas(tmp_path / "pancreas.h5ad")
    assert list(pancreas().obs["clusters"]) == ["Ductal", "Beta", "Alpha", "Delta"]
    monkeypatch.delenv("CELLFLUX_DATA_DIR")
    monkeypatch.setenv("CELLFLUX_CACHE_DIR", str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="download=False"):
        pancreas(download=False)


def test_pancreas_rejects_other_files(tmp_path):
    path = tmp_path / "other.h5ad"
    ad.AnnData(np.zeros((2, 2), dtype=np.float32)).write_h5ad(path)
    with pytest.raises(ValueError, match=r"lacks layers\['spliced'\], layers\['unspliced'\], obs\['clusters'\]"):
        pancreas(path)


@pytest.mark.shared_data
def test_shared_pancreas_through_environment(shared_data_dir, monkeypatch):
    if not (shared_data_dir / "pancreas.h5ad").exists():
        pytest.skip("pancreas.h5ad absent")
    monkeypatch.setenv("CELLFLUX_DATA_DIR", str(shared_data_dir))
    adata = pancreas()
    assert adata.shape == (3696, 2000)
    assert {"Ductal", "Alpha", "Beta", "Epsilon"} <= set(adata.obs["clusters"].cat.categories)
    assert adata.layers["unspliced"].sum() > 0
