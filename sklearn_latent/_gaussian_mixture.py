"""EMGaussianMixture: a faster drop-in for scikit-learn's GaussianMixture."""

from dataclasses import dataclass
from functools import partial
from numbers import Integral, Real

import numpy as np
from sklearn.base import ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.cluster import KMeans, kmeans_plusplus
from sklearn.utils import check_array, check_random_state, gen_batches

from . import _gaussian_kernels as gk
from ._dask import (
    checked_block,
    is_dask_array,
    sample_rows,
    sum_over_blocks,
    summarise,
    summary_of,
)
from ._em import BaseEM, check_scale, rows_per_chunk
from ._utils import (
    Interval,
    StrOptions,
    _fit_context,
    map_in_order,
    restored_on_error,
)


def _check_shape(param, shape, name):
    if param.shape != shape:
        raise ValueError(
            f"The parameter '{name}' should have the shape of {shape}, "
            f"but got {param.shape}"
        )


def _check_weights(weights, n_components):
    weights = check_array(weights, dtype=[np.float64, np.float32], ensure_2d=False)
    _check_shape(weights, (n_components,), "weights")
    if np.any(weights < 0.0) or np.any(weights > 1.0):
        raise ValueError(
            "The parameter 'weights' should be in the range [0, 1], but got "
            f"max value {np.max(weights):.5f}, min value {np.min(weights):.5f}"
        )
    atol = 1e-6 if weights.dtype == np.float32 else 1e-8
    if not np.isclose(np.sum(weights), 1.0, rtol=0.0, atol=atol):
        raise ValueError(
            "The parameter 'weights' should be normalized, but got "
            f"sum(weights) = {np.sum(weights):.5f}"
        )
    return weights


def _check_means(means, n_components, n_features):
    means = check_array(means, dtype=[np.float64, np.float32], ensure_2d=False)
    _check_shape(means, (n_components, n_features), "means")
    return means


def _check_precisions(precisions, covariance_type, n_components, n_features):
    precisions = check_array(
        precisions,
        dtype=[np.float64, np.float32],
        ensure_2d=False,
        allow_nd=covariance_type == "full",
    )
    shape = {
        "full": (n_components, n_features, n_features),
        "tied": (n_features, n_features),
        "diag": (n_components, n_features),
        "spherical": (n_components,),
    }[covariance_type]
    _check_shape(precisions, shape, f"{covariance_type} precision")
    if covariance_type in ("diag", "spherical"):
        if np.any(precisions <= 0.0):
            raise ValueError(f"'{covariance_type} precision' should be positive")
    else:
        matrices = precisions.reshape(-1, n_features, n_features)
        symmetric = np.allclose(matrices, np.swapaxes(matrices, -1, -2))
        if not (symmetric and np.all(np.linalg.eigvalsh(matrices) > 0.0)):
            raise ValueError(
                f"'{covariance_type} precision' should be symmetric, positive-definite"
            )
    return precisions


