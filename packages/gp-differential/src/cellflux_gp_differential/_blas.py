"""The few BLAS and LAPACK routines the engine calls from its threads, called without holding the GIL.

SciPy's Python wrappers (:mod:`scipy.linalg.blas`, :mod:`scipy.linalg.lapack`) keep the GIL for the
whole call, so two threads that each run ``dtrmm`` run one after the other (measured here: two
concurrent single-threaded ``dtrmm``/``dsyrk``/``sgemm`` calls took 2.0-2.2 times one call; NumPy's
``matmul`` 1.07 times). The engine fits the two conditions, and predicts chunks of cells, on threads
(:mod:`._threads`), so those wrappers serialised most of the work. The same routines' C entry points are
part of SciPy's public Cython API (:mod:`scipy.linalg.cython_blas`, :mod:`scipy.linalg.cython_lapack`,
exported as capsules); called through :mod:`ctypes`, which releases the GIL around a foreign call, two
threads run them side by side (1.04 times one call). Same library, same arithmetic: the results are
the ones SciPy's wrappers return.

Every routine here works in place on column-major (Fortran-ordered) arrays of one floating type, checks
them (a wrong layout or type is a ``ValueError``, never a call with bad pointers) and returns LAPACK's
``info`` where there is one. Only the upper or lower triangle named is read or written, as in BLAS.
"""

from __future__ import annotations

import ctypes
import importlib
from functools import cache

import numpy as np

__all__ = ["gemm", "matmul", "potrf", "syrk", "trmm", "trsm", "trtri"]

_PTR = ctypes.c_void_p
_PREFIX = {np.dtype(np.float64): ("d", ctypes.c_double), np.dtype(np.float32): ("s", ctypes.c_float)}
#: Pointer arguments of each routine (all Fortran arguments are passed by reference).
_N_ARGS = {"gemm": 13, "trmm": 11, "trsm": 11, "syrk": 10, "potrf": 5, "trtri": 6}


@cache
def _routine(name: str):
    """The C entry point of SciPy's ``name`` (``"dtrmm"``, ``"dpotrf"``, ...) as a ctypes function."""
    library = "blas" if name[1:] in ("gemm", "trmm", "trsm", "syrk") else "lapack"
    capsule = importlib.import_module(f"scipy.linalg.cython_{library}").__pyx_capi__[name]
    get_name = ctypes.PYFUNCTYPE(ctypes.c_char_p, ctypes.py_object)(("PyCapsule_GetName", ctypes.pythonapi))
    get_pointer = ctypes.PYFUNCTYPE(_PTR, ctypes.py_object, ctypes.c_char_p)(("PyCapsule_GetPointer", ctypes.pythonapi))
    pointer = get_pointer(capsule, get_name(capsule))
    return ctypes.CFUNCTYPE(None, *[_PTR] * _N_ARGS[name[1:]])(pointer)


def _char(flag: bool, yes: str, no: str):
    return ctypes.byref(ctypes.c_char((yes if flag else no).encode()))


def _int(value: int):
    return ctypes.byref(ctypes.c_int(int(value)))


def _check(array: np.ndarray, dtype: np.dtype, what: str, *, square: bool = False, write: bool = False) -> None:
    if not isinstance(array, np.ndarray) or array.ndim != 2:
        raise ValueError(f"{what} must be a 2-d numpy array.")
    if array.dtype != dtype:
        raise ValueError(f"{what} must be {dtype}, got {array.dtype}.")
    if not array.flags.f_contiguous:
        raise ValueError(f"{what} must be column-major (Fortran order).")
    if square and array.shape[0] != array.shape[1]:
        raise ValueError(f"{what} must be square, got shape {array.shape}.")
    if write and not array.flags.writeable:
        raise ValueError(f"{what} is written in place and must be writeable.")


def _kind(array: np.ndarray) -> tuple[str, type]:
    try:
        return _PREFIX[array.dtype]
    except KeyError:
        raise ValueError(f"Only float32 and float64 arrays are supported, got {array.dtype}.") from None


