"""Kernels and the kernel algebra: a small expression tree over row-stochastic CSR matrices.

``0.8 * vk + 0.2 * ck`` builds ``KernelAdd(KernelMul(Constant(0.8), vk), KernelMul(Constant(0.2), ck))``.
Computing an expression reads every *unique* base kernel's matrix once (computing it with defaults
if it has none), weights the terms of a sum by its constants (each sum holds its own copies,
normalised to add up to 1 when the sum is built; the user's constants are never changed),
multiplies element-wise in products and row-normalises the result.
"""

from __future__ import annotations

import abc
import copy as _copy
import logging
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import sparse

from .._engine._csr import as_csr, check_row_stochastic, row_normalize
from .._keys import Key

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["Constant", "Kernel", "KernelAdd", "KernelExpression", "KernelMul"]

logger = logging.getLogger(__name__)

_NUMBER = (int, float, np.integer, np.floating)


class KernelExpression(abc.ABC):
    """A kernel or an expression of kernels; what estimators consume.

    Every expression has :attr:`transition_matrix` (row-stochastic CSR), :attr:`adata`,
    :attr:`backward` and :attr:`params`.
    """

    _transition_matrix: sparse.csr_matrix | None = None

    # -- what every expression provides ------------------------------------------------------------
    @property
    @abc.abstractmethod
    def adata(self) -> AnnData:
        """The AnnData the kernel reads from."""

    @property
    @abc.abstractmethod
    def backward(self) -> bool | None:
        """Direction: ``False`` forward, ``True`` backward, ``None`` undirected."""

    @property
    @abc.abstractmethod
    def kernels(self) -> tuple[Kernel, ...]:
        """The unique base kernels of this expression, in order of appearance."""

    @property
    @abc.abstractmethod
    def params(self) -> dict[str, Any]:
        """Parameters of the last computation."""

    @abc.abstractmethod
    def compute_transition_matrix(self, *args: Any, **kwargs: Any) -> KernelExpression:
        """Compute :attr:`transition_matrix` and return ``self``."""

    @abc.abstractmethod
    def copy(self, *, deep: bool = False) -> KernelExpression:
        """A copy sharing :attr:`adata` (copied too with ``deep=True``)."""

    @abc.abstractmethod
    def __invert__(self) -> KernelExpression:
        """Flip the direction in place, drop the computed matrix and return ``self``."""

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_cells, n_cells)``."""
        n = self.adata.n_obs
        return n, n

    @property
    def transition_matrix(self) -> sparse.csr_matrix:
        """The row-stochastic CSR transition matrix (computed with defaults if not yet computed)."""
        if self._transition_matrix is None:
            logger.info("Computing the transition matrix of %s with default parameters.", self._short())
            self.compute_transition_matrix()
        return self._transition_matrix

    def _short(self) -> str:
        return type(self).__name__

    # -- algebra -----------------------------------------------------------------------------------
    def __add__(self, other: Any) -> KernelExpression:
        if not isinstance(other, KernelExpression) or isinstance(other, Constant):
            return NotImplemented
        return KernelAdd._build(self, other)

    def __radd__(self, other: Any) -> KernelExpression:
        if not isinstance(other, KernelExpression) or isinstance(other, Constant):
            return NotImplemented
        return KernelAdd._build(other, self)

    def __mul__(self, other: Any) -> KernelExpression:
        if isinstance(other, _NUMBER):
            return KernelMul._build(Constant(other), self)
        if not isinstance(other, KernelExpression):
            return NotImplemented
        return KernelMul._build(self, other)

    def __rmul__(self, other: Any) -> KernelExpression:
        if isinstance(other, _NUMBER):
            return KernelMul._build(Constant(other), self)
        if not isinstance(other, KernelExpression):
            return NotImplemented
        return KernelMul._build(other, self)

    # -- AnnData -----------------------------------------------------------------------------------
    def write_to_adata(self, key: str | None = None, *, overwrite: bool = False) -> str:
        """Write :attr:`transition_matrix` to ``adata.obsp[key]`` and its parameters to ``adata.uns[key]``.

        Parameters
        ----------
        key
            Where to write; by default ``"T_fwd"`` (``"T_bwd"`` for a backward kernel).
        overwrite
            Replace an existing matrix instead of refusing to.

        Returns
        -------
        The key written: ``obsp[key]`` holds the matrix, ``uns[key]`` the parameters (``"params"``),
        how to rebuild the kernel (``"init"``, ``"kernel"``), the expression (``"expression"``)
        and the provenance.
        """
        from cellflux.results import Results

        key = Key.transition(self.backward, key)
        results = Results(
            key, function="kernels.write_to_adata", plugin="cellflux-kernels", params=_storable(self.params)
        )
        results.add("obsp", key, self.transition_matrix.copy())
        results.add(
            "uns",
            key,
            {
                Key.KERNEL: type(self).__name__,
                Key.INIT: _storable(self._init_kwargs()),
                Key.EXPRESSION: repr(self),
                "backward": "none" if self.backward is None else bool(self.backward),
            },
        )
        results.write(self.adata, overwrite=overwrite)
        return key

    def _init_kwargs(self) -> dict[str, Any]:
        return {}

    # -- beyond the matrix -------------------------------------------------------------------------
    def compute_projection(
        self,
        basis: str = "umap",
        *,
        key_added: str | None = None,
        connectivities: sparse.spmatrix | None = None,
        overwrite: bool = False,
    ) -> np.ndarray:
        """Project :attr:`transition_matrix` onto an embedding (arrows for plotting).

        Parameters
        ----------
        basis
            ``adata.obsm[f"X_{basis}"]`` (or ``adata.obsm[basis]``); only the first two dimensions are used.
        key_added
            Where to write: ``obsm[key_added]``; default ``f"{T_fwd|T_bwd}_{basis}"``.
        connectivities
            Neighbourhoods to project over; default the first kNN-based base kernel's connectivities.
        overwrite
            Replace an existing projection.

        Returns
        -------
        The projection, shape ``(n_cells, 2)``, also written to ``obsm[key_added]`` with its parameters in
        ``uns[key_added]``.
        """
        from ._projection import compute_projection

        return compute_projection(
            self, basis=basis, key_added=key_added, connectivities=connectivities, overwrite=overwrite
        )

    def simulate_random_walks(
        self,
        n_sims: int = 100,
        *,
        max_iter: int | float = 0.25,
        seed: int | None = None,
        start_ixs: Any = None,
        stop_ixs: Any = None,
        successive_hits: int = 0,
    ) -> list[np.ndarray]:
        """Simulate random walks on :attr:`transition_matrix`.

        Parameters
        ----------
        n_sims
            Number of walks.
        max_iter
            Maximum number of steps; a float in ``(0, 1]`` is a fraction of the number of cells.
        seed
            Random seed.
        start_ixs
            Cells to start from (uniformly): obs names, integer indices, or ``{obs_key: values}`` where
            values are categories or a ``(low, high)`` range of a numeric column. All cells by default.
        stop_ixs
            Cells that stop a walk, in the same forms.
        successive_hits
            How many further successive visits of ``stop_ixs`` cells stop a walk (0: the first visit).

        Returns
        -------
        One array of visited cell indices per walk.
        """
        from ._walks import simulate_random_walks

        return simulate_random_walks(
            self,
            n_sims=n_sims,
            max_iter=max_iter,
            seed=seed,
            start_ixs=start_ixs,
            stop_ixs=stop_ixs,
            successive_hits=successive_hits,
        )

    def plot_projection(self, basis: str = "umap", **kwargs: Any) -> Any:
        """Plot the projection (computed if missing) as streamlines or arrows (``cf.pl.kernel_projection``)."""
        from .._plotting import projection

        key = Key.transition(self.backward)
        if Key.projection(key, basis) not in self.adata.obsm:
            self.compute_projection(basis=basis)
        return projection(self.adata, key=key, basis=basis, **kwargs)

    def plot_single_flow(self, cluster_key: str, cluster: str, time_key: str | None = None, **kwargs: Any) -> Any:
        """Draw how the mass of ``cluster`` flows over time points; see :func:`cellflux_kernels.pl.single_flow`.

        ``time_key`` defaults to a :class:`~cellflux_kernels.RealTimeKernel`'s own time key.
        """
        from .._plot_flow import single_flow

        time_key = time_key if time_key is not None else getattr(self, "_time_key", None)
        if time_key is None:
            raise ValueError("Pass time_key: the obs column with the time points.")
        return single_flow(
            self.adata,
            cluster_key=cluster_key,
            time_key=time_key,
            cluster=cluster,
            matrix=self.transition_matrix,
            **kwargs,
        )

    def plot_random_walks(
        self, n_sims: int = 100, *, basis: str = "umap", seed: int | None = None, **kwargs: Any
    ) -> Any:
        """Simulate random walks and draw them on an embedding; see :func:`cellflux_kernels.pl.random_walks`."""
        from .._plotting import draw_random_walks

        walk_kwargs = {
            k: kwargs.pop(k) for k in ("max_iter", "start_ixs", "stop_ixs", "successive_hits") if k in kwargs
        }
        walks = self.simulate_random_walks(n_sims, seed=seed, **walk_kwargs)
        return draw_random_walks(self.adata, walks, basis=basis, **kwargs)


def _storable(params: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters h5ad can store: None dropped, callables named, nested dicts kept."""
    out: dict[str, Any] = {}
    for k, v in params.items():
        if v is None:
            continue
        if isinstance(v, Mapping):
            out[str(k)] = _storable(v)
        elif callable(v) and not isinstance(v, np.ndarray):
            out[str(k)] = f"{getattr(v, '__module__', '')}.{getattr(v, '__qualname__', repr(v))}".lstrip(".")
        elif (
            isinstance(v, (np.ndarray, list, tuple))
            and len(v)
            and not isinstance(np.asarray(v).flat[0], (str, np.str_, int, float, bool, np.generic))
        ):
            out[str(k)] = repr(v)
        else:
            out[str(k)] = v
    return out


