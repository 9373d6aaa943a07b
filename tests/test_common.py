"""scikit-learn's estimator checks over every public estimator of the package."""

import copy
import dataclasses
import importlib.util
import inspect
import warnings

import numpy as np
import pytest
from sklearn.base import BaseEstimator
from sklearn.utils.estimator_checks import parametrize_with_checks

import sklearn_latent
from sklearn_latent import EMFactorAnalysis, EMGaussianMixture


def public_estimators():
    """Every estimator class the package exports, found rather than listed."""
    found = []
    for name in sklearn_latent.__all__:
        obj = getattr(sklearn_latent, name)
        if inspect.isclass(obj) and issubclass(obj, BaseEstimator):
            found.append(obj)
    return found


def test_every_export_is_found():
    exported = set(sklearn_latent.__all__)
    if importlib.util.find_spec("torch") is None:  # torch is an optional extra
        exported.discard("VAEEstimator")
    assert {cls.__name__ for cls in public_estimators()} == exported


@parametrize_with_checks([cls() for cls in public_estimators()])
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


def _fitted_state(estimator):
    """A deep snapshot of the fitted attributes that can be compared."""
    state = {}
    for name, value in vars(estimator).items():
        if name == "module_":  # the VAE's torch module: compare its weights
            value = {
                k: v.detach().clone().numpy() for k, v in value.state_dict().items()
            }
        state[name] = copy.deepcopy(value) if name != "optimizer_" else None
    return state


def _assert_same_state(before, after):
    assert set(before) == set(after)
    for name, value in before.items():
        if dataclasses.is_dataclass(value):  # e.g. running statistics
            value, after[name] = vars(value), vars(after[name])
        if isinstance(value, dict):
            for key in value:
                np.testing.assert_array_equal(value[key], after[name][key])
        elif value is not None:
            np.testing.assert_array_equal(
                np.asarray(value, dtype=object), np.asarray(after[name], dtype=object)
            )


# One refit per estimator that fails after validation has already reset
# n_features_in_: the earlier model must come back whole.
FAILING_REFITS = {
    "EMGaussianMixture": ({"n_components": 3}, np.ones((2, 5))),
    "EMFactorAnalysis": ({"n_components": 3}, np.ones((4, 2))),
    "VAEEstimator": ({"likelihood": "bernoulli", "max_iter": 2}, -np.ones((8, 5))),
}


@pytest.mark.parametrize(
    "cls",
    [cls for cls in public_estimators() if cls.__name__ in FAILING_REFITS],
    ids=lambda c: c.__name__,
)
def test_failed_refit_leaves_the_fitted_model_as_it_was(cls):
    params, X_bad = FAILING_REFITS[cls.__name__]
    X = np.random.RandomState(0).uniform(size=(40, 3))
    estimator = cls(**params, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        estimator.fit(X)
    before = _fitted_state(estimator)
    scores = estimator.score_samples(X)
    with pytest.raises(ValueError):
        estimator.fit(X_bad)
    _assert_same_state(before, _fitted_state(estimator))
    np.testing.assert_array_equal(estimator.score_samples(X), scores)


@pytest.mark.parametrize(
    "estimator, change",
    [
        (EMGaussianMixture(2), {"n_components": 3}),
        (EMGaussianMixture(2), {"covariance_type": "diag"}),
        (EMFactorAnalysis(2), {"n_components": 1}),
        (EMFactorAnalysis(2), {"noise": "isotropic"}),
    ],
    ids=repr,
)
def test_warm_start_refuses_a_model_of_another_shape(estimator, change):
    X = np.random.RandomState(0).randn(100, 3)
    estimator.set_params(warm_start=True, max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        estimator.fit(X)
        fitted = _fitted_state(estimator)
        with pytest.raises(ValueError, match="warm_start=True.*other features"):
            estimator.fit(np.c_[X, X[:, 0]])
        original = {name: getattr(estimator, name) for name in change}
        estimator.set_params(**change)
        with pytest.raises(ValueError, match=f"warm_start=True.*{next(iter(change))}"):
            estimator.fit(X)
    estimator.set_params(**original)
    _assert_same_state(fitted, _fitted_state(estimator))