def gemm(
    A: np.ndarray,
    B: np.ndarray,
    C: np.ndarray,
    *,
    alpha: float = 1.0,
    beta: float = 0.0,
    trans_a: bool = False,
    trans_b: bool = False,
) -> np.ndarray:
    """``C := alpha op(A) op(B) + beta C`` in place; returns ``C``.

    ``op(X)`` is ``X`` or, with ``trans_a``/``trans_b``, ``X^T``.
    """
    prefix, scalar = _kind(C)
    _check(A, C.dtype, "A")
    _check(B, C.dtype, "B")
    _check(C, C.dtype, "C", write=True)
    m, k = A.shape[::-1] if trans_a else A.shape
    k2, n = B.shape[::-1] if trans_b else B.shape
    if k != k2 or C.shape != (m, n):
        raise ValueError(f"op(A) {(m, k)}, op(B) {(k2, n)} and C {C.shape} do not conform.")
    if C.size:
        _routine(prefix + "gemm")(
            _char(trans_a, "T", "N"),
            _char(trans_b, "T", "N"),
            _int(m),
            _int(n),
            _int(k),
            ctypes.byref(scalar(alpha)),
            A.ctypes.data_as(_PTR),
            _int(max(1, A.shape[0])),
            B.ctypes.data_as(_PTR),
            _int(max(1, B.shape[0])),
            ctypes.byref(scalar(beta)),
            C.ctypes.data_as(_PTR),
            _int(max(1, m)),
        )
    return C


def _column_major(x: np.ndarray, dtype: np.dtype) -> tuple[np.ndarray, bool]:
    """``x`` as a column-major operand: ``(x, False)``, or ``(x^T, True)`` for a row-major ``x`` (no copies)."""
    if x.dtype == dtype and x.flags.f_contiguous:
        return x, False
    if x.dtype == dtype and x.flags.c_contiguous:
        return x.T, True
    return np.asfortranarray(x, dtype=dtype), False


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None, *, dtype=None) -> np.ndarray:
    """``a @ b`` by :func:`gemm` for 2-d operands of any memory order, without copying contiguous ones.

    Parameters
    ----------
    a, b
        ``(m, k)`` and ``(k, n)`` arrays (converted to ``dtype`` if they are not of it).
    out
        A C- or F-contiguous ``(m, n)`` array to write into (its dtype is the computation's).
    dtype
        float32 or float64 when ``out`` is not given (default: float64).

    Returns
    -------
    ``out``, or a new row-major array.
    """
    dtype = np.dtype(out.dtype if out is not None else (dtype or np.float64))
    if out is None:
        out = np.empty((a.shape[0], b.shape[1]), dtype=dtype)
    if out.flags.f_contiguous:  # out = op(A) op(B)
        A, ta = _column_major(a, dtype)
        B, tb = _column_major(b, dtype)
        gemm(A, B, out, trans_a=ta, trans_b=tb)
    elif out.flags.c_contiguous:  # out^T = b^T a^T, out^T column-major
        Bt, tb = _column_major(b.T, dtype)
        At, ta = _column_major(a.T, dtype)
        gemm(Bt, At, out.T, trans_a=tb, trans_b=ta)
    else:
        raise ValueError("out must be C- or F-contiguous.")
    return out


def _triangular(
    routine: str, T: np.ndarray, B: np.ndarray, alpha: float, lower: bool, trans: bool, right: bool
) -> np.ndarray:
    prefix, scalar = _kind(B)
    _check(T, B.dtype, "T", square=True)
    _check(B, B.dtype, "B", write=True)
    m, n = B.shape
    if T.shape[0] != (n if right else m):
        raise ValueError(f"T {T.shape} and B {B.shape} do not conform.")
    if B.size:
        _routine(prefix + routine)(
            _char(right, "R", "L"),
            _char(lower, "L", "U"),
            _char(trans, "T", "N"),
            _char(False, "U", "N"),
            _int(m),
            _int(n),
            ctypes.byref(scalar(alpha)),
            T.ctypes.data_as(_PTR),
            _int(max(1, T.shape[0])),
            B.ctypes.data_as(_PTR),
            _int(max(1, m)),
        )
    return B


