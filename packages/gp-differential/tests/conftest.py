"""Shared fixtures: a small two-condition simulation with a log-normalised layer and PCA."""

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")


@pytest.fixture
def prepared(sim_adata):
    """600 cells x 120 genes, two conditions, three samples each, ``layers["log_normalized"]``, ``obsm["X_pca"]``."""
    from cellflux_gp_differential._examples import prepare

    prepare(sim_adata)
    return sim_adata


@pytest.fixture
def arrays(prepared):
    """Representation, expression, condition masks and sample labels of :func:`prepared`."""
    x = np.asarray(prepared.obsm["X_pca"])
    y = np.asarray(prepared.layers["log_normalized"])
    c = prepared.obs["condition"].astype(str).to_numpy()
    names = list(prepared.obs["condition"].cat.categories)
    s = prepared.obs["sample"].astype(str).to_numpy()
    return {"x": x, "y": y, "m1": c == names[0], "m2": c == names[1], "s": s, "names": names}
