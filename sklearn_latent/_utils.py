"""Helpers shared by every estimator, and scikit-learn's private names in one place.

scikit-learn may move its private helpers in any release. They are imported
here alone, so that a move breaks one import, not many, and the range of
scikit-learn versions they are tested with is declared in pyproject.toml
(``scikit-learn>=1.6,<1.10``; checked by tests/test_packaging.py and by
``python3 dev.py test-min`` on the lowest versions).

Private names used, none with a small public replacement:

- ``sklearn.base._fit_context`` and ``sklearn.utils._param_validation``
  (``HasMethods``, ``Interval``, ``Options``, ``StrOptions``): parameter
  validation as in scikit-learn's own estimators (since 1.2/1.3);
- ``sklearn.utils.validation._check_sample_weight`` with
  ``ensure_non_negative`` (the keyword since 1.6), and ``_num_samples``.

``get_chunk_n_rows`` is written here on the public ``working_memory`` setting
instead of importing ``sklearn.utils._chunking``.
"""

import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from functools import cache

import numpy as np
from joblib.parallel import get_active_backend
from sklearn import get_config
from sklearn.base import _fit_context
from sklearn.utils._param_validation import HasMethods, Interval, Options, StrOptions
from sklearn.utils.validation import _check_sample_weight, _num_samples
from threadpoolctl import ThreadpoolController

__all__ = [
    "HasMethods",
    "Interval",
    "Options",
    "StrOptions",
    "_check_sample_weight",
    "_fit_context",
    "_num_samples",
    "check_sample_weight",
    "get_chunk_n_rows",
    "map_in_order",
    "n_threads",
    "one_blas_thread",
    "restored_on_error",
]


def get_chunk_n_rows(row_bytes, *, max_n_rows=None, working_memory=None):
    """How many rows of ``row_bytes`` bytes each fit in ``working_memory`` MiB.

    The rule of scikit-learn's private ``sklearn.utils._chunking.get_chunk_n_rows``
    on the public ``sklearn.get_config()["working_memory"]`` (the default when
    ``working_memory`` is None): at most ``max_n_rows``, at least 1, with a
    UserWarning when a single row does not fit.
    """
    if working_memory is None:
        working_memory = get_config()["working_memory"]
    n_rows = int(working_memory * 2**20 // row_bytes)
    if max_n_rows is not None:
        n_rows = min(n_rows, max_n_rows)
    if n_rows < 1:
        warnings.warn(
            f"Could not adhere to working_memory config. Currently "
            f"{working_memory:.0f}MiB, {np.ceil(row_bytes * 2**-20):.0f}MiB required.",
            stacklevel=2,
        )
        n_rows = 1
    return n_rows


def check_sample_weight(sample_weight, X, *, dtype=None):
    """Validated ``sample_weight``: one finite, non-negative weight per row of X,
    not all zero.

    scikit-learn's ``_check_sample_weight`` rejects all-zero weights itself
    only from 1.9; on 1.6-1.8 they would reach the estimator, so the check is
    made here, with scikit-learn 1.9's message.
    """
    sample_weight = _check_sample_weight(
        sample_weight, X, dtype=dtype, ensure_non_negative=True
    )
    if not np.any(sample_weight):
        raise ValueError("Sample weights must contain at least one non-zero number.")
    return sample_weight


@contextmanager
def restored_on_error(estimator):
    """Put back every attribute of ``estimator`` as it was if the block raises.

    A fit that fails must leave the previously fitted model exactly as it was,
    not new parameters beside old attributes. Attributes are restored by
    reference, so the block must rebind attributes, never mutate them in place.
    """
    saved = estimator.__dict__.copy()
    try:
        yield
    except BaseException:
        estimator.__dict__.clear()
        estimator.__dict__.update(saved)
        raise


@cache
def _threadpools():
    return ThreadpoolController()


def _blas_threads():
    """The most threads any loaded BLAS may use now."""
    blas = [i["num_threads"] for i in _threadpools().info() if i["user_api"] == "blas"]
    return max(blas, default=1)


def n_threads(blas_threads=None):
    """Threads for a pass over row chunks: as many as BLAS may use now
    (``blas_threads``, if known).

    threadpoolctl's limits therefore apply (``threadpool_limits(1)`` runs
    one thread), and so does joblib's ``parallel_config(n_jobs=...)``, as
    an upper bound. Inside joblib's worker processes BLAS, and so this, is
    limited to the worker's share of the cores.
    """
    threads = _blas_threads() if blas_threads is None else blas_threads
    n_jobs = get_active_backend()[1]
    if n_jobs is not None:
        from joblib import effective_n_jobs

        threads = min(threads, effective_n_jobs(n_jobs))
    return max(threads, 1)


def one_blas_thread():
    """A context in which BLAS runs on one thread (threadpoolctl)."""
    return _threadpools().limit(limits=1, user_api="blas")


def map_in_order(func, items, threads=None):
    """Yield ``func(item)`` for each item, in order, computed on ``threads``
    threads (default :func:`n_threads`).

    With several threads BLAS runs one thread each, as scikit-learn's KMeans
    does: chunks of rows are small products, faster side by side than each
    split across cores. A chunk's result then never depends on the number of
    threads, so sums taken in order are the same, bit for bit, on any number.
    """
    blas_threads = _blas_threads()
    threads = n_threads(blas_threads) if threads is None else threads
    # Setting and restoring a limit costs ~35 us: none where BLAS already
    # runs one thread (under threadpool_limits(1), or factor analysis's
    # small scatters).
    single = one_blas_thread() if blas_threads > 1 else nullcontext()
    if threads == 1 or len(items) < 2:
        with single:
            yield from map(func, items)
        return
    with single, ThreadPoolExecutor(min(threads, len(items))) as pool:
        yield from pool.map(func, items)


def column_reduce(ufunc, X, fold=16, **kwargs):
    """``ufunc.reduce(X, axis=0, **kwargs)`` of rows X (n, d), ``fold`` rows
    side by side.

    numpy reduces a C-ordered X over its rows with one inner loop of d
    values a row; viewed as (n / fold, fold d) its loops are ``fold`` times
    longer: a data summary's three reductions took 7.7 against 16.6 ms at
    100,000 x 50. Minima and maxima are the same; sums differ by rounding.
    """
    n_rows, n_columns = X.shape
    folded = n_rows - n_rows % fold
    if not X.flags.c_contiguous or folded == 0:
        return ufunc.reduce(X, axis=0, **kwargs)
    wide = X[:folded].reshape(folded // fold, fold * n_columns)
    out = ufunc.reduce(wide, axis=0, **kwargs).reshape(fold, n_columns)
    out = ufunc.reduce(out, axis=0)
    if folded < n_rows:
        out = ufunc(out, ufunc.reduce(X[folded:], axis=0, **kwargs))
    return out
