"""Helpers shared by every estimator, and scikit-learn's private names in one place.

scikit-learn may move its private helpers in any release. They are imported
here alone, so that the supported range declared in pyproject.toml is checked
in one file (tests/test_packaging.py) and a move breaks one import, not many.
"""

from contextlib import contextmanager

from sklearn.base import _fit_context
from sklearn.utils._chunking import get_chunk_n_rows
from sklearn.utils._param_validation import Interval, Options, StrOptions

__all__ = [
    "Interval",
    "Options",
    "StrOptions",
    "_fit_context",
    "get_chunk_n_rows",
    "restored_on_error",
]


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
