"""The E15.5 mouse pancreas data (Bastidas-Ponce et al. 2019) with spliced and unspliced counts."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from .._env import DATA_DIR_ENV
from .._keys import TruthKey
from ._download import cache_dir, fetch

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["PANCREAS_URL", "pancreas"]

#: Where scVelo publishes the dataset (GEO GSE132188, processed into h5ad).
PANCREAS_URL = "https://github.com/theislab/scvelo_notebooks/raw/master/data/Pancreas/endocrinogenesis_day15.h5ad"
_FILENAME = "pancreas.h5ad"


def pancreas(
    path: str | Path | None = None,
    *,
    url: str = PANCREAS_URL,
    sha256: str | None = None,
    download: bool = True,
) -> AnnData:
    """Load the E15.5 mouse pancreatic endocrinogenesis data with spliced and unspliced counts.

    3,696 cells in 8 clusters (Ductal, Ngn3 low EP, Ngn3 high EP, Pre-endocrine, Beta, Alpha, Delta,
    Epsilon); ``X`` and ``layers["spliced"]`` hold spliced counts, ``layers["unspliced"]`` unspliced.

    The file is looked up in this order: ``path``; ``$CELLFLUX_DATA_DIR/pancreas.h5ad``; the
    download cache (``$CELLFLUX_CACHE_DIR``, default ``~/.cache/cellflux``); else it is downloaded
    from ``url`` into the cache and its SHA-256 recorded and checked on every later load.

    Parameters
    ----------
    path
        A local copy of the file.
    url
        Where to download from.
    sha256
        Expected SHA-256 digest of the download (checked when given).
    download
        Whether downloading is allowed; if not and no local copy exists, an error says where to put one.

    Returns
    -------
    The AnnData, read fully into memory.
    """
    import anndata as ad

    file = _locate(path, url=url, sha256=sha256, download=download)
    adata = ad.read_h5ad(file)
    missing = [f"layers[{k!r}]" for k in (TruthKey.SPLICED, TruthKey.UNSPLICED) if k not in adata.layers]
    if "clusters" not in adata.obs:
        missing.append("obs['clusters']")
    if missing:
        raise ValueError(f"{file} is not the pancreas dataset: it lacks {', '.join(missing)}.")
    return adata


def _locate(path: str | Path | None, *, url: str, sha256: str | None, download: bool) -> Path:
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"No pancreas file at {path}.")
        return path
    data_dir = os.environ.get(DATA_DIR_ENV)
    if data_dir:
        local = Path(data_dir) / _FILENAME
        if not local.is_file():
            raise FileNotFoundError(f"${DATA_DIR_ENV} is set to {data_dir}, but it has no {_FILENAME}.")
        return local
    cached = cache_dir() / _FILENAME
    if not download and not cached.is_file():
        raise FileNotFoundError(
            f"The pancreas data is not cached at {cached} and download=False; put a copy there or set "
            f"${DATA_DIR_ENV} to a folder holding {_FILENAME}."
        )
    return fetch(url, cached, sha256=sha256)