def trmm(
    T: np.ndarray, B: np.ndarray, *, alpha: float = 1.0, lower: bool = True, trans: bool = False, right: bool = False
) -> np.ndarray:
    """``B := alpha op(T) B`` (``alpha B op(T)`` with ``right``) for a triangular ``T``, in place; returns ``B``.

    ``op(T)`` is ``T`` or, with ``trans``, ``T^T``; ``lower`` says which triangle of ``T`` is read.
    """
    return _triangular("trmm", T, B, alpha, lower, trans, right)


def trsm(
    T: np.ndarray, B: np.ndarray, *, alpha: float = 1.0, lower: bool = True, trans: bool = False, right: bool = False
) -> np.ndarray:
    """``B := alpha op(T)^{-1} B`` (``alpha B op(T)^{-1}`` with ``right``) for a triangular ``T``, in place.

    Returns ``B``. ``op(T)`` and ``lower`` as in :func:`trmm`; a zero on the diagonal of ``T`` gives
    infinities, as in BLAS.
    """
    return _triangular("trsm", T, B, alpha, lower, trans, right)


def syrk(A: np.ndarray, C: np.ndarray, *, alpha: float = 1.0, beta: float = 0.0, trans: bool = False) -> np.ndarray:
    """Upper triangle of ``C := alpha A A^T + beta C`` (``alpha A^T A + beta C`` with ``trans``), in place.

    The strictly lower triangle of ``C`` is not touched. Returns ``C``.
    """
    prefix, scalar = _kind(C)
    _check(A, C.dtype, "A")
    _check(C, C.dtype, "C", square=True, write=True)
    n, k = (A.shape[1], A.shape[0]) if trans else A.shape
    if C.shape[0] != n:
        raise ValueError(f"A {A.shape} and C {C.shape} do not conform (trans={trans}).")
    if n:
        _routine(prefix + "syrk")(
            _char(False, "L", "U"),
            _char(trans, "T", "N"),
            _int(n),
            _int(k),
            ctypes.byref(scalar(alpha)),
            A.ctypes.data_as(_PTR),
            _int(max(1, A.shape[0])),
            ctypes.byref(scalar(beta)),
            C.ctypes.data_as(_PTR),
            _int(max(1, n)),
        )
    return C


def potrf(C: np.ndarray) -> int:
    """Upper Cholesky factor ``U`` (``U^T U = C``) of the upper triangle of ``C``, written over it.

    The strictly lower triangle is set to zero (``C`` then holds ``U`` exactly). Returns LAPACK's
    ``info`` (0: success; ``i > 0``: the leading minor of order ``i`` is not positive definite).
    """
    prefix, _ = _kind(C)
    _check(C, C.dtype, "C", square=True, write=True)
    n = C.shape[0]
    info = ctypes.c_int(0)
    if n:
        _routine(prefix + "potrf")(_char(False, "L", "U"), _int(n), C.ctypes.data_as(_PTR), _int(n), ctypes.byref(info))
    for j in range(n - 1):  # column j's strictly lower part is contiguous in column-major order
        C[j + 1 :, j] = 0.0
    return int(info.value)


def trtri(U: np.ndarray, *, lower: bool = False) -> int:
    """Inverse of the triangular ``U`` (its ``lower`` or upper triangle), written over that triangle.

    Returns LAPACK's ``info`` (0: success; ``i > 0``: ``U[i-1, i-1]`` is zero).
    """
    prefix, _ = _kind(U)
    _check(U, U.dtype, "U", square=True, write=True)
    n = U.shape[0]
    info = ctypes.c_int(0)
    if n:
        _routine(prefix + "trtri")(
            _char(lower, "L", "U"),
            _char(False, "U", "N"),
            _int(n),
            U.ctypes.data_as(_PTR),
            _int(n),
            ctypes.byref(info),
        )
    return int(info.value)