class Kernel(KernelExpression):
    """Base class of the kernels that compute a matrix from AnnData.

    Parameters
    ----------
    adata
        The annotated data.
    backward
        Direction of the process (ignored by undirected kernels).
    """

    #: whether ``backward`` means anything for this kernel
    directed: bool = True
    #: whether ``~kernel`` can flip the direction
    invertible: bool = True
    #: parameters that every computation records and that may be ``None`` (dropped on write, restored on read)
    _nullable_params: tuple[str, ...] = ()

    def __init__(self, adata: AnnData, *, backward: bool = False) -> None:
        from anndata import AnnData as _AnnData

        if not isinstance(adata, _AnnData):
            raise TypeError(f"Expected an AnnData, got {type(adata).__name__}.")
        if not isinstance(backward, (bool, np.bool_)):
            raise TypeError(f"backward must be a bool, got {type(backward).__name__}.")
        self._adata = adata
        self._backward = bool(backward)
        self._transition_matrix = None
        self._params: dict[str, Any] = {}

    @property
    def adata(self) -> AnnData:
        """The AnnData the kernel reads from."""
        return self._adata

    @property
    def backward(self) -> bool | None:
        """Direction of the process (``None`` for undirected kernels)."""
        return self._backward if self.directed else None

    @property
    def kernels(self) -> tuple[Kernel, ...]:
        """``(self,)``."""
        return (self,)

    @property
    def params(self) -> dict[str, Any]:
        """Parameters of the last :meth:`compute_transition_matrix` (empty before)."""
        return self._params

    def _set_transition_matrix(
        self, matrix: sparse.spmatrix, params: dict[str, Any], *, normalize: bool = True
    ) -> None:
        """Store ``matrix`` (row-normalised if asked, then checked) with its ``params``."""
        matrix = as_csr(matrix)
        if matrix.shape != self.shape:
            raise ValueError(f"The transition matrix has shape {matrix.shape}, expected {self.shape}.")
        if np.any(matrix.data < 0):
            raise ValueError("The transition matrix has negative entries; it cannot be row-normalised.")
        if normalize and not np.allclose(np.asarray(matrix.sum(axis=1)).ravel(), 1.0, rtol=0, atol=1e-12):
            matrix = row_normalize(matrix)
        check_row_stochastic(matrix, name=f"transition matrix of {type(self).__name__}")
        self._transition_matrix = matrix
        self._params = dict(params)

    def copy(self, *, deep: bool = False) -> Kernel:
        """A copy with its own state, sharing :attr:`adata` (copied with ``deep=True``)."""
        adata = self._adata
        try:
            self._adata = None  # type: ignore[assignment]
            new = _copy.deepcopy(self)
        finally:
            self._adata = adata
        new._adata = adata.copy() if deep else adata
        return new

    def __invert__(self) -> Kernel:
        """Flip :attr:`backward` in place, drop the computed matrix and return ``self``."""
        if self.directed:
            self._backward = not self._backward
            self._transition_matrix = None
            self._params = {}
            self._on_invert()
        return self

    def _on_invert(self) -> None:
        """Hook for kernels that cache direction-dependent state."""

    def _init_kwargs(self) -> dict[str, Any]:
        return {"backward": self._backward} if self.directed else {}

    @classmethod
    def from_adata(cls, adata: AnnData, key: str, *, copy: bool = False) -> Kernel:
        """Rebuild a kernel written with :meth:`write_to_adata`.

        Parameters
        ----------
        adata
            The AnnData holding ``obsp[key]`` and ``uns[key]``.
        key
            The key given to :meth:`write_to_adata`.
        copy
            Copy the matrix instead of sharing it with ``adata``.

        Returns
        -------
        A kernel of this class with the stored matrix and parameters.
        """
        if key not in adata.obsp:
            raise KeyError(
                f"adata.obsp[{key!r}] is missing; write a kernel there with kernel.write_to_adata(key={key!r})."
            )
        info = adata.uns.get(key, {})
        if Key.INIT not in info or "params" not in info:
            raise KeyError(f"adata.uns[{key!r}] lacks the kernel's 'init'/'params'; was it written by write_to_adata?")
        kernel = cls(adata, **dict(info[Key.INIT]))
        matrix = adata.obsp[key]
        params = _to_python(info["params"])
        # h5ad cannot store None, so write_to_adata drops it: restore the parameters whose None means something
        for name in cls._nullable_params:
            params.setdefault(name, None)
        kernel._set_transition_matrix(matrix.copy() if copy else matrix, params)
        return kernel

    def _format_params(self) -> str:
        parts = [f"n={self.shape[0]}"]
        for k, v in self._params.items():
            if isinstance(v, (float, np.floating)):
                parts.append(f"{k}={round(float(v), 3)}")
            elif isinstance(v, Mapping):
                continue
            else:
                parts.append(f"{k}={v}")
        return ", ".join(parts)

    def __repr__(self) -> str:
        prefix = "~" if self.backward else ""
        return f"{prefix}<{type(self).__name__}[{self._format_params()}]>"


