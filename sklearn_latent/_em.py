"""The Expectation-Maximisation loop, written once for every EM model.

A model subclasses :class:`BaseEM` and says only how to

- summarise the data once before iterating (``_prepare``; by default the data
  itself, factor analysis keeps only a mean and a scatter matrix),
- initialise its parameters from that summary (``_initialize``),
- compute the expected sufficient statistics of the data and their mean
  log-likelihood under the current parameters (``_e_step``, usually summed over
  row chunks with :meth:`BaseEM._sum_over_chunks`),
- turn statistics into parameters in closed form (``_m_step``),
- get and set its parameters, compute per-sample log-likelihoods
  (``_score_samples``), draw samples (``_sample``) and count its free
  parameters (``_n_parameters``).

Everything else lives here: validation, ``n_init`` restarts, ``warm_start``,
convergence, the ``lower_bounds_`` history, warnings, ``verbose`` output and
``sample_weight`` handling.
"""

import warnings
from abc import ABCMeta, abstractmethod
from contextlib import nullcontext
from functools import cache
from numbers import Integral, Real
from time import perf_counter

import numpy as np
from joblib import cpu_count
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state, gen_batches
from sklearn.utils.validation import check_is_fitted, validate_data

from ._dask import (
    check_dask_array,
    check_dask_weight,
    is_dask_array,
    map_rows,
    refuse_in_partial_fit,
)
from ._progress import ProgressLine
from ._utils import (
    Interval,
    _fit_context,
    _num_samples,
    check_sample_weight,
    get_chunk_n_rows,
    map_in_order,
    restored_on_error,
)

# Rows per chunk at most: chunks this size keep the temporaries of one E-step in
# cache and amortise Python overhead; scikit-learn's `working_memory` can only
# lower it.
MAX_CHUNK_ROWS = 2048
# A pass that reads its temporaries again after building them (the full
# mixture's second-order features: built, then multiplied in the E-step and in
# the M-step) keeps a chunk's to about CACHE_BYTES, so that the later reads
# come from cache. At d=50, K=20 an iteration took 0.78 against 0.88 s on one
# thread and 0.45 against 0.50 s on two; 3 MiB gave 0.67 s on one thread but
# 0.47 s on two, where the overheads of twice as many chunks add up. Those
# overheads hold the GIL, so the budget grows with the cores beyond two: on a
# 16-core machine chunks of 512 rows took 0.118 s an iteration against 0.072 s
# for 2,048 rows. Not below MIN_CACHE_ROWS rows.
CACHE_BYTES = 6 * 2**20
MIN_CACHE_ROWS = 256


