"""dask arrays: fit and infer block by block, never gathering X on the client.

dask is optional (``pip install "sklearn-latent[dask]"``) and imported only
when a dask array is given. Work runs on whichever scheduler is active: local
threads by default, the workers of a ``distributed.Client`` when one exists.
Nothing here assumes that the cluster is local: a block's statistics are
computed where the block is, and only small values travel.
"""

from dataclasses import dataclass
from functools import partial, reduce
from operator import add

import numpy as np
from sklearn.utils import check_array
from sklearn.utils.random import sample_without_replacement

from ._utils import check_sample_weight, column_reduce

# Partial sums combined per task of the tree reduction: a few levels for
# thousands of blocks, and no task holds more than this many small values.
BRANCHING = 8


def is_dask_array(X):
    """Whether X is a dask array, without importing dask."""
    return any(
        cls.__name__ == "Array" and cls.__module__.startswith("dask.array")
        for cls in type(X).__mro__
    )


def check_dask_array(estimator, X, *, reset, ensure_min_samples=1):
    """A 2-D float dask array with one block across the columns, and its
    features checked against (or, with ``reset``, recorded on) the estimator.

    Values are checked block by block when they are computed (see
    :func:`checked_block`): checking them here would cost a pass over X.
    """
    if X.ndim != 2:
        raise ValueError(
            f"Expected a 2D array, got a dask array of {X.ndim} dimension(s). "
            "Reshape your data."
        )
    if any(np.isnan(size) for size in X.shape):
        raise ValueError(
            "The dask array has unknown chunk sizes; call X.compute_chunk_sizes() "
            "first."
        )
    if X.dtype not in (np.float64, np.float32):
        if X.dtype.kind not in "biuf":
            raise ValueError(f"dtype='numeric' is not compatible with {X.dtype}.")
        X = X.astype(np.float64)
    if X.numblocks[1] > 1:
        X = X.rechunk({1: -1})
    n_samples, n_features = X.shape
    if n_features == 0:
        raise ValueError(
            f"0 feature(s) (shape={X.shape}) while a minimum of 1 is required."
        )
    if n_samples < ensure_min_samples:
        raise ValueError(
            f"Found array with {n_samples} sample(s) (shape={X.shape}) while a "
            f"minimum of {ensure_min_samples} is required."
        )
    if reset:
        estimator.n_features_in_ = n_features
        estimator.__dict__.pop("feature_names_in_", None)
    elif n_features != estimator.n_features_in_:
        raise ValueError(
            f"X has {n_features} features, but {type(estimator).__name__} is "
            f"expecting {estimator.n_features_in_} features as input."
        )
    return X


def refuse_in_partial_fit(X):
    """partial_fit takes one batch in memory, never a whole dask array."""
    if is_dask_array(X):
        raise TypeError(
            "partial_fit takes one batch in memory; pass the blocks of a "
            "dask array one by one (X.blocks[i].compute()), or fit it."
        )


def check_dask_weight(sample_weight, X):
    """``sample_weight`` as a dask array chunked like the rows of X.

    A numpy array is checked at once; a dask array's values are checked block
    by block when computed.
    """
    import dask.array as da

    if not is_dask_array(sample_weight):
        sample_weight = check_sample_weight(sample_weight, X, dtype=X.dtype)
        return da.from_array(sample_weight, chunks=(X.chunks[0],))
    if sample_weight.shape != (X.shape[0],):
        raise ValueError(
            f"sample_weight.shape == {sample_weight.shape}, expected {(X.shape[0],)}!"
        )
    return sample_weight.astype(X.dtype).rechunk((X.chunks[0],))


def checked_block(X):
    """A block of rows checked as scikit-learn checks numpy input, NaN refused."""
    try:
        return check_array(X, dtype=[np.float64, np.float32])
    except ValueError as error:
        if "NaN" not in str(error):
            raise
        raise ValueError(
            f"{error} Missing entries (NaN) are taken in numpy input only, not "
            "yet in dask arrays: pass X.compute(), or impute them first."
        ) from None


def checked_weight(weight):
    """A block of sample weights checked (finite, non-negative), as float64;
    None stays None."""
    if weight is None:
        return None
    weight = np.asarray(weight, dtype=np.float64)
    if not np.all(np.isfinite(weight)):
        raise ValueError("Input sample_weight contains NaN or infinity.")
    if np.any(weight < 0):
        raise ValueError("Negative values in data passed to sample_weight")
    return weight