class EMGaussianMixture(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEM):
    """Gaussian mixture fitted by Expectation-Maximisation.

    A drop-in for :class:`sklearn.mixture.GaussianMixture`: the same
    parameters, defaults, attributes, methods and, from the same
    initialisation, the same numbers. It adds :meth:`transform` (the
    responsibilities p(z | x)), ``sample_weight`` in :meth:`fit`, and speed:
    every component is handled in one batched matrix product over chunks of
    rows instead of a Python loop over components.

    NaN in X are missing entries, in every method that takes X: EM then
    maximises the likelihood of the observed entries alone, exactly
    (Ghahramani and Jordan, 1994). A row's responsibilities come from each
    component's marginal density of its observed entries, and the M-step adds
    the conditional means and covariances of its missing entries given the
    observed ones, so the observed-data log-likelihood never decreases.
    :meth:`score_samples` is log p(x_o), the density of the observed entries
    (0 for a row with nothing observed, whose responsibilities are then the
    weights), so :meth:`score`, :meth:`bic` and cross-validation compare
    models on data with NaN as on complete data. In :meth:`fit` a row or a
    column with nothing observed is an error; infinity always is. Complete
    data take the complete-data path, unchanged. The entries are taken as
    missing at random: whether an entry is missing may depend on the observed
    entries of its row, not on its own value.

    Parameters
    ----------
    n_components : int, default=1
        The number of mixture components.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}, default='full'
        'full': each component has its own covariance matrix; 'tied': all
        components share one; 'diag': each has its own diagonal covariance;
        'spherical': each has its own single variance.
    tol : float, default=1e-3
        EM stops when the gain in mean log-likelihood per sample is below it.
    reg_covar : float, default=1e-6
        Non-negative regularisation added to the diagonal of the covariances.
    max_iter : int, default=100
        The number of EM iterations to perform.
    n_init : int, default=1
        The number of initialisations to perform; the best fit is kept.
    init_params : {'kmeans', 'k-means++', 'random', 'random_from_data'}, \
            default='kmeans'
        How the responsibilities, and through them the parameters, start.
    weights_init : array-like of shape (n_components,), default=None
        Initial weights; None uses ``init_params``.
    means_init : array-like of shape (n_components, n_features), default=None
        Initial means; None uses ``init_params``.
    precisions_init : array-like, default=None
        Initial precisions (inverse covariances), of shape (n_components,)
        for 'spherical', (n_features, n_features) for 'tied', (n_components,
        n_features) for 'diag', (n_components, n_features, n_features) for
        'full'; None uses ``init_params``.
    random_state : int, RandomState instance or None, default=None
        Seeds the initialisation and :meth:`sample`.
    warm_start : bool, default=False
        If True, each call to :meth:`fit` starts from the previous solution
        (and ``n_init`` is ignored after the first call).
    verbose : int, default=0
        0 is silent. 1 shows a live progress line on stderr for each
        initialisation (through tqdm when installed): the iteration out of
        ``max_iter``, the lower bound, its last change against ``tol``, the
        elapsed time and the time left; its last state says whether the
        initialisation converged, and with ``n_init > 1`` it names the
        restart. 2 prints scikit-learn's lines instead, on stdout: each
        initialisation, and every ``verbose_interval`` iterations the time
        and the change of the log-likelihood.
    verbose_interval : int, default=10
        Iterations between two printed lines with ``verbose=2``.
    learning_method : {'batch', 'online'}, default='batch'
        How :meth:`fit` iterates. 'batch': each iteration is an E-step over
        all rows and one M-step (exact EM; the log-likelihood never
        decreases). 'online': each iteration is a pass of stepwise EM over
        mini-batches of ``batch_size`` rows in their order, one M-step per
        batch, as :meth:`partial_fit`; on large data a pass or two comes
        close to batch EM's optimum at the cost of about one batch
        iteration. Shuffle sorted data first.
    batch_size : int, default=1024
        Rows per mini-batch of ``learning_method='online'``.
    learning_offset : float, default=10.0
        Online EM (:meth:`partial_fit`, ``learning_method='online'``): the
        step size of batch t is (learning_offset + t) ** -learning_decay; a
        larger offset down-weights the first batches.
    learning_decay : float, default=0.7
        Online EM: the forgetting rate, in (0.5, 1] for convergence (Cappé
        and Moulines, 2009). Each batch's statistics are taken per unit
        weight, so no ``total_samples`` is needed.

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
        The weights of the components.
    means_ : ndarray of shape (n_components, n_features)
        The means of the components.
    covariances_ : ndarray
        The covariances; shape as ``precisions_init``.
    precisions_ : ndarray
        The precisions (inverse covariances); shape as ``precisions_init``.
    precisions_cholesky_ : ndarray
        Upper Cholesky factors U of the precisions, U U^T = precision.
    converged_ : bool
        Whether the best fit converged.
    n_iter_ : int
        Iterations of the best fit (passes over the data with
        ``learning_method='online'``; batches for :meth:`partial_fit`).
    n_batch_iter_ : int
        Online EM steps (mini-batches) since the model was initialised; 0
        after a batch fit, whose statistics a later :meth:`partial_fit`
        blends new batches into.
    lower_bound_ : float
        Mean log-likelihood per sample of the best fit at its last E-step.
    lower_bounds_ : list of float
        Mean log-likelihood per sample at each E-step of the best fit; it
        never decreases.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when they are all strings.

    See Also
    --------
    sklearn.mixture.GaussianMixture : The scikit-learn estimator this replaces.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_latent import EMGaussianMixture
    >>> X = np.array([[1, 2], [1, 4], [1, 0], [10, 2], [10, 4], [10, 0]])
    >>> gm = EMGaussianMixture(n_components=2, random_state=0).fit(X)
    >>> gm.means_
    array([[10.,  2.],
           [ 1.,  2.]])
    >>> gm.predict([[0, 0], [12, 3]])
    array([1, 0])
    >>> gm.transform([[0, 0]]).round(3)
    array([[0., 1.]])

    With missing entries:

    >>> X_nan = np.array([[1, 2], [1, np.nan], [np.nan, 0], [10, 2], [10, 4], [10, 0]])
    >>> gm = EMGaussianMixture(n_components=2, random_state=0).fit(X_nan)
    >>> gm.predict([[0, np.nan], [12, np.nan]])
    array([1, 0])
    >>> gm.score_samples([[np.nan, np.nan]])  # nothing observed: log 1
    array([0.])
    """

    _parameter_constraints: dict = {
        **BaseEM._parameter_constraints,
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "covariance_type": [StrOptions({"full", "tied", "diag", "spherical"})],
        "reg_covar": [Interval(Real, 0.0, None, closed="left")],
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "init_params": [
            StrOptions({"kmeans", "random", "random_from_data", "k-means++"})
        ],
        "weights_init": ["array-like", None],
        "means_init": ["array-like", None],
        "precisions_init": ["array-like", None],
        "learning_method": [StrOptions({"batch", "online"})],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "learning_offset": [Interval(Real, 1.0, None, closed="left")],
        "learning_decay": [Interval(Real, 0.5, 1.0, closed="right")],
    }

    _structure_names = ("n_components", "covariance_type")

    # NaN entries are missing values, marginalised out exactly (issue 10).
    _allow_nan = True

    def __init__(
        self,
        n_components=1,
        *,
        covariance_type="full",
        tol=1e-3,
        reg_covar=1e-6,
        max_iter=100,
        n_init=1,
        init_params="kmeans",
        weights_init=None,
        means_init=None,
        precisions_init=None,
        random_state=None,
        warm_start=False,
        verbose=0,
        verbose_interval=10,
        learning_method="batch",
        batch_size=1024,
        learning_offset=10.0,
        learning_decay=0.7,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.learning_method = learning_method
        self.batch_size = batch_size
        self.learning_offset = learning_offset
        self.learning_decay = learning_decay

    # ------------------------------------------------------------ EM hooks
    def _check_parameters(self, X, sample_weight):
        n_samples, n_features = X.shape
        if sample_weight is not None and not is_dask_array(sample_weight):
            n_samples = np.count_nonzero(sample_weight)
        if n_samples < self.n_components:
            raise ValueError(
                "Expected n_samples >= n_components but got n_components = "
                f"{self.n_components}, n_samples = {n_samples}"
            )
        # Validated copies: the constructor arguments stay as the user gave them.
        self._weights_init = self._means_init = self._precisions_init = None
        if self.weights_init is not None:
            self._weights_init = _check_weights(self.weights_init, self.n_components)
        if self.means_init is not None:
            self._means_init = _check_means(
                self.means_init, self.n_components, n_features
            )
        if self.precisions_init is not None:
            self._precisions_init = _check_precisions(
                self.precisions_init,
                self.covariance_type,
                self.n_components,
                n_features,
            )

    def _prepare(self, X, sample_weight, missing=None):
        self._fit_dtype = X.dtype  # for the float32 hint of the errors
        if is_dask_array(X):
            return self._summarise_dask(X, sample_weight)
        if sample_weight is not None:
            # Weights are relative: scaled to mean one, tiny or huge totals
            # behave as unit weights (reg_covar and the 10 eps of empty
            # components are then on the scale of the rows).
            sample_weight = sample_weight / np.max(sample_weight)
            sample_weight = sample_weight * (len(sample_weight) / sample_weight.sum())
        if missing is None:
            return self._summarise(X, sample_weight)
        data = self._summarise_missing(X, sample_weight, missing)
        # The start sees each missing entry as its column's observed mean:
        # k-means and the other starts need complete rows, and EM corrects it.
        observed = ~missing
        weight = 1.0 if sample_weight is None else sample_weight[:, None]
        column_means = np.sum(np.where(missing, 0.0, X) * weight, axis=0) / np.sum(
            observed * weight, axis=0
        )
        filled = np.where(missing, column_means.astype(X.dtype), X)
        data.missing.init = self._summarise(filled, sample_weight)
        return data

    def _summarise_missing(self, X, sample_weight, missing):
        """What every E-step over rows with missing entries needs: their
        groups for the batched kernels (see gk.missing_groups)."""
        total_weight = float(
            X.shape[0] if sample_weight is None else np.sum(sample_weight)
        )
        extent = float(np.nanmax(np.abs(X)))
        if self._cov in (gk.Full, gk.Tied):
            tasks = [
                (rows[chunk], idx if len(idx) == 1 else idx[chunk])
                for rows, idx in gk.missing_groups(missing)
                for chunk in gen_batches(
                    len(rows), rows_per_chunk(self._missing_row_bytes(X, idx.shape[1]))
                )
            ]
        else:
            step = rows_per_chunk(self._missing_row_bytes(X, 0))
            tasks = [(rows, None) for rows in gen_batches(len(X), step)]
        # Each chunk's rows are gathered and their NaN indexed once, not at
        # every E-step: a float64 copy of X in the chunks' order.
        tasks = [(rows, idx, gk.missing_rows(X[rows])) for rows, idx in tasks]
        # The shift and radius of the complete-data path are unused: extent
        # alone (the largest |x|) is kept, for the collapse floor.
        shift = np.zeros(X.shape[1])
        return _Data(
            X,
            sample_weight,
            shift,
            total_weight,
            extent,
            True,
            None,
            _Missing(missing, tasks),
        )

    def _missing_row_bytes(self, X, m):
        """Bytes of float64 temporaries per row of the kernels of missing
        entries: (K, d) four times, (m, m, K) four times, their indices."""
        K, d = self.n_components, X.shape[1]
        return 8 * (4 * K * d + 5 * K * m * m + d)

    def _summarise(self, X, sample_weight):
        """What every E-step over these rows needs, computed once."""
        # One pass, chunk by chunk (each chunk read from cache by the second
        # and third reduction), on every core.
        weight = None if sample_weight is None else sample_weight.astype(np.float64)
        summary = self._sum_over_chunks(
            lambda X, w: (summary_of(X, w),), X, weight, row_bytes=8 * X.shape[1]
        )[0]
        total_weight = summary.total_weight
        # Rows are taken about the weighted data mean (see _gaussian_kernels).
        shift = summary.mean
        # The corner of the data's bounding box bounds every row's distance
        # from the shift; the exact distance costs a pass over the data and is
        # taken only if this bound does not show the fast path safe.
        corner = np.maximum(summary.maximum - shift, shift - summary.minimum)
        radius = float(np.linalg.norm(corner))
        scatter = None
        if self.covariance_type == "tied":
            # The tied fast path needs sum w y y^T, which no iteration changes.
            scatter = 0.0
            for rows in gen_batches(len(X), self._summary_chunk_rows(X)):
                Y = np.subtract(X[rows], shift, dtype=np.float64)
                wY = Y if sample_weight is None else Y * sample_weight[rows, None]
                scatter = scatter + Y.T @ wY
        return _Data(X, sample_weight, shift, total_weight, radius, False, scatter)

    def _summarise_dask(self, X, sample_weight):
        """The summary of a dask X: one pass, which also checks its values."""
        summary = summarise(X, sample_weight)
        check_scale(X, summary.minimum, summary.maximum)
        if sample_weight is not None:
            sample_weight = sample_weight * (summary.n_samples / summary.total_weight)
        shift = summary.mean
        corner = np.maximum(summary.maximum - shift, shift - summary.minimum)
        radius = float(np.linalg.norm(corner))
        n_samples = float(summary.n_samples)
        return _Data(X, sample_weight, shift, n_samples, radius, False, None)

    @staticmethod
    def _summary_chunk_rows(X):
        return rows_per_chunk(16 * X.shape[1])

    def _needs_nearest_reference(self, data, U, means):
        """The E-step's choice of references (see gk.needs_nearest_reference)."""
        nearest = gk.needs_nearest_reference(
            self._cov, U, means, data.shift, data.radius
        )
        if nearest and not data.exact_radius:
            radius = 0.0
            for rows in gen_batches(len(data.X), self._summary_chunk_rows(data.X)):
                Y = np.subtract(data.X[rows], data.shift, dtype=np.float64)
                radius = max(radius, float(np.max(np.einsum("ij,ij->i", Y, Y))))
            data.radius, data.exact_radius = float(np.sqrt(radius)), True
            nearest = gk.needs_nearest_reference(
                self._cov, U, means, data.shift, data.radius
            )
        return nearest

    @property
    def _cov(self):
        return gk.COVARIANCES[self.covariance_type]

    def _row_bytes(self, X):
        """Bytes of float64 temporaries per row of a chunk: the features
        [second(y); y], two more copies of y (regrouping by reference), and
        (K, n) twice."""
        n_features = X.shape[1]
        n_columns = self._cov.n_second(n_features) + 3 * n_features
        return 8 * (n_columns + 2 * self.n_components)

    def _features_in_cache(self, nearest):
        """Whether an E-step keeps its chunks' features in cache (see
        rows_per_chunk): the full model's on the fast path, which reads them
        twice. Not about the nearest references, whose per-reference products
        want long chunks, nor for the tied model, whose E-step multiplies no
        second-order features: both measured slower. Scoring reads them once
        (0.45 against 0.47 s at d=50: not worth a second chunking)."""
        return self._cov is gk.Full and not nearest

    def _initialize(self, data, random_state, start=0):
        # A new run of EM: online EM's running statistics start afresh.
        self._running_statistics, self.n_batch_iter_ = None, 0
        if is_dask_array(data.X):
            # Started from a uniform sample of the rows: a start needs no
            # more, and drawing it costs one pass that returns only it.
            n_rows = max(INIT_SAMPLE_ROWS, 50 * self.n_components)
            X, w = sample_rows(data.X, data.sample_weight, n_rows, random_state)
            data = self._summarise(checked_block(X), w)
        if data.missing is not None:
            data = data.missing.init
        X, sample_weight = data.X, data.sample_weight
        weights = means = covariances = None
        if (
            self._weights_init is None
            or self._means_init is None
            or self._precisions_init is None
        ):
            resp = self._initial_responsibilities(X, sample_weight, random_state)
            # The component means first, then every sum about the nearest one.
            resp_sum, first = self._sum_over_chunks(
                partial(_first_sums, shift=data.shift),
                X,
                sample_weight,
                8 * (X.shape[1] + self.n_components),
                resp,
            )
            refs = first / np.maximum(resp_sum, np.finfo(np.float64).tiny)[:, None]
            counts, first, second, _, rows_scatter = self._sum_over_chunks(
                partial(_chunk_statistics, cov=self._cov, shift=data.shift, refs=refs),
                X,
                sample_weight,
                self._row_bytes(X),
                resp,
            )
            statistics = gk.mixture_statistics(
                self._cov,
                data.shift,
                refs,
                counts,
                first,
                second,
                rows_scatter,
                0.0,
                data.total_weight,
                data.extent,
            )
            nk, means, covariances = self._parameters_from_statistics(statistics)
            weights = nk / data.total_weight
        dtype = X.dtype
        self.weights_ = weights if self._weights_init is None else self._weights_init
        self.means_ = means if self._means_init is None else self._means_init
        if self._precisions_init is None:
            self.covariances_ = covariances
            self.precisions_cholesky_ = self._cov.precision_cholesky(
                covariances, dtype, gk.collapse_floor(data.extent)
            )
        else:
            self.precisions_cholesky_ = gk.precision_cholesky_from_precisions(
                self._precisions_init.astype(np.float64), self.covariance_type
            )
            self.covariances_ = _invert(self._precisions_init, self.covariance_type)

    def _initial_responsibilities(self, X, sample_weight, random_state):
        n_samples, n_components = X.shape[0], self.n_components
        resp = np.zeros((n_samples, n_components))
        if self.init_params == "kmeans":
            labels = (
                KMeans(n_clusters=n_components, n_init=1, random_state=random_state)
                .fit(X, sample_weight=sample_weight)
                .labels_
            )
            resp[np.arange(n_samples), labels] = 1
        elif self.init_params == "random":
            resp = random_state.uniform(size=(n_samples, n_components)).astype(X.dtype)
            resp /= resp.sum(axis=1)[:, np.newaxis]
        elif self.init_params == "random_from_data":
            # Rows are drawn in proportion to their weights (a zero-weight row
            # never starts a component); unweighted draws are scikit-learn's.
            p = None if sample_weight is None else sample_weight / sample_weight.sum()
            indices = random_state.choice(
                n_samples, size=n_components, replace=False, p=p
            )
            resp[indices, np.arange(n_components)] = 1
        else:  # k-means++
            _, indices = kmeans_plusplus(
                X, n_components, sample_weight=sample_weight, random_state=random_state
            )
            resp[indices, np.arange(n_components)] = 1
        return resp

    def _float64_parameters(self):
        return (
            np.asarray(self.weights_, dtype=np.float64),
            np.asarray(self.means_, dtype=np.float64),
            np.asarray(self.precisions_cholesky_, dtype=np.float64),
        )

    def _e_step(self, data):
        if data.missing is not None:
            return self._e_step_missing(data)
        if is_dask_array(data.X):
            statistics = sum_over_blocks(
                _block_statistics, data.X, data.sample_weight, self
            )
            return statistics, statistics.log_likelihood / data.total_weight
        weights, means, U = self._float64_parameters()
        nearest = self._needs_nearest_reference(data, U, means)
        model = gk.Model(self._cov, weights, means, U, data.shift, nearest)
        counts, first, second, log_likelihood, rows_scatter = self._sum_over_chunks(
            partial(_chunk_statistics, cov=self._cov, shift=data.shift, model=model),
            data.X,
            data.sample_weight,
            self._row_bytes(data.X),
            in_cache=self._features_in_cache(nearest),
        )
        if self.covariance_type == "tied":
            if not nearest:
                rows_scatter = data.scatter
            # The component-free -1/2 y^T P y summed over the rows: -1/2 <P, S>.
            log_likelihood -= 0.5 * np.sum(self._cov.precisions(U) * rows_scatter)
        statistics = gk.mixture_statistics(
            self._cov,
            data.shift,
            model.refs,
            counts,
            first,
            second,
            rows_scatter,
            log_likelihood,
            data.total_weight,
            data.extent,
        )
        return statistics, log_likelihood / data.total_weight

    def _e_step_missing(self, data):
        """The E-step over rows with missing entries: the statistics add the
        conditional moments of the missing entries (gk.missing_statistics)."""
        model = gk.MissingModel(self._cov, *self._float64_parameters())
        sample_weight = data.sample_weight

        def statistics(task):
            rows, idx, prepared = task
            log_prob, Y, C = gk.missing_log_prob(model, prepared, idx)
            resp, log_norm = gk.log_normalize(log_prob)
            if sample_weight is None:
                log_likelihood = log_norm.sum()
            else:
                log_likelihood = log_norm @ sample_weight[rows]
                resp *= sample_weight[rows]
            sums = gk.missing_statistics(model, Y, C, idx, resp, prepared.missing)
            return *sums, log_likelihood

        total = None
        for sums in map_in_order(statistics, data.missing.tasks):
            total = (
                list(sums)
                if total is None
                else [a + b for a, b in zip(total, sums, strict=True)]
            )
        counts, first, second, log_likelihood = total
        statistics = gk.missing_mixture_statistics(
            self._cov,
            model.means,
            counts,
            first,
            second,
            log_likelihood,
            data.total_weight,
            data.extent,
        )
        return statistics, log_likelihood / data.total_weight

    def _expected_statistics(self, X, sample_weight=None, missing=None):
        """One E-step over validated rows: :class:`gk.MixtureStatistics`.

        Statistics of blocks of rows add up to the statistics of all of them,
        whatever each block's own reference points. ``missing`` is the mask
        of X's NaN entries, None for complete rows.
        """
        if missing is None:
            return self._e_step(self._summarise(X, sample_weight))[0]
        return self._e_step(self._summarise_missing(X, sample_weight, missing))[0]

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y=None, sample_weight=None):
        """One step of online (stepwise) EM on a batch of rows.

        The statistics of the batch, per unit weight, are blended into running
        statistics s <- (1 - rho) s + rho s_batch with rho = (learning_offset
        + t) ** -learning_decay at the t-th batch (Cappé and Moulines, 2009;
        Liang and Klein, 2009), and the parameters are their M-step. The first
        call initialises the model from its batch with ``init_params`` (or
        continues from a model fitted by :meth:`fit`); later batches must
        have the same features. Memory is set by the batch, not by the
        stream.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            A batch of training rows.
        y : Ignored
            Not used, present for API consistency by convention.
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the rows of the batch; each batch counts as a whole.

        Returns
        -------
        self : object
            The updated estimator.
        """
        with restored_on_error(self):
            return self._partial_fit(X, sample_weight)

    def _partial_fit(self, X, sample_weight):
        first, X, sample_weight, missing = self._validated_batch(X, sample_weight)
        if first:
            self._check_parameters(X, sample_weight)
            data = self._prepare(X, sample_weight, missing)
            self._initialize(data, check_random_state(self.random_state))
            self.lower_bounds_ = []
        self._fit_dtype = X.dtype
        self._stepwise_step(X, sample_weight, missing)
        self._finalize(None)
        self.n_iter_ = self.n_batch_iter_
        self.lower_bound_ = self._running_statistics.log_likelihood
        self.lower_bounds_ = [*self.lower_bounds_, self.lower_bound_]
        self.converged_ = False
        self._structure = self._structure_parameters()
        return self

    def _stepwise_step(self, X, sample_weight, missing=None):
        """One step of online EM on a batch of validated rows (``missing``:
        the mask of its NaN entries, or None); returns the batch's weighted
        log-likelihood sum under the parameters before it."""
        statistics = self._expected_statistics(X, sample_weight, missing)
        log_likelihood = statistics.log_likelihood
        if not np.isfinite(log_likelihood):
            raise ValueError(self._not_finite_message())
        statistics = statistics * (1.0 / statistics.total_weight)
        if self._running_statistics is not None:
            rho = (self.learning_offset + self.n_batch_iter_) ** -self.learning_decay
            statistics = self._running_statistics * (1.0 - rho) + statistics * rho
        self._m_step(statistics)
        self.n_batch_iter_ += 1
        return log_likelihood

    @property
    def _step_unit(self):
        return "pass" if self.learning_method == "online" else "it"

    def _iterate(self, data, previous=-np.inf):
        if self.learning_method == "batch":
            return super()._iterate(data, previous)
        # A pass of online EM over mini-batches (a dask X: block by block).
        log_likelihood = 0.0
        mask = None if data.missing is None else data.missing.mask
        for X, sample_weight in _blocks_in_memory(data.X, data.sample_weight):
            for rows in gen_batches(len(X), self.batch_size):
                weight = None if sample_weight is None else sample_weight[rows]
                missing = None if mask is None else mask[rows]
                if weight is None or np.any(weight):
                    log_likelihood += self._stepwise_step(X[rows], weight, missing)
        return log_likelihood / data.total_weight

    def _m_step(self, statistics, last=False):
        # Kept per unit weight: online EM (partial_fit) blends batches into
        # them, after a batch fit too.
        self._running_statistics = statistics * (1.0 / statistics.total_weight)
        nk, self.means_, self.covariances_ = self._parameters_from_statistics(
            statistics
        )
        self.weights_ = nk / nk.sum()
        self.precisions_cholesky_ = self._cov.precision_cholesky(
            self.covariances_, self._fit_dtype, gk.collapse_floor(statistics.extent)
        )

    def _parameters_from_statistics(self, statistics):
        """Closed-form maximisation: (nk, means, covariances), in float64."""
        # As scikit-learn: 10 eps keeps empty components finite, and the means
        # are sum r x / nk.
        nk = statistics.weight + 10 * np.finfo(np.float64).eps
        means = statistics.means * (statistics.weight / nk)[:, None]
        scatter, d = statistics.scatter, means.shape[1]
        if self.covariance_type == "full":
            covariances = scatter / nk[:, None, None]
            covariances[:, np.arange(d), np.arange(d)] += self.reg_covar
        elif self.covariance_type == "tied":
            covariances = scatter / nk.sum()
            covariances.flat[:: d + 1] += self.reg_covar
        elif self.covariance_type == "diag":
            covariances = scatter / nk[:, None] + self.reg_covar
        else:
            covariances = scatter / (nk * d) + self.reg_covar
        return nk, means, covariances

    # What a run of EM leaves: the best run's is kept (online EM's state too).
    _PARAMETERS = (
        "weights_",
        "means_",
        "covariances_",
        "precisions_cholesky_",
        "_running_statistics",
        "n_batch_iter_",
    )

    def _get_parameters(self):
        return tuple(getattr(self, name) for name in self._PARAMETERS)

    def _set_parameters(self, params):
        for name, value in zip(self._PARAMETERS, params, strict=True):
            setattr(self, name, value)

    def _finalize(self, data):
        # Computed in float64; returned in the dtype of the data, as scikit-learn.
        for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
            setattr(self, name, np.asarray(getattr(self, name), dtype=self._fit_dtype))
        self.precisions_ = self._cov.precisions(self.precisions_cholesky_)

    def _n_parameters(self):
        n_features = self.means_.shape[1]
        cov_params = self._cov.n_parameters(self.n_components, n_features)
        return int(cov_params + n_features * self.n_components + self.n_components - 1)

    # ------------------------------------------------------------ inference
    def _map_chunks(self, X, reduce, shape, dtype=None, posterior=False):
        """``reduce`` applied to log(weight_k p(x | k)) (n_rows, K) of each
        chunk of rows, gathered into an array of shape (n_samples, *shape).

        Chunks are sized by scikit-learn's working_memory and run on several
        threads (see BaseEM._sum_over_chunks). A row so far away that its
        quadratic form overflows gets -inf, never NaN. Where ``reduce`` needs
        the log-densities only up to a constant a row (``posterior``), the
        tied model leaves out its shared -1/2 y^T P y: far from the data it
        would swamp the differences between components.
        """
        cov = self._cov
        weights, means, U = self._float64_parameters()
        # Rows about the mixture's mean, or about their nearest component's.
        shift = weights @ means
        models = {}

        def reduced(rows):
            with np.errstate(over="ignore", invalid="ignore"):
                Xc = X[rows]
                features = gk.rows_about_shift(cov, Xc, shift)
                Y = features.y
                radius = float(np.sqrt(np.max(np.einsum("ij,ij->j", Y, Y))))
                if np.isnan(radius):  # NaN entries, seen for free: missing values
                    del features, Y  # the missing-value kernels' memory is their own
                    return reduce(self._missing_log_prob(Xc).T)
                nearest = gk.needs_nearest_reference(cov, U, means, shift, radius)
                if nearest not in models:
                    models[nearest] = gk.Model(cov, weights, means, U, shift, nearest)
                model = models[nearest]
                features, order, groups = gk.chunk_features(cov, features, model.refs)
                log_prob = gk.log_prob(model, features, groups)
                if cov is gk.Tied and not posterior:
                    log_prob -= 0.5 * cov.squared_norm(U, Y)
                del features, Y  # before the reduction's temporaries exist
                log_prob[np.isnan(log_prob)] = -np.inf
                if order is not None:
                    log_prob[:, order] = log_prob.copy()
                return reduce(log_prob.T)

        chunks = list(gen_batches(X.shape[0], rows_per_chunk(self._row_bytes(X))))
        out = np.empty((X.shape[0], *shape), dtype=dtype or X.dtype)
        for rows, value in zip(chunks, map_in_order(reduced, chunks), strict=True):
            out[rows] = value
        return out

    def _missing_log_prob(self, X):
        """log(weight_k p(x_o | k)) (K, n) of rows with NaN entries."""
        model = gk.MissingModel(self._cov, *self._float64_parameters())
        X = X.astype(np.float64, copy=False)
        out = np.empty((self.n_components, len(X)))
        for rows, _, log_prob, _, _ in _missing_parts(model, X):
            out[:, rows] = log_prob
        out[np.isnan(out)] = -np.inf
        return out

    def _impute(self, X, sample_posterior=False, random_state=None):
        """X with each NaN replaced from p(x_m | x_o) under the fitted model.

        ``X`` is a validated float array (n, d). Each NaN becomes E[x_m | x_o]
        = sum_k r_k(x_o) E[x_m | x_o, k], the responsibilities taken from the
        observed entries; with ``sample_posterior=True`` one draw instead: a
        component from the responsibilities, then the Gaussian conditional.
        Returns a new array of X's dtype; a row with nothing observed gets the
        mixture's mean (or a draw from the mixture).
        """
        rng = check_random_state(random_state)
        model = gk.MissingModel(self._cov, *self._float64_parameters())
        out = X.copy()
        incomplete = np.flatnonzero(np.isnan(X).any(axis=1))
        if not incomplete.size:  # complete data: nothing to fill
            return out
        step = rows_per_chunk(self._missing_row_bytes(X, X.shape[1]))
        for chunk in gen_batches(len(incomplete), step):
            self._impute_rows(out, incomplete[chunk], model, sample_posterior, rng)
        return out

    @staticmethod
    def _impute_rows(out, incomplete, model, sample_posterior, rng):
        """Fill the NaN of rows ``incomplete`` of ``out`` in place (_impute)."""
        Xm = out[incomplete].astype(np.float64)
        for rows, idx, log_prob, Y, C in _missing_parts(model, Xm):
            resp = gk.log_normalize(log_prob)[0]  # (K, n)
            filled = Y + model.means[:, None]  # (K, n, d)
            if not sample_posterior:
                values = np.einsum("kn,knd->nd", resp, filled)
            else:
                cumulative = np.cumsum(resp, axis=0)
                u = rng.uniform(size=len(rows)) * cumulative[-1]
                k = np.minimum(np.sum(cumulative < u, axis=0), len(resp) - 1)
                values = filled[k, np.arange(len(rows))]
                values += _conditional_noise(model, C, idx, k, values.shape, rng)
            block = out[incomplete[rows]]
            mask = np.isnan(block)
            block[mask] = values[mask]
            out[incomplete[rows]] = block

    def _score_samples(self, X):
        scores = self._map_chunks(X, _log_sum_exp, ())
        # A row with nothing observed scores log 1 exactly, where the
        # logsumexp of the log weights would round. (Its first entry being
        # NaN is a test that costs nothing on complete data.)
        rows = np.flatnonzero(np.isnan(X[:, 0]))
        scores[rows[np.isnan(X[rows]).all(axis=1)]] = 0.0
        return scores

    def predict(self, X):
        """Most probable component of each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            Component labels.
        """
        return self._map_rows(self._predict, X, dtype=np.intp)

    def _predict(self, X):
        argmax = partial(np.argmax, axis=1)
        return self._map_chunks(X, argmax, (), np.intp, posterior=True)

    def predict_proba(self, X):
        """Posterior probability p(z = k | x) of each component for each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        resp : ndarray of shape (n_samples, n_components)
            Responsibilities; each row sums to one.
        """
        return self._map_rows(self._predict_proba, X, self.n_components)

    def _predict_proba(self, X):
        # A row so far away that no log-density is finite has no defined
        # posterior: NaN, as scikit-learn's, without a warning.
        return self._map_chunks(X, _normalized, (self.n_components,), posterior=True)

    def transform(self, X):
        """The posterior p(z | x): responsibilities, as :meth:`predict_proba`.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        resp : ndarray of shape (n_samples, n_components)
            Responsibilities; each row sums to one.
        """
        return self.predict_proba(X)

    def fit_predict(self, X, y=None, sample_weight=None):
        """Fit the model and return the most probable component of each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.
        y : Ignored
            Not used, present for API consistency by convention.
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the samples, as in :meth:`fit`.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            Component labels.
        """
        return self.fit(X, sample_weight=sample_weight).predict(X)

    @property
    def _n_features_out(self):
        return self.n_components

    def _sample(self, n_samples, random_state):
        counts = random_state.multinomial(n_samples, self.weights_)
        factors = self._cov.factors(self.covariances_)
        n_features = self.means_.shape[1]
        X = np.empty((n_samples, n_features), dtype=self.means_.dtype)
        start = 0
        for k, count in enumerate(counts):
            noise = random_state.standard_normal((count, n_features))
            factor = factors[min(k, len(factors) - 1)]  # tied: one shared factor
            # A (d, d) Cholesky factor multiplies; a vector of std scales.
            scaled = noise @ factor.T if factor.ndim == 2 else noise * factor
            X[start : start + count] = self.means_[k] + scaled
            start += count
        return X, np.repeat(np.arange(self.n_components), counts)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