def _to_python(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _to_python(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value


class Constant(KernelExpression):
    """A positive scalar in a kernel expression (normalised within a sum once computed)."""

    def __init__(self, value: float) -> None:
        if not isinstance(value, _NUMBER) or isinstance(value, (bool, np.bool_)):
            raise TypeError(f"A kernel constant must be a number, got {type(value).__name__}.")
        if not np.isfinite(value) or value <= 0:
            raise ValueError(f"A kernel constant must be positive and finite, got {value}.")
        self.value = float(value)

    @property
    def adata(self) -> AnnData:  # pragma: no cover - constants have no data
        raise AttributeError("A constant has no AnnData.")

    @property
    def backward(self) -> None:
        """``None``: a constant has no direction."""
        return None

    @property
    def kernels(self) -> tuple[Kernel, ...]:
        """``()``."""
        return ()

    @property
    def params(self) -> dict[str, Any]:
        """``{"value": value}``."""
        return {"value": self.value}

    def compute_transition_matrix(self, *args: Any, **kwargs: Any) -> Constant:
        """Nothing to compute."""
        return self

    def copy(self, *, deep: bool = False) -> Constant:
        """A new constant of the same value."""
        return Constant(self.value)

    def __invert__(self) -> Constant:
        return self

    @property
    def transition_matrix(self) -> float:  # type: ignore[override]
        """The constant's value."""
        return self.value

    def __repr__(self) -> str:
        return repr(round(self.value, 3))

    # constants combine with numbers and each other into constants
    def __mul__(self, other: Any) -> KernelExpression:
        if isinstance(other, _NUMBER):
            return Constant(self.value * other)
        if isinstance(other, Constant):
            return Constant(self.value * other.value)
        if isinstance(other, KernelExpression):
            return KernelMul._build(self, other)
        return NotImplemented

    __rmul__ = __mul__


class _Nary(KernelExpression):
    """An n-ary node; its children are kernels, constants or other nodes."""

    _symbol = "?"

    def __init__(self, *children: KernelExpression) -> None:
        if not children:
            raise ValueError("An expression needs at least one kernel.")
        self._children = tuple(children)
        self._transition_matrix = None
        self._validate()

    def _validate(self) -> None:
        bases = self.kernels
        if not bases:
            raise ValueError("An expression must contain at least one kernel (not only constants).")
        first = bases[0].adata
        for k in bases[1:]:
            if k.adata is not first:
                raise ValueError(
                    f"Cannot combine {k._short()} and {bases[0]._short()}: they are built on different AnnData objects "
                    f"({first.n_obs} and {k.adata.n_obs} cells). Build every kernel on the same AnnData."
                )
        directions = {k.backward for k in bases} - {None}
        if len(directions) > 1:
            raise ValueError("Cannot combine forward and backward kernels; invert one of them with `~kernel`.")

    def __iter__(self) -> Iterator[KernelExpression]:
        return iter(self._children)

    def __len__(self) -> int:
        return len(self._children)

    def __getitem__(self, ix: int) -> KernelExpression:
        return self._children[ix]

    @property
    def adata(self) -> AnnData:
        """The AnnData shared by every base kernel."""
        return self.kernels[0].adata

    @property
    def backward(self) -> bool | None:
        """The direction of the directed base kernels (``None`` if all are undirected)."""
        directions = {k.backward for k in self.kernels} - {None}
        return directions.pop() if directions else None

    @property
    def kernels(self) -> tuple[Kernel, ...]:
        """The unique base kernels, in order of appearance."""
        seen: dict[int, Kernel] = {}
        for child in self._children:
            for k in child.kernels:
                seen.setdefault(id(k), k)
        return tuple(seen.values())

    @property
    def params(self) -> dict[str, Any]:
        """``{"<KernelName>:<i>": params}`` for every unique base kernel."""
        return {f"{type(k).__name__}:{i}": dict(k.params) for i, k in enumerate(self.kernels)}

    def compute_transition_matrix(self) -> _Nary:
        """Combine the base kernels' matrices (each read once) into this expression's matrix."""
        cache: dict[int, sparse.csr_matrix] = {}
        for k in self.kernels:
            cache[id(k)] = k.transition_matrix
        matrix = self._evaluate(cache, top=True)
        if isinstance(matrix, float):
            raise ValueError("The expression evaluates to a constant.")
        matrix = row_normalize(as_csr(matrix))
        check_row_stochastic(matrix, name=f"transition matrix of {self!r}")
        self._transition_matrix = matrix
        return self

    @abc.abstractmethod
    def _evaluate(self, cache: dict[int, sparse.csr_matrix], *, top: bool = False) -> sparse.csr_matrix | float:
        """The (unnormalised) matrix of this node."""

    def copy(self, *, deep: bool = False) -> _Nary:
        """A structural copy; kernels shared within the expression stay shared in the copy."""
        memo: dict[int, KernelExpression] = {}
        return self._copy_with(memo, deep)

    def _copy_with(self, memo: dict[int, KernelExpression], deep: bool) -> _Nary:
        children = []
        for child in self._children:
            if isinstance(child, _Nary):
                children.append(child._copy_with(memo, deep))
            elif id(child) in memo:
                children.append(memo[id(child)])
            else:
                memo[id(child)] = child.copy(deep=False)
                children.append(memo[id(child)])
        new = type(self).__new__(type(self))
        _Nary.__init__(new, *children)
        if deep:
            adata = self.adata.copy()
            for k in new.kernels:
                k._adata = adata
        return new

    def __invert__(self) -> _Nary:
        """Invert every unique base kernel in place, drop the computed matrix and return ``self``."""
        for k in self.kernels:
            if k.directed and k.invertible:
                k.__invert__()
        self._transition_matrix = None
        return self

    def _child_repr(self, child: KernelExpression) -> str:
        return repr(child)

    def __repr__(self) -> str:
        inner = f" {self._symbol} ".join(self._child_repr(c) for c in self._children)
        return f"({inner})"

    def _short(self) -> str:
        return repr(self)


def _multiply(a: sparse.csr_matrix | float, b: sparse.csr_matrix | float) -> sparse.csr_matrix | float:
    if isinstance(a, float) and isinstance(b, float):
        return a * b
    if isinstance(a, float):
        return b * a
    if isinstance(b, float):
        return a * b
    return sparse.csr_matrix(a.multiply(b))


class KernelMul(_Nary):
    """The element-wise product of kernels (and constants)."""

    _symbol = "*"

    @classmethod
    def _build(cls, left: KernelExpression, right: KernelExpression) -> KernelExpression:
        # (c1 * k) * c2 -> (c1 * c2) * k ; c * (c2 * k) likewise
        for const, other in ((left, right), (right, left)):
            if isinstance(const, Constant) and isinstance(other, KernelMul) and other._constant() is not None:
                c, expr = other._split()
                return cls(Constant(const.value * c.value), expr)
        if isinstance(left, Constant) and isinstance(right, Constant):
            return Constant(left.value * right.value)
        return cls(left, right)

    def _constant(self) -> Constant | None:
        if len(self) == 2:
            consts = [c for c in self if isinstance(c, Constant)]
            if len(consts) == 1:
                return consts[0]
        return None

    def _split(self) -> tuple[Constant, KernelExpression]:
        a, b = self._children
        return (a, b) if isinstance(a, Constant) else (b, a)  # type: ignore[return-value]

    def _evaluate(
        self, cache: dict[int, sparse.csr_matrix], *, top: bool = False, in_sum: bool = False
    ) -> sparse.csr_matrix | float:
        value: sparse.csr_matrix | float = 1.0
        for child in self._children:
            value = _multiply(value, _child_value(child, cache))
        if isinstance(value, float) or (in_sum and self._constant() is not None):
            return value
        return row_normalize(as_csr(value))

    def __repr__(self) -> str:
        return "(" + " * ".join(repr(c) for c in self._children) + ")"


class KernelAdd(_Nary):
    """A weighted sum of kernels; the constants of its terms are normalised to sum to 1.

    The sum holds its own copies of the constants, normalised when it is built: ``e = 0.8 * vk + 0.2 * ck``
    and ``e + 1.0 * pk`` have the weights ``0.8, 0.2`` and ``0.4, 0.1, 0.5``, whatever is computed first.
    """

    _symbol = "+"

    def __init__(self, *children: KernelExpression) -> None:
        super().__init__(*self._own_terms(children))

    @staticmethod
    def _own_terms(children: tuple[KernelExpression, ...]) -> list[KernelExpression]:
        """The terms with this sum's own constants, normalised to add up to 1.

        Every weighted term ``c * expr`` is rebuilt as ``Constant(c / total) * expr``: a sum never shares
        (and so never changes) the constants of the expressions it was built from, so each expression's
        weights and matrix do not depend on which other expressions were computed before.
        """
        weighted = [t for t in children if isinstance(t, KernelMul) and t._constant() is not None]
        total = sum(t._constant().value for t in weighted)  # type: ignore[union-attr]
        terms: list[KernelExpression] = []
        for t in children:
            if isinstance(t, KernelMul) and t._constant() is not None:
                c, expr = t._split()
                terms.append(KernelMul(Constant(c.value / total), expr))
            else:
                terms.append(t)
        return terms

    @classmethod
    def _build(cls, left: KernelExpression, right: KernelExpression) -> KernelExpression:
        terms: list[KernelExpression] = []
        for side in (left, right):
            if isinstance(side, KernelAdd) and all(
                isinstance(t, KernelMul) and t._constant() is not None for t in side
            ):
                terms.extend(side._children)
            elif isinstance(side, KernelMul) and side._constant() is not None:
                terms.append(side)
            else:
                terms.append(KernelMul(Constant(1.0), side))
        return cls(*terms)

    def _evaluate(self, cache: dict[int, sparse.csr_matrix], *, top: bool = False) -> sparse.csr_matrix | float:
        total: sparse.csr_matrix | None = None
        for child in self._children:
            value = child._evaluate(cache, in_sum=True) if isinstance(child, KernelMul) else _child_value(child, cache)
            if isinstance(value, float):
                raise ValueError("A sum of kernels cannot contain a bare constant term.")
            total = value if total is None else total + value
        return as_csr(total)


def _child_value(child: KernelExpression, cache: dict[int, sparse.csr_matrix]) -> sparse.csr_matrix | float:
    if isinstance(child, Constant):
        return child.value
    if isinstance(child, _Nary):
        return child._evaluate(cache)
    return cache[id(child)]
