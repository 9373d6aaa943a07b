"""scikit-learn's estimator checks over every public estimator of the package."""

import inspect

from sklearn.base import BaseEstimator
from sklearn.utils.estimator_checks import parametrize_with_checks

import sklearn_latent


def public_estimators():
    """Every estimator class the package exports, found rather than listed."""
    found = []
    for name in sklearn_latent.__all__:
        obj = getattr(sklearn_latent, name)
        if inspect.isclass(obj) and issubclass(obj, BaseEstimator):
            found.append(obj)
    return found


def test_every_export_is_found():
    assert len(public_estimators()) == len(sklearn_latent.__all__)


@parametrize_with_checks([cls() for cls in public_estimators()])
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
