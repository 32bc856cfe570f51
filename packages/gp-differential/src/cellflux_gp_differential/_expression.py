"""Differential expression: which genes change between two conditions, and where."""

from __future__ import annotations

import logging
from typing import Any, Literal

import numpy as np
from tqdm.auto import tqdm

from ._batching import iter_batches
from ._expression_model import DEFAULT_N_LANDMARKS, ExpressionModel, resolve_length_scale
from ._fdr import compute_fdr
from ._jax import DEFAULT_JITTER, pad_rows
from ._mahalanobis import gene_batch_for_budget, mahalanobis, mahalanobis_memory
from ._outputs import OutputArrays, chunk_rows, pair_chunk_rows, store_on_disk
from ._pair import covariance_pair, difference_pair, evaluate_pair, shared_design, stacked_coefficients
from ._params import landmarks_kmeans
from ._regression import _column_sq, check_precision, landmark_design, whiten
from ._support import supported_distances
from ._threads import resolve_n_jobs, stage_jobs, thread_map
from ._validate import check_cells, check_expression, check_landmarks, check_n_landmarks, check_positive

__all__ = ["DifferentialExpression"]

logger = logging.getLogger(__name__)

#: Default working-memory budget of the Mahalanobis step.
DEFAULT_MEMORY_BUDGET = 1 * 1024**3
#: The training cells' whitened cross-kernels are kept from fit to predict when they take at most this.
WHITENED_CACHE_BYTES = 256 * 1024**2

#: Per-cell outputs of :meth:`DifferentialExpression.predict` (and ``mean_log_fold_change``, per gene).
PREDICT_KEYS = (
    "condition1_smoothed",
    "condition2_smoothed",
    "condition1_std",
    "condition2_std",
    "fold_change",
    "fold_change_zscores",
    "mean_log_fold_change",
)

#: The gene statistics :meth:`DifferentialExpression.compute_mahalanobis_distances` can compute.
DISTANCES = ("supported", "calibrated", "kompot")