@dataclass
class _Data:
    """The training data and what EM precomputes from it once."""

    X: np.ndarray
    sample_weight: np.ndarray | None  # scaled to mean one
    shift: np.ndarray  # (d,) weighted data mean, float64: rows are about it
    total_weight: float
    radius: float  # a bound on the largest distance of a row from the shift
    exact_radius: bool  # whether it is that distance itself
    scatter: np.ndarray | None  # (d, d) sum w y y^T about the shift; tied only
    missing: "_Missing | None" = None  # rows with NaN entries, if any

    @property
    def extent(self):
        """A bound on the largest |x|, for the rounding level of collapse."""
        return float(np.max(np.abs(self.shift))) + self.radius


# Rows of a dask X that its initialisation is drawn from (at least 50 per
# component).
INIT_SAMPLE_ROWS = 10_000


def _block_statistics(X, sample_weight, model):
    """A dask block's E-step statistics under ``model``'s parameters."""
    return model._expected_statistics(X, sample_weight)


def _blocks_in_memory(X, sample_weight):
    """(rows, weights) in memory: X itself, or a dask X's blocks in turn."""
    if not is_dask_array(X):
        yield X, sample_weight
        return
    import dask

    weights = [None] * X.numblocks[0]
    if sample_weight is not None:
        weights = sample_weight.to_delayed().ravel()
    for block, weight in zip(X.to_delayed().ravel(), weights, strict=True):
        block, weight = dask.compute(block, weight)
        yield checked_block(block), weight


