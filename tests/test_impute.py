"""LatentImputer.

Until the models impute (issue 10: ``_impute`` and NaN in ``fit``), the
imputer is tested with a test double, ``ColumnStatistic``: a model whose
``_impute`` fills each NaN with its column's mean (or median), so that the
imputer must give exactly what SimpleImputer gives. The tests with the real
models skip until their model can impute.
"""

import numpy as np
import pytest
from sklearn.base import BaseEstimator
from sklearn.cluster import KMeans
from sklearn.datasets import load_breast_cancer, make_classification
from sklearn.experimental import enable_iterative_imputer  # noqa: F401
from sklearn.impute import IterativeImputer, SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import parametrize_with_checks
from sklearn.utils.validation import validate_data

from sklearn_latent import EMFactorAnalysis, EMGaussianMixture, LatentImputer


class ColumnStatistic(BaseEstimator):
    """Test double: a "model" of independent columns; imputes each NaN with
    its column's mean or median, or a draw from N(mean, variance)."""

    def __init__(self, strategy="mean"):
        self.strategy = strategy

    def fit(self, X, y=None):
        X = validate_data(self, X, ensure_all_finite="allow-nan")
        statistic = np.nanmean if self.strategy == "mean" else np.nanmedian
        self.center_ = statistic(X, axis=0)
        self.scale_ = np.nanstd(X, axis=0)
        return self

    def _impute(self, X, sample_posterior=False, random_state=None):
        missing = np.isnan(X)
        fill = np.broadcast_to(self.center_, X.shape)
        if sample_posterior:
            noise = check_random_state(random_state).standard_normal(X.shape)
            fill = fill + self.scale_ * noise
        return np.where(missing, fill, X).astype(X.dtype)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags


def can_impute(model):
    """Whether ``model`` fits on NaN and imputes (issue 10's model branches)."""
    return hasattr(model, "_impute") and model.__sklearn_tags__().input_tags.allow_nan


def skip_unless_imputes(model):
    if not can_impute(model):
        pytest.skip(f"{type(model).__name__} cannot impute yet (issue 10)")


def with_missing(X, fraction=0.2, seed=0):
    """X with a ``fraction`` of its entries set to NaN at random, every row
    and column keeping at least one observed entry."""
    rng = np.random.RandomState(seed)
    missing = rng.uniform(size=X.shape) < fraction
    missing[np.arange(len(X)), rng.randint(X.shape[1], size=len(X))] = False
    missing[rng.randint(len(X), size=X.shape[1]), np.arange(X.shape[1])] = False
    return np.where(missing, np.nan, X)


@pytest.fixture
def X():
    rng = np.random.RandomState(0)
    return with_missing(rng.randn(60, 4) @ rng.randn(4, 4) + [1, -2, 3, 0])


@parametrize_with_checks([LatentImputer(ColumnStatistic())])
def test_sklearn_compatible_with_any_imputing_model(estimator, check):
    check(estimator)


@pytest.mark.parametrize("strategy", ["mean", "median"])
def test_fills_only_the_missing_entries_from_the_model(X, strategy):
    X_before = X.copy()
    imputer = LatentImputer(ColumnStatistic(strategy=strategy))
    X_filled = imputer.fit_transform(X)
    # The double is SimpleImputer, written as a model.
    np.testing.assert_array_equal(
        X_filled, SimpleImputer(strategy=strategy).fit_transform(X)
    )
    np.testing.assert_array_equal(X, X_before)  # a new array
    # New rows are filled from the model fitted on the training rows.
    center = imputer.estimator_.center_
    np.testing.assert_array_equal(
        imputer.transform([[np.nan, 1.0, np.nan, 2.0]]),
        [[center[0], 1.0, center[2], 2.0]],
    )


def test_complete_rows_come_back_as_a_copy(X):
    imputer = LatentImputer(ColumnStatistic()).fit(X)
    complete = np.nan_to_num(X)
    out = imputer.transform(complete)
    assert out is not complete
    np.testing.assert_array_equal(out, complete)


def test_fits_a_clone_of_the_estimator(X):
    model = ColumnStatistic()
    imputer = LatentImputer(model).fit(X)
    assert imputer.estimator_ is not model
    assert not hasattr(model, "center_")
    assert imputer.n_features_in_ == 4
    imputer.set_params(estimator__strategy="median").fit(X)
    np.testing.assert_array_equal(imputer.estimator_.center_, np.nanmedian(X, axis=0))