class DifferentialExpression:
    """Differential expression between two conditions from Gaussian-process smoothed expression.

    Parameters
    ----------
    n_landmarks
        Landmarks shared by both conditions (k-means of the pooled cells); ``None``: ``min(1000, cells)``.
    use_sample_variance
        Add the between-sample variance (``None``: when sample indices or variance predictors are given).
    use_empirical_variance
        Estimate per-gene observation variance from leave-one-out residuals and include it.
    eps
        Added to variances before square roots and to the covariance diagonal.
    jit_compile
        Kept for kompot compatibility; the engine is always compiled.
    function_predictor1, function_predictor2, variance_predictor1, variance_predictor2
        Pre-fitted predictors (e.g. mellon's) for the conditions.
    obs_variance_predictor1, obs_variance_predictor2
        Pre-fitted observation-variance predictors for the conditions.
    random_state
        Seed of the landmark k-means.
    batch_size
        Points per prediction batch. With both conditions fitted here (shared landmarks), :meth:`predict`
        splits the cells into equal chunks of at most ``batch_size`` or about 64 MB of temporaries,
        whichever allows more cells.
    store_arrays_on_disk
        Where :meth:`predict`'s ``cells x genes`` outputs live: ``False`` in memory, ``True`` as memory-mapped
        ``.npy`` files, ``None`` (default) on disk only when they would take more than ``max_memory_ratio``
        of the available memory. Either way :meth:`predict` works through the cells in chunks, so its
        working memory is one chunk's (64-256 MB) on top of the outputs. (Nothing ``points x points x
        genes`` is ever materialised, on disk or not.)
    disk_storage_dir
        Folder of the files with ``store_arrays_on_disk`` (``<output name>.npy``, replaced by each call).
        ``None``: temporary files, removed as soon as they are mapped (nothing is left behind).
    max_memory_ratio
        Share of the available memory the outputs (see ``store_arrays_on_disk``) and the Mahalanobis step
        may use (``memory_budget`` overrides the latter).
    model1, model2
        Pre-fitted :class:`ExpressionModel` of each condition.
    memory_budget
        Bytes for the Mahalanobis step; genes are streamed in batches that fit.
    distance
        The per-gene Mahalanobis distance. ``"supported"`` (default): where one condition has (almost) no
        cells near a landmark, its GP is read at its own support point (the mean of its 3 cells nearest to
        the landmark) instead of extrapolated into the other condition's cell states, under the diagonal
        of the calibrated covariance (see :mod:`cellflux_gp_differential._support`). ``"calibrated"``:
        under each gene's own noise scale
        -- the GP posterior covariance (computed for noise ``sigma``, the same for all genes) is scaled by
        the gene's residual noise variance ``s_g`` relative to ``sigma^2`` (see :meth:`noise_variance`),
        i.e. the exact posterior of the GP with kernel ``s_g k`` and noise ``s_g sigma^2``, which has the
        same smoothed expression. ``"kompot"``: kompot's distance, the unit covariance for every gene
        (genes with more noise get larger distances).
    precision
        ``"mixed"`` (default): the products with the genes, most of the flops of fit and predict, in single
        precision, in the whitened basis where that is well conditioned; measured against ``"double"``
        (everything in double precision): smoothed expression within 6e-6 and fold changes within 3e-5 of
        their largest value, Mahalanobis distances within 5e-5 relative, gene ranks unchanged. ``"double"``
        reproduces kompot to 1e-8; the factorisations, posterior variances and Mahalanobis solves are always
        in double precision (see :mod:`cellflux_gp_differential._regression`). Applies to the models this
        class fits. With ``"mixed"`` the ``cells x genes`` outputs of :meth:`predict` are float32 (they hold
        single-precision products; half the memory of float64), with ``"double"`` float64; the per-gene
        outputs are float64 either way.
    n_jobs
        Threads: the two conditions are fitted, and chunks of cells predicted, in parallel (BLAS on one
        thread in each); the Mahalanobis step splits its products over them too when BLAS itself runs on
        fewer threads (e.g. ``OPENBLAS_NUM_THREADS=1``). ``None`` (default) all available cores, ``-1``
        too, ``1`` none. Results do not depend on it.

    Notes
    -----
    With ``distance="supported"`` or ``"calibrated"``, ``use_empirical_variance`` only enters the per-cell
    standard deviations and z-scores, not the distance (see :meth:`compute_mahalanobis_distances`).

    Why a calibrated covariance: with one covariance for all genes the distance grows with a gene's noise
    level, so noisy genes outrank planted differences (AUROC of the planted genes about 0.5 on the
    simulator, as kompot's). Scaled by each gene's noise, the distance is a per-gene posterior Mahalanobis
    distance on a common footing (AUROC 0.93-1.0 with the default length scale). Why ``"supported"``: where
    the conditions' cells do not overlap (e.g. cells moved by the DE genes themselves), the extrapolated GP
    of the absent condition made every gene varying there look differential; read where each condition has
    cells, the planted genes rank with AUROC 0.98-1.0 on 16 settings (``benchmarks/results/de_accuracy.json``,
    column ``ours_supported``). The null genes of :meth:`compute_fdr` get the same treatment, so p-values
    and FDRs stay calibrated against them.

    Attributes
    ----------
    condition1_smoothed, condition2_smoothed, condition1_std, condition2_std, fold_change,
    fold_change_zscores, mean_log_fold_change, mahalanobis_distances
        The last :meth:`predict` results.
    """

    def __init__(
        self,
        n_landmarks: int | None = None,
        use_sample_variance: bool | None = None,
        use_empirical_variance: bool = True,
        eps: float = 1e-8,
        jit_compile: bool = False,
        function_predictor1: Any = None,
        function_predictor2: Any = None,
        variance_predictor1: Any = None,
        variance_predictor2: Any = None,
        obs_variance_predictor1: Any = None,
        obs_variance_predictor2: Any = None,
        random_state: int | None = None,
        batch_size: int = 500,
        store_arrays_on_disk: bool | None = None,
        disk_storage_dir: str | None = None,
        max_memory_ratio: float = 0.8,
        model1: ExpressionModel | None = None,
        model2: ExpressionModel | None = None,
        memory_budget: float | None = None,
        distance: Literal["supported", "calibrated", "kompot"] = "supported",
        precision: Literal["mixed", "double"] = "mixed",
        n_jobs: int | None = None,
    ) -> None:
        if distance not in DISTANCES:
            raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}.")
        check_precision(precision)
        self.precision = precision
        resolve_n_jobs(n_jobs)
        self.n_jobs = n_jobs
        self.distance = distance
        self.n_landmarks = n_landmarks
        self.use_empirical_variance = use_empirical_variance
        self.eps = eps
        self.jit_compile = jit_compile
        self.random_state = random_state
        self.batch_size = batch_size
        self.store_arrays_on_disk = store_arrays_on_disk
        self.disk_storage_dir = disk_storage_dir
        if not 0 < max_memory_ratio <= 1:
            raise ValueError(f"max_memory_ratio must be in (0, 1], got {max_memory_ratio}.")
        self.max_memory_ratio = max_memory_ratio
        self.memory_budget = memory_budget
        self.use_sample_variance_explicit = use_sample_variance is not None
        self.use_sample_variance = (
            use_sample_variance
            if use_sample_variance is not None
            else (variance_predictor1 is not None or variance_predictor2 is not None)
        )
        self.model1 = model1 or self._wrap(function_predictor1, obs_variance_predictor1, variance_predictor1)
        self.model2 = model2 or self._wrap(function_predictor2, obs_variance_predictor2, variance_predictor2)
        self.computed_landmarks: np.ndarray | None = None
        self._training_whitened: tuple | None = None
        self._support_cells: tuple[np.ndarray, np.ndarray] | None = None
        self.mahalanobis_distances: np.ndarray | None = None
        self.last_memory_estimate: int | None = None
        for name in PREDICT_KEYS:
            setattr(self, name, None)

    def _wrap(self, function, obs_variance, variance) -> ExpressionModel | None:
        if function is None:
            return None
        return ExpressionModel(
            use_empirical_variance=self.use_empirical_variance and obs_variance is not None,
            eps=self.eps,
            batch_size=self.batch_size,
            function_predictor=function,
            obs_variance_predictor=obs_variance,
            variance_predictor=variance,
        )

    @property
    def function_predictor1(self) -> Any:
        """Mean predictor of condition 1."""
        return self.model1.predictor if self.model1 else None

    @property
    def function_predictor2(self) -> Any:
        """Mean predictor of condition 2."""
        return self.model2.predictor if self.model2 else None

    def fit(
        self,
        X_condition1: np.ndarray,
        y_condition1,
        X_condition2: np.ndarray,
        y_condition2,
        sigma: float = 1.0,
        ls: float | None = None,
        ls_factor: float | None = None,
        landmarks: np.ndarray | None = None,
        sample_estimator_ls: float | None = None,
        condition1_sample_indices: np.ndarray | None = None,
        condition2_sample_indices: np.ndarray | None = None,
        allow_single_condition_variance: bool = False,
        jitter: float = DEFAULT_JITTER,
    ) -> DifferentialExpression:
        """Fit the expression GPs of both conditions on shared landmarks and one length scale.

        Parameters
        ----------
        X_condition1, X_condition2
            ``(n_cells, n_features)`` cell states.
        y_condition1, y_condition2
            ``(n_cells, n_genes)`` expression (dense or sparse, same genes).
        sigma
            Noise standard deviation.
        ls
            Length scale; ``None``: see ``ls_factor``.
        ls_factor
            ``None`` (default): :func:`~cellflux_gp_differential._expression_model.expression_length_scale`
            of the pooled cells (three median pairwise distances); a number: kompot's rule
            (mellon's length scale of condition 1 times ``ls_factor``; kompot uses 10).
        landmarks
            ``(m, n_features)`` inducing points; default k-means of the pooled cells.
        sample_estimator_ls
            Length scale of the per-sample GPs.
        condition1_sample_indices, condition2_sample_indices
            Sample label of every cell; turns on the between-sample variance.
        allow_single_condition_variance
            With one condition lacking replicates, use the other's sample variance for both.
        jitter
            Diagonal jitter of the landmark kernel matrix.

        Returns
        -------
        ``self``.
        """
        x1 = check_cells(X_condition1, "X_condition1")
        x2 = check_cells(X_condition2, "X_condition2", n_features=x1.shape[1])
        y1 = check_expression(y_condition1, "y_condition1", x1.shape[0])
        y2 = check_expression(y_condition2, "y_condition2", x2.shape[0])
        if y1.shape[1] != y2.shape[1]:
            raise ValueError(
                f"y_condition1 has {y1.shape[1]} genes but y_condition2 has {y2.shape[1]}; pass the same genes."
            )
        for value, name in ((sigma, "sigma"), (ls, "ls"), (ls_factor, "ls_factor")):
            check_positive(value, name)  # before any work: a refused fit leaves the model as it was
        have_samples = condition1_sample_indices is not None or condition2_sample_indices is not None
        if have_samples and not self.use_sample_variance_explicit:
            self.use_sample_variance = True
        if (
            self.use_sample_variance_explicit
            and self.use_sample_variance
            and not have_samples
            and not (self.model1 and self.model1.has_sample_variance)
        ):
            raise ValueError(
                "use_sample_variance=True but no sample indices were given; pass condition1/2_sample_indices."
            )
        pooled = np.vstack([x1, x2])
        if landmarks is None:
            check_n_landmarks(self.n_landmarks, pooled.shape[0])
            landmarks = landmarks_kmeans(
                pooled, self.n_landmarks or min(DEFAULT_N_LANDMARKS, pooled.shape[0]), self.random_state
            )
        else:
            landmarks = check_landmarks(landmarks, x1.shape[1])
        self.computed_landmarks = landmarks
        if ls is None and ls_factor is not None:
            ls = resolve_length_scale(x1, None, ls_factor)  # kompot: condition 1 defines the length scale
        design = landmark_design(landmarks, resolve_length_scale(pooled, ls, None), jitter)
        self.ls = design.ls
        use_samples = self.use_sample_variance
        keep = self._keep_whitened(design, x1, x2)

        def fit_one(task: tuple) -> tuple[ExpressionModel, np.ndarray | None]:
            i, x, y, idx, model = task
            if model is not None and model.predictor is not None:
                return model, None
            # the condition's whitened cross-kernel, on this thread, kept for predict (else the fit whitens
            # its cell batches itself)
            a = whiten(design, x) if keep else None
            model = ExpressionModel(
                n_landmarks=self.n_landmarks,
                use_empirical_variance=self.use_empirical_variance,
                eps=self.eps,
                random_state=self.random_state,
                batch_size=self.batch_size,
                precision=self.precision,
            )
            try:
                model = model.fit(
                    x,
                    y,
                    sigma=sigma,
                    sample_indices=idx if use_samples else None,
                    sample_estimator_ls=sample_estimator_ls,
                    allow_single_condition_variance=allow_single_condition_variance,
                    design=design,
                    whitened=a,
                )
            except ValueError as err:
                raise ValueError(f"condition {i}: {err}") from err
            if a is None:
                return model, None
            # kept for predict in the products' precision, with the squared norms (the variances'
            # 1 - |a|^2 term) in double precision: what predict would have computed from it
            return model, (np.asarray(a, dtype=np.float32 if model.predictor.single else np.float64), _column_sq(a))

        tasks = [
            (1, x1, y1, condition1_sample_indices, self.model1),
            (2, x2, y2, condition2_sample_indices, self.model2),
        ]
        (self.model1, a1), (self.model2, a2) = thread_map(fit_one, tasks, resolve_n_jobs(self.n_jobs))
        self._training_whitened = (x1, x2, a1, a2) if keep else None
        self._support_cells = (x1, x2)
        if use_samples and have_samples and allow_single_condition_variance:
            m1, m2 = self.model1, self.model2
            if m1.has_sample_variance != m2.has_sample_variance:
                src, dst = (m1, m2) if m1.has_sample_variance else (m2, m1)
                dst._sample_variance_predictor = src._sample_variance_predictor
                dst._sample_variance_estimator = src._sample_variance_estimator
            elif not m1.has_sample_variance:
                raise ValueError(
                    "Sample variance could not be estimated for either condition (each needs >= 2 samples)."
                )
        return self

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_training_whitened"] = None  # a cache (up to WHITENED_CACHE_BYTES), not model state
        return state

    def _keep_whitened(self, design, x1: np.ndarray, x2: np.ndarray) -> bool:
        """Whether the fit whitens both conditions' training cells whole and keeps them for :meth:`predict`.

        Kept (``self._training_whitened``) only when both models are fitted here and the two take at most
        :data:`WHITENED_CACHE_BYTES`, and only until the next :meth:`predict` (which releases it): predicting
        at the training cells (what :func:`~cellflux_gp_differential.tl.differential_expression` does) then
        skips their kernel products. Not pickled.
        """
        self._training_whitened = None
        m = design.landmarks.shape[0]
        ours = all(model is None or model.predictor is None for model in (self.model1, self.model2))
        return ours and (x1.shape[0] + x2.shape[0]) * m * 8 <= WHITENED_CACHE_BYTES

    def _training_columns(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """For points that are all training cells: which condition (0/1) and column each is; else ``None``."""
        cached = self._training_whitened
        if cached is None or X.shape[1] != cached[0].shape[1]:
            return None

        def keys(x: np.ndarray) -> list[bytes]:
            x = np.ascontiguousarray(x, dtype=np.float64)
            return x.view(np.dtype((np.void, 8 * x.shape[1]))).ravel().tolist()

        where: dict[bytes, tuple[int, int]] = {}
        for c in (1, 0):  # condition 1 wins ties (identical cells have identical columns anyway)
            where.update((key, (c, i)) for i, key in enumerate(keys(cached[c])))
        found = [where.get(key) for key in keys(X)]
        if any(f is None for f in found):
            return None
        table = np.asarray(found, dtype=np.int64).reshape(-1, 2)
        return table[:, 0], table[:, 1]

    def _gather_whitened(self, which: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The cached whitened columns ``(m, k)`` of the training cells ``cols`` of conditions ``which``.

        Returned with their squared norms ``(k,)``; the columns are in the products' precision (float32
        with ``precision="mixed"``), the norms in double precision.

        The cached arrays are column-major (see :func:`~._regression.whiten`): gathering columns is
        gathering contiguous rows of their transposes.
        """
        (a1, sq1), (a2, sq2) = self._training_whitened[2:]
        out, norms = np.empty((len(cols), a1.shape[0]), dtype=a1.dtype), np.empty(len(cols))
        for c, a, sq in ((0, a1, sq1), (1, a2, sq2)):
            rows = np.flatnonzero(which == c)
            if rows.size:
                out[rows] = np.take(a.T, cols[rows], axis=0)
                norms[rows] = sq[cols[rows]]
        return out.T, norms

    def _require(self) -> None:
        if self.model1 is None or self.model1.predictor is None or self.model2 is None or self.model2.predictor is None:
            raise ValueError("Model not fitted. Call fit() first.")

    def predict(
        self,
        X_new: np.ndarray,
        compute_mahalanobis: bool = False,
        progress: bool = True,
        use_landmarks: bool = True,
        landmarks_override: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """Smoothed expression of both conditions, fold changes and (optionally) Mahalanobis distances.

        Parameters
        ----------
        X_new
            ``(n_cells, n_features)`` points.
        compute_mahalanobis
            Also compute each gene's Mahalanobis distance (at the landmarks by default).
        progress
            Show progress bars.
        use_landmarks, landmarks_override
            Points of the Mahalanobis distance: the landmarks (default), ``landmarks_override``, or
            ``X_new`` itself (``use_landmarks=False``).

        Returns
        -------
        Dict with ``condition1_smoothed``, ``condition2_smoothed``, ``condition1_std``,
        ``condition2_std``, ``fold_change`` (condition 2 - condition 1), ``fold_change_zscores``,
        ``mean_log_fold_change`` (mean of the fold change over ``X_new``) and, with
        ``compute_mahalanobis``, ``mahalanobis_distances``; also stored as attributes. The ``cells x genes``
        arrays are float32 with ``precision="mixed"`` (see the class parameters), else float64.
        """
        self._require()
        X_new = check_cells(
            X_new, "X_new", n_features=getattr(self.model1.predictor, "n_input_features", None), min_cells=1
        )
        try:
            result = self._predict_cells(X_new, progress)
        finally:
            self._training_whitened = None  # a cache for this first prediction only (memory)
        fold_change = result["fold_change"]
        if compute_mahalanobis:
            result["mahalanobis_distances"] = self.compute_mahalanobis_distances(
                X_new,
                fold_change=fold_change,
                use_landmarks=use_landmarks,
                landmarks_override=landmarks_override,
                progress=progress,
            )
        for key, value in result.items():
            setattr(self, key, value)
        return result

    def _pair_path(self) -> bool | None:
        """``None`` unless both models can be evaluated together; else whether with observation variance."""
        m1, m2 = self.model1, self.model2
        if not shared_design(m1.predictor, m2.predictor):
            return None
        own = [
            getattr(m._obs_variance_predictor, "__self__", None) is m.predictor
            and m.predictor.variance_coef is not None
            for m in (m1, m2)
        ]
        empirical = [m.has_empirical_variance for m in (m1, m2)]
        if empirical == [False, False]:
            return False
        if empirical == [True, True] and all(own):
            return True
        return None

    def _predict_chunk(self, X: np.ndarray) -> dict[str, np.ndarray]:
        """All per-cell outputs for the cells ``X`` from each model on its own (external predictors)."""
        s1, s2 = self.model1.predict(X, progress=False), self.model2.predict(X, progress=False)
        v1, v2 = self.model1.total_variance(X), self.model2.total_variance(X)
        fold_change = s2 - s1
        return {
            "condition1_smoothed": s1,
            "condition2_smoothed": s2,
            "condition1_std": np.sqrt(v1 + self.eps),
            "condition2_std": np.sqrt(v2 + self.eps),
            "fold_change": fold_change,
            "fold_change_zscores": fold_change / np.sqrt(v1 + v2 + self.eps),
        }

    def _predict_cells(self, X: np.ndarray, progress: bool, rows: int | None = None) -> dict[str, np.ndarray]:
        """Every per-cell output, chunk by chunk of cells, into preallocated outputs (memory or disk).

        ``rows``: cells per chunk (default: one prediction batch; for external predictors one batch, then
        :func:`~._outputs.chunk_rows` for the rest, ~256 MB of temporaries).
        """
        pair = self._pair_path()
        if pair is not None:
            return self._predict_cells_pair(X, progress, obs_variance=pair, rows=rows)
        n = X.shape[0]
        first_stop = min(n, rows or int(self.batch_size or 500))
        chunk = self._predict_chunk(X[:first_stop])  # also tells the number of genes
        rows = rows or chunk_rows(chunk["fold_change"].shape[1], first_stop)
        bounds = [(0, first_stop)] + [(start, min(start + rows, n)) for start in range(first_stop, n, rows)]
        outputs = self._allocate(n, chunk["fold_change"].shape[1])
        total = np.zeros(chunk["fold_change"].shape[1:])
        for i, (start, stop) in enumerate(tqdm(bounds, disable=not progress or len(bounds) < 2, desc="cells")):
            if i:
                chunk = self._predict_chunk(X[start:stop])
            for key, value in chunk.items():
                outputs[key][start:stop] = value
            total += chunk["fold_change"].sum(axis=0)
        outputs["mean_log_fold_change"] = total / n
        return outputs

    def _allocate(self, n: int, n_genes: int, dtype: type = np.float64) -> dict[str, np.ndarray]:
        """The six ``(n, n_genes)`` outputs, in memory or memory-mapped (``store_arrays_on_disk``)."""
        keys = [k for k in PREDICT_KEYS if k != "mean_log_fold_change"]
        nbytes = len(keys) * n * n_genes * np.dtype(dtype).itemsize
        storage = OutputArrays(
            store_on_disk(self.store_arrays_on_disk, nbytes, self.max_memory_ratio), self.disk_storage_dir
        )
        return {k: storage.allocate(k, (n, n_genes), dtype) for k in keys}

    def _predict_cells_pair(
        self, X: np.ndarray, progress: bool, *, obs_variance: bool, rows: int | None = None
    ) -> dict[str, np.ndarray]:
        """Both conditions evaluated together (see :mod:`._pair`), every output written in place.

        The products with the coefficients go straight into the smoothed-expression outputs (and, with
        observation variance, into the standard deviations); the fold changes and z-scores are formed in
        the output arrays themselves, chunk by chunk, without temporaries of the outputs' size. With
        ``precision="mixed"`` the outputs are float32 (they carry single-precision products; half the
        memory), with ``"double"`` float64.
        """
        m1, m2 = self.model1, self.model2
        p1, p2 = m1.predictor, m2.predictor
        n, g, eps = X.shape[0], p1.coef.shape[1], self.eps
        C = stacked_coefficients(p1, p2, obs_variance=obs_variance)
        outputs = self._allocate(n, g, C[0].dtype.type)
        s1_all, s2_all = outputs["condition1_smoothed"], outputs["condition2_smoothed"]
        sd1_all, sd2_all = outputs["condition1_std"], outputs["condition2_std"]
        fc_all, z_all = outputs["fold_change"], outputs["fold_change_zscores"]
        size = pair_chunk_rows(n, p1.landmarks.shape[0], int(self.batch_size or 500), rows)
        lookup = self._training_columns(X)

        def fill(bounds: tuple[int, int]) -> np.ndarray:
            start, stop = bounds
            cached, norms = (None, None) if lookup is None else self._gather_whitened(*(t[start:stop] for t in lookup))
            s1, s2, fc = s1_all[start:stop], s2_all[start:stop], fc_all[start:stop]
            sd1, sd2, z = sd1_all[start:stop], sd2_all[start:stop], z_all[start:stop]
            # the observation variances land in the standard deviations' rows, which they become part of
            targets = [s1, s2, sd1, sd2] if obs_variance else [s1, s2]
            xb = pad_rows(X[start:stop], size) if cached is None else None
            var1, var2 = evaluate_pair(p1, p2, C, xb, targets, a=cached, a_sq=norms)
            np.subtract(s2, s1, out=fc)
            if not (obs_variance or m1.has_sample_variance or m2.has_sample_variance):
                # variances are per cell: form them on (k,) vectors, then one pass per output
                np.copyto(sd1, np.sqrt(var1 + eps)[:, None], casting="same_kind")
                np.copyto(sd2, np.sqrt(var2 + eps)[:, None], casting="same_kind")
                np.multiply(fc, (1.0 / np.sqrt(var1 + var2 + eps))[:, None], out=z, casting="same_kind")
                return fc.sum(axis=0, dtype=np.float64)
            for sd, var, model in ((sd1, var1, m1), (sd2, var2, m2)):
                if obs_variance:  # total variance: posterior + observation (>= eps) + between samples
                    np.maximum(sd, eps, out=sd)
                    np.add(sd, var[:, None], out=sd, casting="same_kind")
                else:
                    np.copyto(sd, var[:, None], casting="same_kind")
                if model.has_sample_variance:
                    np.add(sd, model.sample_variance(X[start:stop]), out=sd, casting="same_kind")
            np.add(sd1, sd2, out=z)
            z += eps
            np.sqrt(z, out=z)
            np.divide(fc, z, out=z)
            for sd in (sd1, sd2):
                sd += eps
                np.sqrt(sd, out=sd)
            return fc.sum(axis=0, dtype=np.float64)

        bounds = list(iter_batches(n, size))
        bar = tqdm(total=len(bounds), disable=not progress or len(bounds) < 2, desc="cells")

        def fill_and_count(b: tuple[int, int]) -> np.ndarray:
            out = fill(b)
            bar.update()
            return out

        sums = thread_map(fill_and_count, bounds, resolve_n_jobs(self.n_jobs))
        bar.close()
        total = np.zeros(g)
        for part in sums:  # in chunk order: the same sum whatever the number of threads
            total += part
        outputs["mean_log_fold_change"] = total / n
        return outputs

    def _budget(self) -> float:
        if self.memory_budget is not None:
            return float(self.memory_budget)
        try:
            import psutil

            return min(DEFAULT_MEMORY_BUDGET * 4, self.max_memory_ratio * psutil.virtual_memory().available)
        except ImportError:  # pragma: no cover
            return DEFAULT_MEMORY_BUDGET

    def estimate_memory(
        self, n_points: int | None = None, n_genes: int | None = None, gene_batch: int | None = None
    ) -> dict[str, int]:
        """Dry-run estimate of the Mahalanobis step: the gene batch it would use and its peak memory (bytes).

        The estimate is within a factor 2 of the step's measured peak resident memory (tested; measured
        1.07-1.24x in fresh processes at 2,000-3,500 cells, ``benchmarks/results/memory.json``). With
        ``n_points`` large the fixed ``n_points x n_points`` matrices alone can exceed the budget; the
        estimate then exceeds it too.

        Parameters
        ----------
        n_points
            Points of the distance (default: the landmarks).
        n_genes
            Genes (default: the fitted genes).
        gene_batch
            Genes per batch (default: the largest that fits the memory budget).

        Returns
        -------
        ``{"gene_batch": ..., "bytes": ..., "budget": ...}``.
        """
        self._require()
        m = n_points if n_points is not None else len(self.model1.landmarks)
        g = n_genes if n_genes is not None else self.model1.predictor.coef.shape[1]
        s = self._n_factors()
        budget = self._budget()
        batch = gene_batch or gene_batch_for_budget(m, g, s, budget)
        return {"gene_batch": int(batch), "bytes": int(mahalanobis_memory(m, g, s, batch)), "budget": int(budget)}

    def _n_factors(self) -> int:
        n = 0
        for model in (self.model1, self.model2):
            est = model._sample_variance_estimator if self.use_sample_variance else None
            n += est.n_groups if est is not None else 0
        return n

    def noise_variance(self) -> np.ndarray:
        """Per-gene noise variance ``(n_genes,)`` pooled over both conditions.

        ``(RSS_1 + RSS_2) / (n_1 + n_2 - tr H_1 - tr H_2)``: the residual sums of squares of both fits
        over their effective degrees of freedom (``tr H`` the trace of each smoother matrix). This is the
        scale ``s_g`` of the ``"calibrated"`` distance.

        Returns
        -------
        ``(n_genes,)`` variances (expression units squared).
        """
        self._require()
        parts = []
        for model in (self.model1, self.model2):
            p = model.predictor
            if getattr(p, "residual_ss", None) is None:
                raise ValueError(
                    "The per-gene noise variance needs models fitted by this package (not external "
                    "predictors); use distance='kompot' with external predictors."
                )
            parts.append((p.residual_ss, float(p.n_obs) - float(p.hat_trace)))
        dof = max(parts[0][1] + parts[1][1], 1.0)
        return np.maximum((parts[0][0] + parts[1][0]) / dof, 1e-12)

    def compute_mahalanobis_distances(
        self,
        X: np.ndarray,
        fold_change: np.ndarray | None = None,
        use_landmarks: bool = True,
        landmarks_override: np.ndarray | None = None,
        progress: bool = True,
    ) -> np.ndarray:
        """Mahalanobis distance of every gene's fold-change vector.

        With ``distance="supported"`` (default), see
        :func:`~cellflux_gp_differential._support.supported_distances`: a condition absent near a point
        is read at its support point (``fold_change`` is not used) and the distance is under the diagonal
        of the calibrated covariance. Otherwise:

        The covariance of gene ``g`` is the sum of both conditions' GP posterior covariances -- times the
        gene's noise scale ``s_g`` (:meth:`noise_variance` over ``sigma^2``) with ``distance="calibrated"``, as is
        (kompot's) with ``distance="kompot"`` -- plus (with samples) the between-sample covariances and,
        only with ``distance="kompot"`` and empirical variance, the diagonal observation variances (the
        calibrated distance already includes the gene's noise through ``s_g``; adding the observation
        variance again would count it twice and, measured, lowers the planted genes' AUROC); see
        :mod:`cellflux_gp_differential._mahalanobis` for how genes share one factorisation. The scaling
        costs nothing: ``d^T (s_g C + V)^{-1} d`` is computed as the distance of ``d / sqrt(s_g)`` under
        ``C + V / s_g``.

        Parameters
        ----------
        X
            Cell states (used when ``use_landmarks=False`` or no landmarks exist).
        fold_change
            ``(len(X), n_genes)`` fold changes at ``X`` (used with ``use_landmarks=False``).
        use_landmarks
            Evaluate at the landmarks (default).
        landmarks_override
            Evaluate at these points instead.
        progress
            Progress bar over gene batches.

        Returns
        -------
        ``(n_genes,)`` distances (also in ``self.mahalanobis_distances``).
        """
        self._require()
        m1, m2 = self.model1, self.model2
        if landmarks_override is not None:
            points = check_landmarks(landmarks_override, m1.predictor.n_input_features)
        elif use_landmarks and m1.landmarks is not None:
            points = m1.landmarks
        else:
            points = check_cells(X, "X", min_cells=2)
        if self.distance == "supported":
            if self._support_cells is None:
                raise ValueError("distance='supported' needs the cells of both conditions; call fit() first.")
            distances = supported_distances(self, *self._support_cells, points, progress=progress)
            self.mahalanobis_distances = distances
            return distances
        pair = self._pair_path()
        # the calibrated distance already carries each gene's noise (s_g C): the observation variance, an
        # extra per-point noise term of kompot's, enters only kompot's distance
        use_diag = (
            self.distance == "kompot"
            and self.use_empirical_variance
            and m1.has_empirical_variance
            and m2.has_empirical_variance
        )
        diag_var = None
        n_jobs = stage_jobs(resolve_n_jobs(self.n_jobs))
        if pair is not None:
            a = whiten(m1.predictor.design, points)  # shared by the covariance and the differences
            cov = covariance_pair(m1.predictor, m2.predictor, points, a, upper=True, n_jobs=n_jobs)
            diff, o1, o2 = difference_pair(
                m1.predictor, m2.predictor, points, obs_variance=pair and use_diag, a=a, n_jobs=n_jobs
            )
            if pair and use_diag:
                diag_var = np.maximum(o1, self.eps) + np.maximum(o2, self.eps)
        else:
            cov = m1.covariance(points, diag=False) + m2.covariance(points, diag=False)
            diff = m2.predict(points, progress=False) - m1.predict(points, progress=False)
            if use_diag:
                diag_var = m1.obs_variance(points) + m2.obs_variance(points)
        if fold_change is not None and points is X:
            diff = np.asarray(fold_change)
        factors = None
        if self.use_sample_variance and (m1.has_sample_variance or m2.has_sample_variance):
            if m1._sample_variance_estimator is None and m2._sample_variance_estimator is None:
                raise NotImplementedError(
                    "Mahalanobis distances with external variance predictors are not supported; "
                    "fit with sample indices."
                )

            def factors(genes: np.ndarray) -> np.ndarray:
                parts = [
                    f
                    for f in (m1.sample_variance_factors(points, genes), m2.sample_variance_factors(points, genes))
                    if f is not None
                ]
                return np.concatenate(parts, axis=2)

        if self.distance == "calibrated":
            # s_g relative to the GPs' sigma^2: the posterior covariance was computed for noise sigma^2
            scale = self.noise_variance() / float(m1.predictor.sigma) ** 2
            if scale.shape[0] != diff.shape[1]:
                raise ValueError(f"fold_change has {diff.shape[1]} genes but the models have {scale.shape[0]}.")
            root = np.sqrt(scale)
            diff = np.asarray(diff) / root
            if diag_var is not None:
                diag_var = diag_var / scale
            if factors is not None:
                unscaled = factors

                def factors(genes: np.ndarray) -> np.ndarray:
                    return unscaled(genes) / root[genes][:, None, None]

        plan = self.estimate_memory(n_points=len(points), n_genes=diff.shape[1])
        self.last_memory_estimate = plan["bytes"]
        distances = mahalanobis(
            diff,
            cov,
            diag_variance=diag_var,
            factors=factors,
            eps=self.eps,
            gene_batch=plan["gene_batch"],
            progress=progress,
            upper=pair is not None,
            overwrite_cov=pair is not None,
            n_jobs=n_jobs,
        )
        self.mahalanobis_distances = distances
        return distances

    def compute_fdr(self, null_mahalanobis: np.ndarray, threshold: float = 0.05, gene_names=None):
        """FDR of the last Mahalanobis distances against null distances (see :func:`compute_fdr`).

        Parameters
        ----------
        null_mahalanobis
            Distances of null genes (e.g. expression shuffled across cells).
        threshold
            FDR level of ``is_de``.
        gene_names
            Index of the result.

        Returns
        -------
        DataFrame with ``mahalanobis``, ``pvalue``, ``local_fdr``, ``tail_fdr``, ``is_de``.
        """
        if self.mahalanobis_distances is None:
            raise ValueError("No Mahalanobis distances yet; call predict(compute_mahalanobis=True) first.")
        return compute_fdr(self.mahalanobis_distances, null_mahalanobis, threshold, gene_names)