@dataclass
class _Missing:
    """Rows with missing entries: the NaN mask and the chunks of rows the
    E-step runs over, (rows, idx, gk.MissingRows) (see gk.missing_groups;
    idx is None for diagonal structures); ``init`` is the data the start is
    drawn from."""

    mask: np.ndarray
    tasks: list
    init: "_Data | None" = None


def _missing_parts(model, X):
    """(rows, idx, log_prob, Y, C) of groups of rows of X (n, d) with NaN,
    from gk.missing_log_prob: rows grouped by pattern (dense structures)."""
    missing = np.isnan(X)
    if model.dense:
        groups = gk.missing_groups(missing)
    else:
        groups = [(np.arange(len(X)), None)]
    for rows, idx in groups:
        yield rows, idx, *gk.missing_log_prob(model, gk.missing_rows(X[rows]), idx)


def _conditional_noise(model, C, idx, k, shape, rng):
    """Draws from N(0, Cov[x_m | x_o, k]) at each row's missing entries (0
    elsewhere), for the component ``k`` (n,) drawn for each row."""
    noise = np.zeros(shape)
    n = len(k)
    if not model.dense:
        z = rng.standard_normal(shape)
        return z * np.sqrt(C[k])
    m = idx.shape[1]
    if m == 0:
        return noise
    # Each row's m x m covariance, for its component: C is (m, m, G, K or 1).
    gg = np.arange(n) if C.shape[2] > 1 else np.zeros_like(k)
    kk = k if C.shape[3] > 1 else np.zeros_like(k)
    covariances = C[:, :, gg, kk].transpose(2, 0, 1)
    factors = np.linalg.cholesky(covariances)
    draws = np.einsum("nij,nj->ni", factors, rng.standard_normal((n, m)))
    np.put_along_axis(noise, np.broadcast_to(idx, (n, m)), draws, axis=1)
    return noise


