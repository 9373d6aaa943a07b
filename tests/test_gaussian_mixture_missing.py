"""EMGaussianMixture with missing entries (NaN): exact EM on the observed
entries (Ghahramani and Jordan, 1994), against brute force."""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal
from scipy.special import logsumexp
from scipy.stats import multivariate_normal
from sklearn.exceptions import ConvergenceWarning

import sklearn_latent._gaussian_kernels as gk
import sklearn_latent._gaussian_mixture as gmm_module
from sklearn_latent import EMGaussianMixture

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]
FITTED = ["weights_", "means_", "covariances_", "precisions_cholesky_"]


def full_covariance(gm, k):
    """Component k's covariance as a (d, d) matrix, whatever the type."""
    d = gm.means_.shape[1]
    return {
        "full": lambda: gm.covariances_[k],
        "tied": lambda: gm.covariances_,
        "diag": lambda: np.diag(gm.covariances_[k]),
        "spherical": lambda: gm.covariances_[k] * np.eye(d),
    }[gm.covariance_type]()


def clusters(n=300, n_features=4, n_components=3, seed=0):
    """Correlated Gaussian clusters (so that the conditionals matter)."""
    rng = np.random.RandomState(seed)
    labels = rng.randint(n_components, size=n)
    centres = 4 * rng.randn(n_components, n_features)
    mixing = rng.randn(n_components, n_features, n_features) / np.sqrt(n_features)
    noise = np.einsum("nij,nj->ni", mixing[labels], rng.randn(n, n_features))
    return centres[labels] + noise + 0.3 * rng.randn(n, n_features)


def with_nan(X, share=0.25, seed=0):
    """X with a share of its entries NaN (MCAR); every row keeps one entry."""
    rng = np.random.RandomState(seed)
    mask = rng.uniform(size=X.shape) < share
    mask[mask.all(axis=1), 0] = False
    X = X.copy()
    X[mask] = np.nan
    return X


