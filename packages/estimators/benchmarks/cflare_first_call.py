"""One CFLARE run in a fresh process, as a user meets it: ``python cflare_first_call.py TOOL METHOD DATA_DIR``.

``TOOL`` is ``ours`` or ``cellrank``; ``METHOD`` is ``default`` (each package's own defaults:
``compute_eigendecomposition()`` then ``predict()``, i.e. CellRank's Leiden and our k-means, both with the
eigengap's number of eigenvectors) or ``kmeans``/``leiden`` (both with ``k=20``, ``use=4``). The data (a
transition matrix and the AnnData) are read and matplotlib's pyplot is imported (a notebook session has it;
CellRank's import loads it, and so does igraph's) before the clock starts. Prints one JSON line: the package's
import time, its first call (eigendecomposition and prediction), a second, warm call in the same process, and
the terminal states. ``run.py --cflare-cold`` starts this script repeatedly.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path


def main(tool: str, method: str, data_dir: Path) -> dict:
    import anndata as ad
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot
    from scipy import sparse

    t = sparse.load_npz(data_dir / "t.npz").tocsr()
    adata = ad.read_h5ad(data_dir / "adata.h5ad")
    kwargs = {} if method == "default" else {"use": 4, "method": method}
    warnings.simplefilter("ignore")
    t0 = time.perf_counter()
    if tool == "cellrank":
        import cellrank as cr

        def call():
            est = cr.estimators.CFLARE(cr.kernels.PrecomputedKernel(t, adata=adata))
            est.compute_eigendecomposition() if method == "default" else est.compute_eigendecomposition(k=20)
            est.predict(**kwargs)
            return est.terminal_states
    else:
        from cellflux_estimators import CFLARE

        def call():
            est = CFLARE(t, adata=adata)
            est.fit() if method == "default" else est.fit(k=20, **kwargs)
            return est.terminal_states

    t1 = time.perf_counter()
    states = call()
    t2 = time.perf_counter()
    call()
    t3 = time.perf_counter()
    codes = states.cat.codes.to_numpy()
    return {
        "tool": tool,
        "method": method,
        "import_s": t1 - t0,
        "first_call_s": t2 - t1,
        "warm_call_s": t3 - t2,
        "state_sizes": sorted((int((codes == i).sum()) for i in range(len(states.cat.categories))), reverse=True),
        "codes": codes.tolist(),  # -1: not in a terminal state
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2], Path(sys.argv[3]))))
