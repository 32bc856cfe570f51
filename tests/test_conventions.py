"""Every registered function follows the suite's conventions, and everything it writes survives h5ad.

The functions come from the installed plugins (the suite's own and the dummy third-party one), so
this test covers each package as it lands. The checks are the public ones in
:mod:`cellflux.testing.conventions`, which third-party plugins run the same way.
"""

import pytest

from cellflux.testing.conventions import check_plugin_calls

CALLS = check_plugin_calls()


@pytest.mark.parametrize("call", CALLS, ids=str)
def test_registered_function_follows_conventions(call, simulated, tmp_path):
    adata = simulated(n_cells=300, n_genes=60, n_conditions=2, seed=0) if call.namespace != "pl" else None
    call.check(tmp_path, adata=adata)


def test_every_suite_plugin_is_checked():
    checked = {call.plugin for call in CALLS}
    assert {"kernels", "estimators", "gp_differential", "velocity_vae", "dummy"} <= checked