def sum_over_blocks(block_sum, X, sample_weight, *args):
    """``block_sum(X_block, weight_block, *args)`` summed over the row blocks.

    The partial sums (anything with ``+``) are combined in a tree on the
    active scheduler; only the total comes back to the client. ``args`` are
    sent once, not once per block.
    """
    import dask

    blocks = X.to_delayed().ravel()
    weights = (
        [None] * len(blocks)
        if sample_weight is None
        else sample_weight.to_delayed().ravel()
    )
    args = [dask.delayed(arg, pure=False) for arg in args]
    parts = [
        dask.delayed(block_sum)(b, w, *args)
        for b, w in zip(blocks, weights, strict=True)
    ]
    while len(parts) > 1:
        parts = [
            dask.delayed(_total)(*parts[i : i + BRANCHING])
            for i in range(0, len(parts), BRANCHING)
        ]
    (total,) = dask.compute(parts[0])
    return total


def _total(*parts):
    return reduce(add, parts)


def map_rows(func, X, n_columns, dtype):
    """``func`` over the row blocks of X: a lazy dask array chunked like X's
    rows, of shape (n_samples,) where ``n_columns`` is None, else
    (n_samples, n_columns)."""
    func = partial(_on_checked_block, func)
    meta = np.empty((0,) if n_columns is None else (0, n_columns), dtype=dtype)
    if n_columns is None:
        return X.map_blocks(func, drop_axis=1, dtype=dtype, meta=meta)
    return X.map_blocks(
        func, chunks=(X.chunks[0], (n_columns,)), dtype=dtype, meta=meta
    )


def _on_checked_block(func, X):
    return func(checked_block(X))


@dataclass(frozen=True)
class Summary:
    """What one pass over the rows says about them: a small value that adds.

    Rows are checked (finite numbers, non-negative finite weights) as they
    are read.
    """

    n_samples: int
    total_weight: float
    max_weight: float
    weighted_sum: np.ndarray  # (d,) sum w x, float64
    minimum: np.ndarray  # (d,)
    maximum: np.ndarray  # (d,)

    def __add__(self, other):
        return Summary(
            self.n_samples + other.n_samples,
            self.total_weight + other.total_weight,
            max(self.max_weight, other.max_weight),
            self.weighted_sum + other.weighted_sum,
            np.minimum(self.minimum, other.minimum),
            np.maximum(self.maximum, other.maximum),
        )

    @property
    def mean(self):
        return self.weighted_sum / self.total_weight


def _block_summary(X, weight):
    return summary_of(checked_block(X), checked_weight(weight))


def summary_of(X, weight):
    """The :class:`Summary` of rows already checked (``weight`` None or
    float64)."""
    if weight is None:
        total, largest = float(len(X)), float(len(X) > 0)
        weighted_sum = column_reduce(np.add, X, dtype=np.float64)
    else:
        total, largest = float(weight.sum()), float(weight.max(initial=0.0))
        weighted_sum = weight @ X.astype(np.float64, copy=False)
    return Summary(
        len(X),
        total,
        largest,
        weighted_sum,
        column_reduce(np.minimum, X, initial=np.inf),
        column_reduce(np.maximum, X, initial=-np.inf),
    )


def summarise(X, sample_weight):
    """One pass over a dask X: a :class:`Summary`; values are checked on the
    way, and weights that are all zero are refused."""
    summary = sum_over_blocks(_block_summary, X, sample_weight)
    if summary.total_weight == 0:
        raise ValueError("Sample weights must contain at least one non-zero number.")
    return summary


def sample_rows(X, sample_weight, n_rows, random_state):
    """At most ``n_rows`` rows of a dask X drawn uniformly without
    replacement, and their weights, as numpy arrays on the client."""
    import dask

    n_samples = X.shape[0]
    if n_samples <= n_rows:
        rows = slice(None)
    else:
        # O(n_rows) memory: RandomState.choice without replacement would
        # permute all n_samples indices on the client.
        rows = np.sort(
            sample_without_replacement(n_samples, n_rows, random_state=random_state)
        )
    weight = None if sample_weight is None else sample_weight[rows]
    return dask.compute(X[rows], weight)
