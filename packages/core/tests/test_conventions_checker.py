"""The public convention checker catches what it promises to catch, and passes a correct function."""

import numpy as np
import pytest

from cellflux.results import Results, resolve_target
from cellflux.testing.conventions import ConventionError, check_plugin_calls, check_signature, check_writer


def good(adata, *, key_added="good", copy=False, mod=None, overwrite=False):
    """Score cells.

    Returns
    -------
    Sets ``obs[key_added]`` and ``uns[key_added]``.
    """
    target = resolve_target(adata, mod=mod, copy=copy)
    results = Results(key_added, function="tl.good", plugin="cellflux", params={})
    results.add("obs", key_added, np.arange(target.adata.n_obs, dtype=float))
    results.write(target.adata, overwrite=overwrite)
    return target.returned()


def positional_option(adata, key_added="x", copy=False, mod=None):
    """Bad.

    Returns
    -------
    Nothing.
    """


def no_returns(adata, *, key_added="x", copy=False, mod=None):
    """Bad: no Returns section."""


def undocumented_slot(adata, *, key_added="bad", copy=False, mod=None, overwrite=False):
    """Writes obs but documents only uns.

    Returns
    -------
    Sets ``uns[key_added]``.
    """
    target = resolve_target(adata, mod=mod, copy=copy)
    results = Results(key_added, function="tl.bad", plugin="cellflux", params={})
    results.add("obs", key_added, np.zeros(target.adata.n_obs))
    results.write(target.adata, overwrite=overwrite)
    return target.returned()


def overwrites(adata, *, key_added="bad", copy=False, mod=None):
    """Writes past existing results.

    Returns
    -------
    Sets ``obs[key_added]`` and ``uns[key_added]``.
    """
    target = resolve_target(adata, mod=mod, copy=copy)
    results = Results(key_added, function="tl.bad", plugin="cellflux", params={})
    results.add("obs", key_added, np.zeros(target.adata.n_obs))
    results.write(target.adata, overwrite=True)
    return target.returned()


def test_a_correct_function_passes(sim_adata, tmp_path):
    check_signature(good, "tl")
    written = check_writer(good, sim_adata, {}, tmp_path)
    assert written == {"obs": ["good"], "uns": ["good"]}


@pytest.mark.parametrize(
    ("func", "message"),
    [(positional_option, "must be keyword-only"), (no_returns, "no Returns section")],
)
def test_signature_violations_are_named(func, message):
    with pytest.raises(ConventionError, match=message):
        check_signature(func, "tl")


@pytest.mark.parametrize(
    ("func", "message"),
    [(undocumented_slot, "writes obs but its Returns section"), (overwrites, "overwrote existing results")],
)
def test_writer_violations_are_named(func, message, sim_adata, tmp_path):
    with pytest.raises(ConventionError, match=message):
        check_writer(func, sim_adata, {}, tmp_path)


def test_unknown_plugin_is_a_clear_error():
    with pytest.raises(ValueError, match="No loaded plugin named 'no_such_plugin'"):
        check_plugin_calls("no_such_plugin")