def fit(X, w=None, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return EMGaussianMixture(**params).fit(X, sample_weight=w)


def brute_force_log_prob(gm, X):
    """log(weight_k N(x_o | mu_k,o, Sigma_k,oo)) of each row, (n, K), by scipy."""
    out = np.zeros((len(X), gm.n_components))
    for i, x in enumerate(X):
        o = ~np.isnan(x)
        for k in range(gm.n_components):
            out[i, k] = np.log(gm.weights_[k])
            if o.any():
                cov = full_covariance(gm, k)[np.ix_(o, o)]
                out[i, k] += multivariate_normal.logpdf(x[o], gm.means_[k][o], cov)
    return out


def brute_force_conditional(mean, cov, x):
    """E[x_m | x_o] and Cov[x_m | x_o] of one Gaussian, by a dense solve."""
    m, o = np.isnan(x), ~np.isnan(x)
    gain = np.linalg.solve(cov[np.ix_(o, o)], cov[np.ix_(o, m)]).T
    conditional_mean = mean[m] + gain @ (x[o] - mean[o])
    return conditional_mean, cov[np.ix_(m, m)] - gain @ cov[np.ix_(o, m)]


# ---------------------------------------------------------------- kernels
@pytest.mark.parametrize("m", [1, 2, 3, 5, 8])
def test_spd_inverse_is_numpy_inverse_and_log_determinant(m):
    rng = np.random.RandomState(m)
    B = rng.randn(6, 7, m, m)
    S = B @ np.swapaxes(B, -1, -2) + 0.1 * np.eye(m)
    given = np.moveaxis(S, (2, 3), (0, 1))
    kept = given.copy()
    inverse, log_det = gk.spd_inverse(given)
    assert_array_equal(given, kept)  # only overwrite=True may overwrite
    assert_allclose(np.moveaxis(inverse, (0, 1), (2, 3)), np.linalg.inv(S), rtol=1e-9)
    assert_allclose(log_det, np.linalg.slogdet(S)[1], rtol=1e-12, atol=1e-12)
    # Overwriting: the same numbers, in the caller's (contiguous) array.
    fresh = np.ascontiguousarray(given)
    overwritten, same_log_det = gk.spd_inverse(fresh, overwrite=True)
    assert overwritten is fresh
    assert_array_equal(overwritten, inverse)
    assert_array_equal(same_log_det, log_det)


def test_missing_groups_cover_every_row_once_with_its_missing_columns():
    rng = np.random.RandomState(0)
    missing = rng.uniform(size=(3000, 6)) < 0.3
    missing[:700] = [True, False, False, True, False, False]  # a shared pattern
    groups = gk.missing_groups(missing)
    rows = np.concatenate([r for r, _ in groups])
    assert_array_equal(np.sort(rows), np.arange(3000))
    for r, idx in groups:
        expected = np.zeros((len(r), 6), dtype=bool)
        np.put_along_axis(
            expected, np.broadcast_to(idx, (len(r), idx.shape[1])), True, 1
        )
        assert_array_equal(missing[r], expected)
    assert any(len(idx) == 1 and len(r) >= 700 for r, idx in groups)


# ----------------------------------------------------------- log-likelihood
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_score_samples_is_brute_force_marginal_log_likelihood(covariance_type):
    X = with_nan(clusters())
    # A block of rows sharing one pattern (factorised once, gk.missing_groups)
    # and rows with nothing or everything observed.
    X[:280, 1] = np.nan
    X[:280, 0] = clusters(280, seed=1)[:, 0]
    X[290] = np.nan
    X[291] = clusters(1, seed=2)[0]
    gm = fit(X[:290], n_components=3, covariance_type=covariance_type, random_state=0)
    log_prob = brute_force_log_prob(gm, X)
    assert_allclose(
        gm.score_samples(X), logsumexp(log_prob, axis=1), rtol=1e-10, atol=1e-10
    )
    resp = np.exp(log_prob - logsumexp(log_prob, axis=1)[:, None])
    assert_allclose(gm.predict_proba(X), resp, atol=1e-10)
    assert_allclose(gm.transform(X), resp, atol=1e-10)
    assert_array_equal(gm.predict(X[:290]), np.argmax(log_prob[:290], axis=1))
    # Nothing observed: log p = 0 exactly, and the responsibilities are the weights.
    assert gm.score_samples(X[290:291])[0] == 0.0
    assert_allclose(gm.predict_proba(X[290:291])[0], gm.weights_, rtol=1e-12)
    n = 290
    assert_allclose(
        gm.score(X[:n]), np.mean(logsumexp(log_prob[:n], axis=1)), rtol=1e-10
    )
    assert_allclose(
        gm.bic(X[:n]),
        -2 * n * gm.score(X[:n]) + gm._n_parameters() * np.log(n),
        rtol=1e-12,
    )


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_fitted_lower_bound_is_the_observed_data_log_likelihood(covariance_type):
    X = with_nan(clusters(), share=0.4)
    gm = fit(
        X,
        n_components=2,
        covariance_type=covariance_type,
        max_iter=3,
        tol=0,
        random_state=0,
    )
    # Each bound is the log-likelihood of the parameters before the last
    # M-step; one more iteration's first bound is that of the final ones.
    again = fit(
        X,
        n_components=2,
        covariance_type=covariance_type,
        max_iter=1,
        weights_init=gm.weights_,
        means_init=gm.means_,
        precisions_init=gm.precisions_,
    )
    assert_allclose(again.lower_bounds_[0], gm.score(X), rtol=1e-12)


# ------------------------------------------------------------ monotone EM
@settings(max_examples=40, deadline=None)
@given(
    covariance_type=st.sampled_from(COVARIANCE_TYPES),
    n_features=st.integers(2, 5),
    n_components=st.integers(1, 3),
    share=st.floats(0.05, 0.6),
    log_distance=st.floats(-1, 4),
    log_offset=st.floats(0, 5),
    seed=st.integers(0, 2**16),
)
def test_lower_bound_never_decreases_with_missing_entries(
    covariance_type, n_features, n_components, share, log_distance, log_offset, seed
):
    # Exact EM on the observed entries (reg_covar=0): the observed-data
    # log-likelihood cannot decrease, also far from the origin.
    rng = np.random.RandomState(seed)
    X = rng.randn(200, n_features) * rng.uniform(0.1, 10, n_features)
    X[:100] += 10.0**log_distance * rng.uniform(-1, 1, n_features)
    X += 10.0**log_offset
    X = with_nan(X, share, seed)
    gm = EMGaussianMixture(
        n_components=n_components,
        covariance_type=covariance_type,
        init_params="random",
        reg_covar=0.0,
        tol=0,
        max_iter=30,
        random_state=seed,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        try:
            gm.fit(X)
        except ValueError as error:  # a component may collapse without reg_covar
            assert "reg_covar" in str(error)
            return
    bounds = np.asarray(gm.lower_bounds_)
    # The rounding allowance of tests/test_gaussian_mixture.py's monotone test.
    if covariance_type in ("diag", "spherical"):
        variances = gm.covariances_.reshape(n_components, -1)
        conditioning = np.max(variances.max(axis=1) / variances.min(axis=1))
    else:
        covariances = gm.covariances_.reshape(-1, n_features, n_features)
        conditioning = np.max(np.linalg.cond(covariances))
    rounding = n_features * np.finfo(np.float64).eps * conditioning
    assert np.all(np.diff(bounds) >= -1e-12 * np.abs(bounds[1:]) - 1e-9 - rounding)


# -------------------------------------------------------- complete data
def test_complete_data_never_enters_the_missing_value_code(monkeypatch):
    # Without NaN every path is the complete-data one of before.
    def refuse(*args, **kwargs):
        raise AssertionError("complete data took the missing-value path")

    for name in ("missing_log_prob", "missing_statistics", "missing_groups"):
        monkeypatch.setattr(gk, name, refuse)
    monkeypatch.setattr(EMGaussianMixture, "_summarise_missing", refuse)
    X = clusters()
    for covariance_type in COVARIANCE_TYPES:
        gm = fit(X, n_components=2, covariance_type=covariance_type, random_state=0)
        gm.score_samples(X), gm.predict(X), gm.predict_proba(X), gm.bic(X)
        gm.partial_fit(X[:50])
        fit(
            X, n_components=2, covariance_type=covariance_type, learning_method="online"
        )


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_missing_value_path_on_complete_rows_is_complete_data_em(covariance_type):
    # A zero-weight row with a NaN sends the whole fit through the
    # missing-value kernels, which must then be plain EM on the other rows.
    X = clusters()
    start = fit(
        X, n_components=3, covariance_type=covariance_type, max_iter=2, random_state=0
    )
    params = dict(
        n_components=3,
        covariance_type=covariance_type,
        weights_init=start.weights_,
        means_init=start.means_,
        precisions_init=start.precisions_,
        max_iter=10,
        tol=0,
    )
    complete = fit(X, **params)
    X_nan = np.vstack([X, [np.nan, 1.0, 2.0, 3.0]])
    w = np.r_[np.ones(len(X)), 0.0]
    nan_path = fit(X_nan, w=w, **params)
    for name in FITTED:
        assert_allclose(
            getattr(nan_path, name), getattr(complete, name), rtol=1e-9, atol=1e-12
        )
    assert_allclose(nan_path.lower_bounds_, complete.lower_bounds_, rtol=1e-11)
    assert_allclose(
        nan_path.score_samples(X_nan[:-1]), complete.score_samples(X), rtol=1e-11
    )


# ---------------------------------------------------------------- weights
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_integer_weights_with_missing_entries_equal_repeated_rows(covariance_type):
    X = with_nan(clusters(120))
    counts = np.random.RandomState(1).randint(0, 4, len(X))
    counts[:2] = 1  # every column keeps an observed entry
    start = fit(
        X, n_components=2, covariance_type=covariance_type, max_iter=1, random_state=0
    )
    params = dict(
        n_components=2,
        covariance_type=covariance_type,
        weights_init=start.weights_,
        means_init=start.means_,
        precisions_init=start.precisions_,
        max_iter=10,
        tol=0,
    )
    weighted = fit(X, w=counts.astype(float), **params)
    repeated = fit(np.repeat(X, counts, axis=0), **params)
    for name in FITTED:
        assert_allclose(
            getattr(weighted, name), getattr(repeated, name), rtol=1e-9, atol=1e-12
        )
    assert_allclose(weighted.lower_bounds_, repeated.lower_bounds_, rtol=1e-11)


# ------------------------------------------------------------- imputation
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_impute_from_a_known_gaussian_gives_the_conditional_means(dtype):
    rng = np.random.RandomState(0)
    d = 5
    A = rng.randn(d, d)
    mean, cov = rng.randn(d), A @ A.T + 0.5 * np.eye(d)
    gm = fit(rng.randn(50, d), n_components=1)
    gm.weights_, gm.means_, gm.covariances_ = np.ones(1), mean[None], cov[None]
    gm.precisions_cholesky_ = gk.Full.precision_cholesky(cov[None], np.float64)
    X = with_nan(rng.randn(300, d) @ A.T + mean, share=0.4).astype(dtype)
    X[0] = np.nan
    X[1:6, 1:4] = np.nan  # a shared pattern
    imputed = gm._impute(X)
    assert imputed.dtype == dtype and imputed is not X
    observed = ~np.isnan(X)
    assert_array_equal(imputed[observed], X[observed])
    for x, filled in zip(X.astype(np.float64), imputed.astype(np.float64), strict=True):
        if np.isnan(x).any():
            expected = (
                mean[np.isnan(x)]
                if np.isnan(x).all()
                else brute_force_conditional(mean, cov, x)[0]
            )
            tol = 1e-12 if dtype == np.float64 else 1e-6
            assert_allclose(filled[np.isnan(x)], expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_impute_averages_the_conditional_means_over_the_responsibilities(
    covariance_type,
):
    X = with_nan(clusters(), share=0.3)
    gm = fit(X, n_components=3, covariance_type=covariance_type, random_state=0)
    resp = gm.predict_proba(X)
    imputed = gm._impute(X)
    for x, r, filled in zip(X[:60], resp[:60], imputed[:60], strict=True):
        m = np.isnan(x)
        expected = sum(
            r[k] * brute_force_conditional(gm.means_[k], full_covariance(gm, k), x)[0]
            for k in range(3)
        )
        assert_allclose(filled[m], expected, rtol=1e-10, atol=1e-10)


def test_impute_draws_from_the_conditional_distribution():
    # One row imputed many times: the draws' mean and covariance are the
    # conditional ones (a known Gaussian, and a mixture that is sure of its
    # component); a fixed random_state repeats them.
    rng = np.random.RandomState(0)
    d = 4
    A = rng.randn(d, d)
    mean, cov = rng.randn(d), A @ A.T + 0.5 * np.eye(d)
    gm = fit(rng.randn(50, d), n_components=1)
    gm.weights_, gm.means_, gm.covariances_ = np.ones(1), mean[None], cov[None]
    gm.precisions_cholesky_ = gk.Full.precision_cholesky(cov[None], np.float64)
    x = np.array([0.5, np.nan, -1.0, np.nan])
    X = np.tile(x, (20000, 1))
    draws = gm._impute(X, sample_posterior=True, random_state=0)
    assert_array_equal(draws, gm._impute(X, sample_posterior=True, random_state=0))
    assert_array_equal(draws[:, [0, 2]], X[:, [0, 2]])
    c_mean, c_cov = brute_force_conditional(mean, cov, x)
    missing = draws[:, [1, 3]]
    standard_error = np.sqrt(np.diag(c_cov) / len(X))
    assert np.all(np.abs(missing.mean(axis=0) - c_mean) < 5 * standard_error)
    assert_allclose(np.cov(missing.T), c_cov, rtol=0.05, atol=0.05 * np.max(c_cov))
    assert not np.allclose(draws, gm._impute(X, sample_posterior=True, random_state=1))


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_impute_draws_components_in_proportion_to_the_responsibilities(covariance_type):
    # Two clusters far apart in feature 0 only: a row with feature 0 missing
    # draws it from either cluster in proportion to the weights.
    rng = np.random.RandomState(0)
    X = np.r_[rng.randn(300, 2) + [10, 0], rng.randn(100, 2) - [10, 0]]
    gm = fit(X, n_components=2, covariance_type=covariance_type, random_state=0)
    rows = np.tile([np.nan, 0.0], (4000, 1))
    draws = gm._impute(rows, sample_posterior=True, random_state=0)[:, 0]
    resp = gm.predict_proba(rows[:1])[0]
    positive = np.argmax(gm.means_[:, 0])
    assert abs(np.mean(draws > 0) - resp[positive]) < 0.03


# ----------------------------------------------------------------- errors
def test_rows_or_columns_with_nothing_observed_are_errors_in_fit():
    X = with_nan(clusters(50))
    X[3] = np.nan
    with pytest.raises(ValueError, match="row.* entirely NaN"):
        EMGaussianMixture().fit(X)
    X = clusters(50)
    X[:, 2] = np.nan
    with pytest.raises(ValueError, match=r"Column\(s\) \[2\].* entirely NaN"):
        EMGaussianMixture().fit(X)
    X = with_nan(clusters(50))
    X[0, 0] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        EMGaussianMixture().fit(X)
    gm = fit(with_nan(clusters(50)), n_components=2)
    with pytest.raises(ValueError, match="infinity"):
        gm.score_samples(X)


def test_the_tag_says_nan_is_allowed():
    assert EMGaussianMixture().__sklearn_tags__().input_tags.allow_nan


# ----------------------------------------------------- online, chunks, accuracy
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_partial_fit_and_online_em_take_missing_entries(covariance_type):
    X = with_nan(clusters(2000, seed=3), share=0.2)
    batch = fit(X, n_components=3, covariance_type=covariance_type, random_state=0)
    online = EMGaussianMixture(3, covariance_type=covariance_type, random_state=0)
    for _ in range(3):
        for start in range(0, len(X), 250):
            online.partial_fit(X[start : start + 250])
    assert online.score(X) > batch.score(X) - 0.05
    passes = fit(
        X,
        n_components=3,
        covariance_type=covariance_type,
        random_state=0,
        learning_method="online",
        batch_size=250,
        max_iter=5,
    )
    assert passes.score(X) > batch.score(X) - 0.05


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_chunks_and_threads_do_not_change_the_fit(covariance_type, monkeypatch):
    # Rows in many small chunks sum to the same statistics as in a few.
    X = with_nan(clusters(600), share=0.3)
    params = dict(
        n_components=2, covariance_type=covariance_type, random_state=0, max_iter=5
    )
    whole = fit(X, **params)
    monkeypatch.setattr(gmm_module, "rows_per_chunk", lambda row_bytes: 7)
    chunked = fit(X, **params)
    for name in FITTED:
        assert_allclose(
            getattr(chunked, name), getattr(whole, name), rtol=1e-10, atol=1e-12
        )
    assert_allclose(chunked.score_samples(X), whole.score_samples(X), rtol=1e-12)


@pytest.mark.parametrize(
    "L, dtype",
    [(1e3, np.float32), (1e4, np.float32), (1e6, np.float64), (1e8, np.float64)],
)
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_far_clusters_with_missing_entries_keep_their_variance(
    L, dtype, covariance_type
):
    # Two unit-variance clusters 3 apart at about (L, -L, L), a quarter of
    # the entries missing: from the same start, the fit equals the fit of the
    # same values moved next to the origin, up to the rounding of the data
    # themselves (eps L): deviations are taken about each component's mean.
    rng = np.random.RandomState(0)
    shift = np.array([L, -L, L])
    centred = np.r_[rng.randn(300, 3), rng.randn(300, 3) + 3.0]
    X = with_nan(centred + shift).astype(dtype)
    near = X.astype(np.float64) - shift  # the same values, moved exactly
    start = fit(
        near,
        n_components=2,
        covariance_type=covariance_type,
        max_iter=1,
        random_state=0,
    )
    params = dict(
        n_components=2,
        covariance_type=covariance_type,
        weights_init=start.weights_,
        precisions_init=start.precisions_,
        max_iter=20,
        tol=0,
    )
    ref = fit(near, means_init=start.means_, **params)
    far = fit(X, means_init=start.means_ + shift, **params)
    tol = 10 * np.finfo(dtype).eps * L
    assert_allclose(far.covariances_, ref.covariances_, rtol=0, atol=tol)
    assert_allclose(far.means_.astype(np.float64) - shift, ref.means_, rtol=0, atol=tol)
    assert_allclose(far.predict_proba(X), ref.predict_proba(near), rtol=0, atol=tol)
    assert_allclose(far.score_samples(X), ref.score_samples(near), rtol=0, atol=tol)


def test_dask_input_with_nan_is_refused_clearly():
    da = pytest.importorskip("dask.array")
    X = with_nan(clusters(100))
    with pytest.raises(ValueError, match="numpy input only"):
        EMGaussianMixture(2).fit(da.from_array(X, chunks=50))
    gm = fit(X, n_components=2)
    with pytest.raises(ValueError, match="numpy input only"):
        gm.score_samples(da.from_array(X, chunks=50)).compute()


def test_cross_validation_chooses_n_components_with_missing_entries():
    # score is the held-out log-likelihood of the observed entries: three
    # well-separated clusters need at least three components.
    from sklearn.model_selection import GridSearchCV

    X = with_nan(clusters(600, n_components=3, seed=4), share=0.3)
    search = GridSearchCV(
        EMGaussianMixture(random_state=0), {"n_components": [1, 2, 3, 4]}, cv=3
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(X)
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
    assert search.best_params_["n_components"] >= 3


def test_impute_of_complete_rows_returns_a_copy_of_them():
    X = np.random.RandomState(0).normal(size=(50, 3))
    gm = EMGaussianMixture(2, random_state=0).fit(X)
    for rows in (X, X[:0]):
        imputed = gm._impute(rows)
        assert imputed is not rows
        assert_array_equal(imputed, rows)