def _normalized(log_prob):
    return gk.log_normalize(log_prob.T)[0].T


def _log_sum_exp(log_prob):
    return gk.log_sum_exp(log_prob.T)


def _first_sums(X, weight, resp, *, shift):
    """Sums of r and of r (x - shift) of a chunk: (K,), (K, d)."""
    resp = resp.T if weight is None else resp.T * weight
    return resp.sum(axis=1), resp @ np.subtract(X, shift, dtype=np.float64)


def _chunk_statistics(X, weight, resp=None, *, cov, shift, model=None, refs=None):
    """Sums of a chunk about the references, for the M-step.

    With ``resp`` (n, K) given (initialisation) they are taken for those
    responsibilities about ``refs``; else this is the E-step under ``model``,
    and the chunk's log-likelihood is summed too. Returns counts, first,
    second (see gk.resp_statistics), the log-likelihood (without the tied
    model's -1/2 y^T P y) and, for the tied model, sum rho y y^T with rho the
    row's total weighted responsibility (rows that no component covers
    contribute w x x^T about the origin, as scikit-learn's tied start).
    """
    refs = model.refs if refs is None else refs
    features, order, groups = gk.chunk_features(
        cov, gk.rows_about_shift(cov, X, shift), refs
    )
    Y = features.y
    if weight is not None and order is not None:
        weight = weight[order]
    if resp is None:
        resp, log_norm = gk.log_normalize(gk.log_prob(model, features, groups))
        log_likelihood = log_norm.sum() if weight is None else log_norm @ weight
    else:
        resp = (resp if order is None else resp[order]).T.astype(np.float64)
        log_likelihood = 0.0
    if weight is not None:
        resp *= weight
    counts, first, second = gk.resp_statistics(features, groups, resp)
    rows_scatter = 0.0
    if cov is gk.Tied and (len(refs) > 1 or model is None):
        rho = resp.sum(axis=0)
        rows_scatter = Y @ (Y * rho).T
        uncovered = rho == 0
        if model is None and np.any(uncovered):
            Xu = X[uncovered if order is None else order[uncovered]].astype(np.float64)
            wu = 1.0 if weight is None else weight[uncovered][:, None]
            rows_scatter += Xu.T @ (Xu * wu)
    return counts, first, second, log_likelihood, rows_scatter


def _invert(precisions, covariance_type):
    """Covariances from user-given precisions, in float64."""
    precisions = precisions.astype(np.float64)
    if covariance_type in ("diag", "spherical"):
        return 1.0 / precisions
    return np.linalg.inv(precisions)
