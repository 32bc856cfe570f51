"""The GIL-free BLAS/LAPACK calls (:mod:`cellflux_gp_differential._blas`) against NumPy, and their checks."""

import threading

import numpy as np
import pytest

from cellflux_gp_differential import _blas

RNG = np.random.default_rng(0)
TOL = {np.float32: 2e-5, np.float64: 1e-12}


def _close(got, want, dtype):
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL[dtype] * scale * 10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("lower", [True, False])
@pytest.mark.parametrize("trans", [True, False])
@pytest.mark.parametrize("right", [True, False])
def test_trmm_matches_numpy(dtype, lower, trans, right):
    T = np.asfortranarray(RNG.standard_normal((6, 6)), dtype=dtype)
    B = np.asfortranarray(RNG.standard_normal((5, 6) if right else (6, 5)), dtype=dtype)
    tri = np.tril(T) if lower else np.triu(T)
    op = tri.T if trans else tri
    want = 0.5 * (B @ op if right else op @ B)
    got = _blas.trmm(T, B.copy(order="F"), alpha=0.5, lower=lower, trans=trans, right=right)
    _close(got, want, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("lower", [True, False])
@pytest.mark.parametrize("trans", [True, False])
@pytest.mark.parametrize("right", [True, False])
def test_trsm_inverts_trmm(dtype, lower, trans, right):
    T = np.asfortranarray(RNG.standard_normal((6, 6)) + 6 * np.eye(6), dtype=dtype)
    B = np.asfortranarray(RNG.standard_normal((5, 6) if right else (6, 5)), dtype=dtype)
    tri = np.tril(T) if lower else np.triu(T)
    op = np.linalg.inv((tri.T if trans else tri).astype(np.float64))
    want = 2.0 * (B @ op if right else op @ B)
    got = _blas.trsm(T, B.copy(order="F"), alpha=2.0, lower=lower, trans=trans, right=right)
    _close(got, want, dtype)


@pytest.mark.parametrize("trans", [True, False])
def test_syrk_fills_the_upper_triangle_and_accumulates(trans):
    A = np.asfortranarray(RNG.standard_normal((4, 7) if trans else (7, 4)))
    n = A.shape[1] if trans else A.shape[0]
    gram = A.T @ A if trans else A @ A.T
    C = np.asfortranarray(np.full((n, n), 3.0))
    _blas.syrk(A, C, alpha=2.0, beta=1.0, trans=trans)
    iu, il = np.triu_indices(n), np.tril_indices(n, -1)
    _close(C[iu], 2.0 * gram[iu] + 3.0, np.float64)
    assert np.all(C[il] == 3.0)  # the strictly lower triangle is not touched


def test_potrf_and_trtri_invert_a_positive_definite_matrix():
    A = RNG.standard_normal((8, 8))
    S = np.asfortranarray(A @ A.T + 8 * np.eye(8))
    U = S.copy(order="F")
    assert _blas.potrf(U) == 0
    assert np.all(np.tril(U, -1) == 0)
    _close(U.T @ U, S, np.float64)
    _close(U, np.linalg.cholesky(S).T, np.float64)
    assert _blas.trtri(U) == 0
    _close(U @ np.linalg.cholesky(S).T, np.eye(8), np.float64)
    L = np.asfortranarray(np.linalg.cholesky(S))
    assert _blas.trtri(L, lower=True) == 0
    _close(L, np.linalg.inv(np.linalg.cholesky(S)), np.float64)


def test_lower_inverse_ignores_the_upper_triangle_and_returns_a_triangular_inverse():
    from cellflux_gp_differential._regression import _lower_inverse

    A = RNG.standard_normal((9, 9))
    L = np.linalg.cholesky(A @ A.T + 9 * np.eye(9))
    garbage = L + np.triu(RNG.standard_normal((9, 9)), 1)  # only the lower triangle may be read
    for given in (garbage, np.asfortranarray(garbage)):
        inv = _lower_inverse(given)
        assert inv.flags.f_contiguous
        assert np.all(np.triu(inv, 1) == 0)
        _close(inv, np.linalg.inv(L), np.float64)
    assert np.array_equal(garbage, L + np.triu(garbage, 1))  # the input is not modified
    with pytest.raises(np.linalg.LinAlgError, match="info 2"):
        _lower_inverse(np.diag([1.0, 0.0, 1.0]))


def test_lapack_failures_are_reported_as_info():
    C = np.asfortranarray(np.diag([1.0, -1.0, 1.0]))
    assert _blas.potrf(C) == 2  # the leading minor of order 2 is not positive definite
    assert _blas.trtri(np.asfortranarray(np.diag([1.0, 0.0, 1.0]))) == 2


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("orders", ["CCC", "CFC", "FCF", "FFF", "CFF", "FCC"])
def test_matmul_any_memory_order(dtype, orders):
    a = np.array(RNG.standard_normal((5, 4)), dtype=dtype, order=orders[0])
    b = np.array(RNG.standard_normal((4, 3)), dtype=dtype, order=orders[1])
    out = np.zeros((5, 3), dtype=dtype, order=orders[2])
    assert _blas.matmul(a, b, out) is out
    _close(out, a @ b, dtype)
    _close(_blas.matmul(a[:, ::2], b[::2].astype(np.float64)), a[:, ::2] @ b[::2], dtype)  # strided: copied


def test_bad_operands_are_refused_before_any_call():
    F = np.asfortranarray(np.eye(3))
    with pytest.raises(ValueError, match="column-major"):
        _blas.trmm(np.eye(3), F.copy(order="F") + np.ones((3, 1)), lower=True)  # T row-major
    with pytest.raises(ValueError, match="float32"):
        _blas.trmm(F.astype(np.float32), F.copy(order="F"))
    with pytest.raises(ValueError, match="float32 and float64"):
        _blas.potrf(np.asfortranarray(np.eye(3, dtype=np.int64)))
    with pytest.raises(ValueError, match="conform"):
        _blas.trmm(F, np.asfortranarray(np.ones((4, 2))))
    with pytest.raises(ValueError, match="square"):
        _blas.potrf(np.asfortranarray(np.ones((3, 2))))
    frozen = F.copy(order="F")
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        _blas.syrk(F, frozen)
    with pytest.raises(ValueError, match="conform"):
        _blas.matmul(np.ones((2, 3)), np.ones((4, 2)))


def _progress_during(call) -> int:
    """Iterations a Python loop in this thread makes while another thread runs ``call``."""
    started, done = threading.Event(), threading.Event()

    def work():
        started.set()
        call()
        done.set()

    worker = threading.Thread(target=work)
    worker.start()
    started.wait()
    k = 0
    while not done.is_set():
        k += 1
    worker.join()
    return k


def test_calls_release_the_gil():
    """While one thread is inside ``dtrmm``, another keeps running Python code -- unlike SciPy's wrapper.

    SciPy's wrapper holds the GIL for the whole call, so the loop advances only in the moments before
    it (measured: a twelfth to a thirtieth of the iterations it makes alongside the GIL-free call). A
    relative comparison in one run, not a timing.
    """
    from scipy.linalg.blas import dtrmm

    n = 1000
    T = np.asfortranarray(np.tril(RNG.standard_normal((n, n))))
    B = np.asfortranarray(RNG.standard_normal((n, 10 * n)))
    free = _progress_during(lambda: _blas.trmm(T, B))
    held = _progress_during(lambda: dtrmm(1.0, T, B, overwrite_b=1))
    assert free > 3 * held
