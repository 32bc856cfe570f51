"""DifferentialExpression.predict works through the cells in chunks; its outputs can live on disk."""

import os
import tempfile

import numpy as np
import pytest

from cellflux_gp_differential import DifferentialExpression
from cellflux_gp_differential._expression import PREDICT_KEYS as KEYS
from cellflux_gp_differential._outputs import chunk_rows


def _fit(arrays, **options):
    x, y, m1, m2, s = arrays["x"], arrays["y"], arrays["m1"], arrays["m2"], arrays["s"]
    model = DifferentialExpression(n_landmarks=100, random_state=0, use_empirical_variance=True, **options)
    return model.fit(x[m1], y[m1], x[m2], y[m2], condition1_sample_indices=s[m1], condition2_sample_indices=s[m2])


def test_chunks_give_the_one_chunk_results(arrays):
    model = _fit(arrays, store_arrays_on_disk=False)
    x = arrays["x"]
    whole = model._predict_cells(x, progress=False, rows=len(x))
    chunked = model._predict_cells(x, progress=False, rows=37)  # 17 chunks, the last of 8 cells
    assert set(chunked) == set(whole) == set(KEYS)
    for key in KEYS:
        assert chunked[key].shape == whole[key].shape
        # BLAS blocking: float64 rounding, or float32 rounding of the mixed-precision (default) outputs
        # (the fold changes and z-scores are differences of float32 values: 2e-5 of their largest value)
        single = model.precision == "mixed"
        atol = 2e-5 * np.abs(whole[key]).max() if single else 1e-12
        np.testing.assert_allclose(chunked[key], whole[key], rtol=0 if single else 1e-10, atol=atol, err_msg=key)
    np.testing.assert_allclose(whole["fold_change"], whole["condition2_smoothed"] - whole["condition1_smoothed"])
    # the default chunk holds ~256 MB of temporaries, whole prediction batches, at least one
    assert chunk_rows(2000, 500) == 1000 and chunk_rows(10**6, 500) == 500 and chunk_rows(10, 512) % 512 == 0


def test_outputs_on_disk_equal_those_in_memory(arrays, tmp_path):
    x = arrays["x"]
    in_memory = _fit(arrays, store_arrays_on_disk=False).predict(x, compute_mahalanobis=True, progress=False)
    folder = tmp_path / "de_outputs"
    on_disk = _fit(arrays, store_arrays_on_disk=True, disk_storage_dir=str(folder)).predict(
        x, compute_mahalanobis=True, progress=False
    )
    for key in KEYS[:-1]:
        assert isinstance(on_disk[key], np.memmap), key
        np.testing.assert_array_equal(np.asarray(on_disk[key]), in_memory[key])
        np.testing.assert_array_equal(np.load(folder / f"{key}.npy"), in_memory[key])  # readable later
    np.testing.assert_allclose(on_disk["mahalanobis_distances"], in_memory["mahalanobis_distances"], rtol=1e-12)


def test_temporary_files_are_not_left_behind_and_auto_mode_spills(arrays):
    x = arrays["x"]
    before = {f for f in os.listdir(tempfile.gettempdir()) if f.startswith("cellflux_")}
    result = _fit(arrays, store_arrays_on_disk=True).predict(x, progress=False)
    assert isinstance(result["fold_change"], np.memmap) and np.isfinite(result["fold_change"]).all()
    after = {f for f in os.listdir(tempfile.gettempdir()) if f.startswith("cellflux_")}
    assert after == before
    # None: on disk only when the outputs exceed max_memory_ratio of the available memory
    assert isinstance(_fit(arrays, max_memory_ratio=1e-12).predict(x, progress=False)["fold_change"], np.memmap)
    assert not isinstance(_fit(arrays).predict(x, progress=False)["fold_change"], np.memmap)


def test_bad_memory_ratio_is_refused():
    with pytest.raises(ValueError, match="max_memory_ratio"):
        DifferentialExpression(max_memory_ratio=0)