def rows_per_chunk(row_bytes, in_cache=False):
    """Rows per chunk of a pass over rows needing ``row_bytes`` of temporaries
    a row: one chunk in flight on every core fits in scikit-learn's
    ``working_memory``, and at most ``MAX_CHUNK_ROWS``; with ``in_cache``, a
    chunk's temporaries also keep to about ``CACHE_BYTES`` per two cores.

    The size depends on the machine, not on how many threads run now, so
    neither do the results (see :func:`map_in_order`).
    """
    n_rows = get_chunk_n_rows(_cores() * row_bytes, max_n_rows=MAX_CHUNK_ROWS)
    if in_cache:
        budget = CACHE_BYTES * max(1, _cores() // 2)
        n_rows = min(n_rows, max(MIN_CACHE_ROWS, budget // row_bytes))
    return n_rows


@cache
def _cores():
    # joblib reads the process's CPU quota and affinity on every call (about
    # 0.3 ms): once is enough for the chunk sizes of every pass.
    return cpu_count()


class BaseEM(DensityMixin, BaseEstimator, metaclass=ABCMeta):
    """Base class of the EM estimators: the loop, restarts and bookkeeping."""

    _parameter_constraints: dict = {
        "tol": [Interval(Real, 0.0, None, closed="left")],
        "max_iter": [Interval(Integral, 0, None, closed="left")],
        "random_state": ["random_state"],
        "warm_start": ["boolean"],
        "verbose": ["verbose"],
        "verbose_interval": [Interval(Integral, 1, None, closed="left")],
    }

    # Whether the model takes NaN in X as missing entries (issue 10): X is
    # then validated with NaN allowed, and ``_prepare`` gets its mask.
    _allow_nan = False

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = self._allow_nan
        return tags

    # ---------------------------------------------------------------- hooks
    def _check_parameters(self, X, sample_weight):
        """Check parameters against the data; raise ValueError if unusable."""

    def _prepare(self, X, sample_weight, missing=None):
        """Summarise the data once before iterating; passed to ``_e_step``.

        ``missing`` is None for complete data, else the boolean mask of X's
        NaN entries (only where ``_allow_nan``)."""
        return X, sample_weight

    @abstractmethod
    def _initialize(self, data, random_state, start=0):
        """Set the initial parameters; ``data`` is what ``_prepare`` returned,
        ``start`` which of :meth:`_n_starts` runs this is (a model whose
        restarts differ only by ``random_state`` ignores it)."""

    @abstractmethod
    def _e_step(self, data):
        """Return (statistics, mean log-likelihood under the current parameters)."""

    @abstractmethod
    def _m_step(self, statistics, last=False):
        """Set the parameters that maximise the expected complete log-likelihood.

        ``last``: the EM loop stops after this step (its E-step gained less
        than tol), so any step that does not lower the likelihood will do.
        """

    @abstractmethod
    def _get_parameters(self):
        """Return the fitted parameters as a tuple."""

    @abstractmethod
    def _set_parameters(self, params):
        """Set the parameters returned by ``_get_parameters`` (and derived ones)."""

    def _finalize(self, data):
        """Derive attributes once the best parameters are set (optional)."""

    @abstractmethod
    def _score_samples(self, X):
        """Per-sample log-likelihood of validated ``X``, shape (n_samples,)."""

    @abstractmethod
    def _sample(self, n_samples, random_state):
        """Draw ``n_samples`` from the joint p(x, z); return (X, Z)."""

    @abstractmethod
    def _n_parameters(self):
        """Number of free parameters of the model."""

    # ------------------------------------------------------------- the loop
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, sample_weight=None):
        """Estimate the model parameters with the EM algorithm.

        The model is fitted ``n_init`` times (where the estimator has that
        parameter) and the parameters with the highest log-likelihood are kept.
        Each run iterates E- and M-steps until the gain of the mean
        log-likelihood per sample is below ``tol`` or ``max_iter`` is reached,
        in which case a :class:`~sklearn.exceptions.ConvergenceWarning` is
        raised. With ``warm_start=True`` a second call resumes from the
        previous fit.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.
        y : Ignored
            Not used, present for API consistency by convention.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights of the samples: a weight multiplies the
            sample's contribution to every statistic, so an integer weight is
            the same as repeating the row and a zero weight ignores it.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        # A fit that raises leaves the previously fitted model as it was.
        with restored_on_error(self):
            return self._fit(X, sample_weight)

    def _validated(self, X, sample_weight, *, reset, hint, ensure_min_samples=1):
        """X and sample_weight checked for a fit: ``reset`` starts a new model,
        else the fitted one continues (``hint`` then says why other features
        are refused). Returns (X, sample_weight, missing): ``missing`` is
        None for complete data, else the mask of X's NaN entries."""
        on_dask = is_dask_array(X)
        try:
            if on_dask:
                X = check_dask_array(
                    self, X, reset=reset, ensure_min_samples=ensure_min_samples
                )
            else:
                X = validate_data(
                    self,
                    X,
                    dtype=[np.float64, np.float32],
                    ensure_min_samples=ensure_min_samples,
                    # check_scale below sees NaN and infinity in its pass.
                    ensure_all_finite=False,
                    reset=reset,
                )
        except ValueError as error:
            if reset or "features" not in str(error):
                raise
            raise ValueError(f"{error} {hint}") from error
        if not reset:
            self._check_warm_start()
        if on_dask:
            # Values, scale and weights are checked in the model's first pass.
            if sample_weight is not None:
                sample_weight = check_dask_weight(sample_weight, X)
            return X, sample_weight, None
        missing = None
        if check_scale(X):
            if not self._allow_nan:
                raise ValueError(
                    f"Input X contains NaN. {type(self).__name__} does not accept "
                    "missing values encoded as NaN."
                )
            missing = check_missing(X)
        if sample_weight is not None:
            sample_weight = check_sample_weight(sample_weight, X, dtype=X.dtype)
        return X, sample_weight, missing

    def _validated_batch(self, X, sample_weight):
        """A batch of partial_fit checked: (first, X, sample_weight, missing),
        ``first`` where no model is fitted yet (the batch then starts one)."""
        refuse_in_partial_fit(X)
        first = not hasattr(self, "converged_")
        return first, *self._validated(
            X,
            sample_weight,
            reset=first,
            hint="partial_fit continues the fitted model: every batch must have "
            "the features of the first.",
        )

    def _fit(self, X, sample_weight):
        do_init = not (self.warm_start and hasattr(self, "converged_"))
        X, sample_weight, missing = self._validated(
            X,
            sample_weight,
            reset=do_init,
            hint="warm_start=True continues from the fitted model; set "
            "warm_start=False to fit data with other features.",
            ensure_min_samples=2,
        )
        self._check_parameters(X, sample_weight)
        return self._run(self._prepare(X, sample_weight, missing), do_init)

    def _run(self, data, do_init):
        """EM on prepared ``data``: ``n_init`` runs from fresh starts where
        ``do_init`` (see :meth:`_n_starts`), else one continuing from the
        current parameters."""
        n_init = self._n_starts(data) if do_init else 1
        random_state = check_random_state(self.random_state)

        best_lower_bound, best_lower_bounds, best_converged = -np.inf, [], False
        for init in range(n_init):
            self._verbose_init_begin(init, n_init)
            with self._solver_context(data):
                if do_init:
                    self._initialize(data, random_state, start=init)
                lower_bound = -np.inf if do_init else self._warm_start_bound()
                lower_bounds, converged, n_iter = [], False, 0
                params = self._get_parameters()
                for n_iter in range(1, self.max_iter + 1):
                    previous = lower_bound
                    lower_bound = self._iterate(data, previous)
                    lower_bounds.append(lower_bound)
                    change = lower_bound - previous
                    self._verbose_iter_end(n_iter, lower_bound, change)
                    if abs(change) < self.tol:
                        converged = True
                        break
            if self.max_iter > 0:
                self._verbose_init_end(lower_bound, converged)
                params = self._get_parameters()
            # As scikit-learn: without iterations the last initialisation is kept.
            if init == 0 or lower_bound > best_lower_bound or self.max_iter == 0:
                best_params, best_n_iter = params, n_iter
                best_lower_bound, best_lower_bounds = lower_bound, lower_bounds
                best_converged = converged

        # Zero iterations is a request for the initialisation alone: no warning.
        if not best_converged and self.max_iter > 0:
            warnings.warn(
                "Best performing initialization did not converge. "
                "Try different init parameters, or increase max_iter, "
                "tol, or check for degenerate data.",
                ConvergenceWarning,
                stacklevel=3,
            )
        self._set_parameters(best_params)
        self._structure = self._structure_parameters()
        self.converged_ = best_converged
        self.n_iter_ = best_n_iter
        self.lower_bound_ = best_lower_bound
        self.lower_bounds_ = best_lower_bounds
        self._finalize(data)
        return self

    def _n_starts(self, data):
        """Runs from fresh starts, the best kept: ``n_init`` where the model
        has it."""
        return getattr(self, "n_init", 1)

    def _warm_start_bound(self):
        """The bound a warm start's first iteration is compared with: the
        fitted ``lower_bound_``, that of the E-step before the last M-step
        (scikit-learn's convention), so that the first change is the last
        M-step's gain."""
        return self.lower_bound_

    def _solver_context(self, data):
        """The context in which a run initialises and iterates: none by
        default."""
        return nullcontext()

    def _iterate(self, data, previous=-np.inf):
        """One EM iteration: E-step, then M-step; returns the mean
        log-likelihood under the parameters the E-step saw. ``previous`` is
        the last iteration's (none: -inf): the loop stops after this one if
        the gain is below tol, which the M-step is told."""
        statistics, lower_bound = self._e_step(data)
        if not np.isfinite(lower_bound):
            raise ValueError(self._not_finite_message())
        self._m_step(statistics, last=abs(lower_bound - previous) < self.tol)
        return lower_bound

    # Parameters that fix the shapes of the fitted model: warm_start cannot
    # carry a model over a change of any of them.
    _structure_names = ()

    def _structure_parameters(self):
        return {name: getattr(self, name) for name in self._structure_names}

    def _check_warm_start(self):
        changed = [
            name
            for name, value in self._structure_parameters().items()
            if self._structure.get(name) != value
        ]
        if changed:
            raise ValueError(
                "warm_start=True continues from the fitted model, but "
                f"{', '.join(changed)} changed since it was fitted "
                f"({', '.join(f'{n}={self._structure[n]!r}' for n in changed)} "
                "then); set warm_start=False to fit afresh."
            )

    def _not_finite_message(self):
        return (
            f"{type(self).__name__}: the log-likelihood became infinite or NaN. "
            "Scale the input data, or increase regularisation."
        )

    # ---------------------------------------------------------- chunking
    @staticmethod
    def _sum_over_chunks(
        chunk_statistics, X, sample_weight, row_bytes, *arrays, in_cache=False
    ):
        """Sum ``chunk_statistics(X_chunk, weight_chunk, *array_chunks)`` over rows.

        ``chunk_statistics`` returns a tuple of arrays (or floats); the tuples
        are summed element-wise. ``sample_weight`` may be None, and ``arrays``
        are further row-aligned arrays sliced like X. ``row_bytes`` is the
        memory one row of a chunk needs in temporaries, ``in_cache`` whether
        they should stay in cache (see :func:`rows_per_chunk`). Chunks run on
        :func:`n_threads` threads and are summed in order.
        """

        def statistics(rows):
            weight = None if sample_weight is None else sample_weight[rows]
            return chunk_statistics(X[rows], weight, *(a[rows] for a in arrays))

        total = None
        chunks = list(gen_batches(X.shape[0], rows_per_chunk(row_bytes, in_cache)))
        for stats in map_in_order(statistics, chunks):
            if total is None:
                total = list(stats)
            else:
                for i, value in enumerate(stats):
                    total[i] += value
        return tuple(total)

    @staticmethod
    def _chunks(row_bytes, X, *arrays):
        """Yield (X_chunk, *array_chunks): the same rows of X and of each of
        ``arrays`` (row-aligned arrays or None), chunked as in
        :meth:`_sum_over_chunks`."""
        for rows in gen_batches(X.shape[0], rows_per_chunk(row_bytes)):
            yield X[rows], *(None if a is None else a[rows] for a in arrays)

    # ------------------------------------------------------ public methods
    def _map_rows(self, method, X, n_columns=None, dtype=None):
        """``method(X)`` on validated rows; for a dask X, a lazy dask array of
        ``method`` over its row blocks (shape (n_samples,) where ``n_columns``
        is None, else (n_samples, n_columns); ``dtype`` defaults to X's)."""
        check_is_fitted(self)
        if is_dask_array(X):
            X = check_dask_array(self, X, reset=False)
            return map_rows(method, X, n_columns, dtype or X.dtype)
        X = validate_data(
            self,
            X,
            reset=False,
            dtype=[np.float64, np.float32],
            ensure_all_finite="allow-nan" if self._allow_nan else True,
        )
        return method(X)

    def score_samples(self, X):
        """Log-likelihood log p(x) of each sample under the fitted model.

        Parameters
        ----------
        X : array-like or dask array of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        log_prob : ndarray of shape (n_samples,)
            Log-likelihood of each sample; for a dask X, a lazy dask array
            chunked like X's rows.
        """
        return self._map_rows(self._score_samples, X)

    def score(self, X, y=None):
        """Mean log-likelihood per sample of ``X``; higher is better.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples.
        y : Ignored
            Not used, present for API consistency by convention.

        Returns
        -------
        log_likelihood : float
            Mean of :meth:`score_samples`.
        """
        return float(np.mean(self.score_samples(X)))

    def sample(self, n_samples=1):
        """Draw samples from the joint distribution p(x, z) of the fitted model.

        Uses ``random_state``, so that a fixed integer gives the same draws.

        Parameters
        ----------
        n_samples : int, default=1
            Number of samples to draw.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
            Observed samples.
        Z : ndarray
            The latent variables the samples were drawn from.
        """
        check_is_fitted(self)
        if not isinstance(n_samples, Integral) or n_samples < 1:
            raise ValueError(
                f"Invalid value for 'n_samples': {n_samples!r}. The sampling "
                "requires at least one sample."
            )
        return self._sample(int(n_samples), check_random_state(self.random_state))

    def bic(self, X):
        """Bayesian information criterion of the model on ``X``; lower is better.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        bic : float
            ``-2 log p(X) + n_parameters log n_samples``.
        """
        n_samples = _num_samples(X)
        return -2 * self.score(X) * n_samples + self._n_parameters() * np.log(n_samples)

    def aic(self, X):
        """Akaike information criterion of the model on ``X``; lower is better.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        aic : float
            ``-2 log p(X) + 2 n_parameters``.
        """
        return -2 * self.score(X) * _num_samples(X) + 2 * self._n_parameters()

    # ------------------------------------------------------------- verbose
    # What one iteration of the loop is, as the progress line counts it.
    _step_unit = "it"

    def _progress_line(self, stage=None, total=None, unit="it"):
        """The live line of ``verbose=1`` for one run, None at other levels.

        ``stage`` names the run when there are several: ``"restart 2/3"`` for
        ``n_init`` restarts, ``"pass 2"`` for each pass of an online or
        out-of-core fit. ``total`` is the most steps it can take (default
        ``max_iter``). Update it with ``update(step, lower_bound=...,
        change=..., tol=...)`` and end it with ``close("converged")`` or
        ``close("did not converge")`` (:class:`~sklearn_latent._progress.ProgressLine`).
        """
        if self.verbose != 1:
            return None
        label = type(self).__name__ + (f" {stage}" if stage else "")
        return ProgressLine(label, self.max_iter if total is None else total, unit=unit)

    def _verbose_init_begin(self, init, n_init):
        if self.verbose == 1:
            # Without iterations there is nothing to show.
            if self.max_iter:
                stage = f"restart {init + 1}/{n_init}" if n_init > 1 else None
                self._progress = self._progress_line(stage, unit=self._step_unit)
        elif self.verbose:
            print(f"Initialization {init}")
            self._init_time = self._iter_time = perf_counter()

    def _verbose_iter_end(self, n_iter, lower_bound, change):
        if not self.verbose:  # first: this runs every iteration
            return
        if self.verbose == 1:
            self._progress.update(
                n_iter, lower_bound=lower_bound, change=change, tol=self.tol
            )
        elif n_iter % self.verbose_interval == 0:
            now = perf_counter()
            print(
                f"  Iteration {n_iter}\t time lapse {now - self._iter_time:.5f}s"
                f"\t ll change {change:.5f}"
            )
            self._iter_time = now

    def _verbose_init_end(self, lower_bound, converged):
        if not self.verbose:
            return
        status = "converged" if converged else "did not converge"
        if self.verbose == 1:
            self._progress.close(status)
            del self._progress  # it holds stderr, which does not pickle
        else:
            seconds = perf_counter() - self._init_time
            print(
                f"Initialization {status}. time lapse {seconds:.5f}s\t "
                f"lower bound {lower_bound:.5f}."
            )


def check_scale(X, minimum=None, maximum=None):
    """Refuse infinite values, and data whose squares, summed over the data,
    overflow float64. Returns whether X holds NaN.

    ``minimum`` and ``maximum`` of X, where known, save the reductions.
    """
    fmax = np.finfo(np.float64).max
    if (
        minimum is None
        and X.size
        and X.dtype == np.float64
        and (X.flags.c_contiguous or X.flags.f_contiguous)
    ):
        # This runs on every fit: one BLAS pass gives the sum of squares,
        # finite only where every value is. With weights of mean one, no
        # weighted sum of squares exceeds n times it.
        values = X.ravel(order="K")
        with np.errstate(over="ignore", invalid="ignore"):
            total = float(np.dot(values, values))
        if np.isfinite(total):
            if total * X.shape[0] >= fmax:
                _refuse_scale(float(np.max(np.abs(X))))
            return False
    has_nan = False
    largest = 0.0
    if X.size:
        minimum = np.min(X) if minimum is None else minimum
        maximum = np.max(X) if maximum is None else maximum
        has_nan = bool(np.isnan(np.min(minimum)))
        if has_nan:
            minimum, maximum = np.nanmin(X), np.nanmax(X)
        largest = max(float(np.max(maximum)), -float(np.min(minimum)))
        if np.isinf(largest):
            raise ValueError(
                f"Input X contains infinity or a value too large for {X.dtype!r}."
            )
    if largest * np.sqrt(X.size) >= np.sqrt(fmax):
        _refuse_scale(largest)
    return has_nan


def _refuse_scale(largest):
    raise ValueError(
        f"X has values as large as {largest:.3g}: their squares summed over "
        "the data overflow float64. Rescale the data first, e.g. with "
        "sklearn.preprocessing.StandardScaler."
    )


def check_missing(X):
    """The mask of X's NaN entries, refusing rows or columns with nothing
    observed: they carry no information for a fit."""
    missing = np.isnan(X)
    empty_rows = np.flatnonzero(missing.all(axis=1))
    if empty_rows.size:
        raise ValueError(
            f"{empty_rows.size} row(s) of X are entirely NaN (the first is row "
            f"{empty_rows[0]}): a row with nothing observed cannot be fitted. "
            "Drop those rows."
        )
    empty_columns = np.flatnonzero(missing.all(axis=0))
    if empty_columns.size:
        raise ValueError(
            f"Column(s) {empty_columns.tolist()[:10]} of X are entirely NaN: "
            "nothing can be learnt about them. Drop those columns."
        )
    return missing