def test_a_model_that_cannot_impute_is_a_clear_error(X):
    with pytest.raises(TypeError, match="KMeans has no _impute method"):
        LatentImputer(KMeans(2)).fit(X)


@pytest.mark.parametrize(
    "params",
    [{"estimator": "EMGaussianMixture"}, {"sample_posterior": "yes"}],
    ids=repr,
)
def test_invalid_parameters(X, params):
    with pytest.raises(InvalidParameterError):
        LatentImputer(**params).fit(X)


def test_infinity_is_refused(X):
    X[0, 0] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        LatentImputer(ColumnStatistic()).fit(X)


def test_sample_posterior_draws_reproducibly(X):
    missing = np.isnan(X)

    def draws(random_state, n_transforms=2):
        imputer = LatentImputer(
            ColumnStatistic(), sample_posterior=True, random_state=random_state
        ).fit(X)
        return [imputer.transform(X) for _ in range(n_transforms)]

    first, second = draws(0)
    np.testing.assert_array_equal(first[~missing], X[~missing])
    assert not np.isnan(first).any()
    # Each transform draws anew; the same random_state repeats the sequence.
    assert not np.any(first[missing] == second[missing])
    for a, b in zip(draws(0), [first, second], strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.any(draws(1, 1)[0][missing] == first[missing])
    # The draws are the model's: its mean plus its noise.
    model = ColumnStatistic().fit(X)
    noise = np.random.RandomState(0).standard_normal(X.shape)
    np.testing.assert_allclose(
        first[missing],
        (model.center_ + model.scale_ * noise)[missing],
        rtol=1e-15,
    )


def test_feature_names_and_pandas_output(X):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    imputer = LatentImputer(ColumnStatistic()).set_output(transform="pandas")
    out = imputer.fit_transform(frame)
    assert list(imputer.get_feature_names_out()) == ["a", "b", "c", "d"]
    assert list(out.columns) == ["a", "b", "c", "d"]
    np.testing.assert_array_equal(
        out.to_numpy(), LatentImputer(ColumnStatistic()).fit_transform(frame.to_numpy())
    )


def classification_with_missing():
    X, y = make_classification(
        n_samples=200, n_features=6, n_informative=4, random_state=0
    )
    return with_missing(X, seed=1), y


def test_in_a_pipeline_and_grid_search_before_a_classifier():
    X, y = classification_with_missing()
    with pytest.raises(ValueError, match="NaN"):
        LogisticRegression().fit(X, y)
    ours = GridSearchCV(
        make_pipeline(LatentImputer(ColumnStatistic()), LogisticRegression()),
        {"latentimputer__estimator__strategy": ["mean", "median"]},
    ).fit(X, y)
    theirs = GridSearchCV(
        make_pipeline(SimpleImputer(), LogisticRegression()),
        {"simpleimputer__strategy": ["mean", "median"]},
    ).fit(X, y)
    np.testing.assert_array_equal(
        ours.cv_results_["mean_test_score"], theirs.cv_results_["mean_test_score"]
    )
    strategy = ours.best_params_["latentimputer__estimator__strategy"]
    assert strategy == theirs.best_params_["simpleimputer__strategy"]
    best = ours.best_estimator_[0].estimator_
    assert best.strategy == strategy
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))


# ------------------------------------------------- with the real models
# These skip until the model can impute (issue 10's model branches).


def test_default_is_one_full_gaussian_and_imputes_its_conditional_means():
    skip_unless_imputes(EMGaussianMixture())
    rng = np.random.RandomState(0)
    A = rng.randn(5, 5)
    X = with_missing(rng.multivariate_normal(np.arange(5.0), A @ A.T, size=500))
    imputer = LatentImputer().fit(X)
    model = imputer.estimator_
    assert isinstance(model, EMGaussianMixture)
    assert (model.n_components, model.covariance_type) == (1, "full")
    X_filled = imputer.transform(X)
    mu, S = model.means_[0], model.covariances_[0]
    for x, row in zip(X, X_filled, strict=True):
        m, o = np.isnan(x), ~np.isnan(x)
        expected = mu[m] + S[np.ix_(m, o)] @ np.linalg.solve(
            S[np.ix_(o, o)], x[o] - mu[o]
        )
        np.testing.assert_allclose(row[m], expected, rtol=1e-10, atol=1e-12)
        np.testing.assert_array_equal(row[o], x[o])


def test_sample_posterior_draws_from_the_conditional_gaussian():
    skip_unless_imputes(EMGaussianMixture())
    rng = np.random.RandomState(0)
    A = rng.randn(4, 4)
    X = with_missing(rng.multivariate_normal(np.zeros(4), A @ A.T, size=500))
    imputer = LatentImputer(sample_posterior=True, random_state=0).fit(X)
    mu, S = imputer.estimator_.means_[0], imputer.estimator_.covariances_[0]
    n = 20_000
    draws = imputer.transform(np.tile([[np.nan, 1.0, np.nan, -1.0]], (n, 1)))
    m, o = [0, 2], [1, 3]
    K = S[np.ix_(m, o)] @ np.linalg.inv(S[np.ix_(o, o)])
    mean = mu[m] + K @ ([1.0, -1.0] - mu[o])
    cov = S[np.ix_(m, m)] - K @ S[np.ix_(o, m)]
    # Five standard errors of the sample mean and of the sample variances.
    sd = np.sqrt(np.diag(cov))
    assert np.all(np.abs(draws[:, m].mean(0) - mean) < 5 * sd / np.sqrt(n))
    var = draws[:, m].var(0)
    assert np.all(np.abs(var - sd**2) < 5 * sd**2 * np.sqrt(2 / n))


def test_a_row_with_nothing_observed_gets_the_mixture_mean(X):
    model = EMGaussianMixture(n_components=2, random_state=0)
    skip_unless_imputes(model)
    imputer = LatentImputer(model).fit(X)
    mixture = imputer.estimator_
    np.testing.assert_allclose(
        imputer.transform(np.full((1, 4), np.nan))[0],
        mixture.weights_ @ mixture.means_,
        rtol=1e-12,
    )


def real_models():
    models = [
        EMGaussianMixture(n_components=2, random_state=0),
        EMGaussianMixture(n_components=2, covariance_type="diag", random_state=0),
        EMFactorAnalysis(n_components=2),
    ]
    try:
        import torch  # noqa: F401
    except ImportError:
        return models
    from sklearn_latent import VAEEstimator

    return [*models, VAEEstimator(n_components=2, max_iter=20, random_state=0)]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("model", real_models(), ids=repr)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_every_model_imputes(X, model, dtype):
    skip_unless_imputes(model)
    X = X.astype(dtype)
    missing = np.isnan(X)
    imputer = LatentImputer(model).fit(X)
    X_mean = imputer.transform(X)
    assert X_mean.dtype == dtype
    np.testing.assert_array_equal(X_mean[~missing], X[~missing])
    assert np.isfinite(X_mean).all()
    # One draw per row from p(x_m | x_o): reproducible, not the mean.
    draws = [
        LatentImputer(model, sample_posterior=True, random_state=0).fit(X).transform(X)
        for _ in range(2)
    ]
    np.testing.assert_array_equal(draws[0], draws[1])
    np.testing.assert_array_equal(draws[0][~missing], X[~missing])
    assert not np.any(draws[0][missing] == X_mean[missing])


def test_grid_search_over_n_components_before_a_classifier():
    model = EMGaussianMixture(covariance_type="diag", random_state=0)
    skip_unless_imputes(model)
    X, y = classification_with_missing()
    search = GridSearchCV(
        make_pipeline(LatentImputer(model), LogisticRegression()),
        {"latentimputer__estimator__n_components": [1, 2, 3]},
    ).fit(X, y)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    k = search.best_params_["latentimputer__estimator__n_components"]
    assert search.best_estimator_[0].estimator_.weights_.shape == (k,)
    assert search.score(X, y) > 0.5


def test_default_beats_iterative_imputer_on_breast_cancer():
    # bench_impute's breast_cancer case, first mask: the prototype of the
    # same EM gave RMSE 0.388 against IterativeImputer's 0.420.
    skip_unless_imputes(EMGaussianMixture())
    X = StandardScaler().fit_transform(load_breast_cancer().data)
    mask = np.random.RandomState(0).uniform(size=X.shape) < 0.2
    X_missing = np.where(mask, np.nan, X)

    def rmse(imputer):
        return np.sqrt(np.mean((imputer.fit_transform(X_missing) - X)[mask] ** 2))

    assert rmse(LatentImputer()) < 0.4 < rmse(IterativeImputer(max_iter=25))
