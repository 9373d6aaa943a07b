"""EMFactorAnalysis with NaN as missing entries (issue 10)."""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal
from scipy import stats
from sklearn.exceptions import ConvergenceWarning

import sklearn_latent._factor_analysis as fa_module
from sklearn_latent import EMFactorAnalysis
from sklearn_latent._factor_kernels import (
    _log_likelihood_samples,
    _maximize_missing,
    _missing_statistics,
    _observed_posterior,
    _posterior_mean,
    _sweep,
)

NOISES = ["diagonal", "isotropic"]


def fa_data(n_samples=400, n_features=6, n_components=2, seed=0):
    rng = np.random.RandomState(seed)
    components = rng.normal(size=(n_components, n_features))
    noise_variance = rng.uniform(0.2, 2.0, size=n_features)
    mean = 3 * rng.normal(size=n_features)
    X = rng.normal(size=(n_samples, n_components)) @ components + mean
    X += rng.normal(size=(n_samples, n_features)) * np.sqrt(noise_variance)
    covariance = components.T @ components + np.diag(noise_variance)
    return X, covariance


def with_missing(X, fraction=0.2, seed=0):
    """X with entries missing completely at random; no row or column
    entirely NaN."""
    rng = np.random.RandomState(seed)
    X = X.copy()
    missing = rng.rand(*X.shape) < fraction
    missing[missing.all(axis=1), 0] = False
    missing[0, missing.all(axis=0)] = False
    X[missing] = np.nan
    return X


def brute_force_scores(fa, X):
    """log N(x_o; mean_o, C_oo) of each row with scipy; 0 with nothing observed."""
    covariance = fa.get_covariance()
    scores = []
    for x in X:
        o = ~np.isnan(x)
        if not o.any():
            scores.append(0.0)
            continue
        normal = stats.multivariate_normal(fa.mean_[o], covariance[np.ix_(o, o)])
        scores.append(normal.logpdf(x[o]))
    return np.array(scores)


def conditional_means(fa, X):
    """E[x_m | x_o] = mean_m + C_mo C_oo^-1 (x_o - mean_o), row by row."""
    covariance = fa.get_covariance()
    imputed = X.copy()
    for x in imputed:
        m = np.isnan(x)
        o = ~m
        x[m] = fa.mean_[m] + covariance[np.ix_(m, o)] @ np.linalg.solve(
            covariance[np.ix_(o, o)], x[o] - fa.mean_[o]
        )
    return imputed


def short_fit(estimator, X):
    """Fit for a few iterations: a model, not necessarily the optimum."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator.fit(X)


def is_monotone(values, atol=0.0):
    values = np.asarray(values)
    return np.all(np.diff(values) >= -1e-10 * np.abs(values[1:]) - atol)


# ------------------------------------------------------------------ kernels
def test_sweep_matches_lapack():
    rng = np.random.RandomState(0)
    factors = rng.normal(size=(200, 6, 6))
    # M = I + A A^T, as the posterior precisions, up to condition ~1e6,
    # bordered by a right-hand side b and 0.
    scale = np.logspace(-3, 3, 200)[:, np.newaxis, np.newaxis]
    matrices = np.eye(6) + scale * factors @ factors.transpose(0, 2, 1)
    rhs = rng.normal(size=(200, 6))
    system = np.zeros((200, 7, 7))
    system[:, :6, :6] = matrices
    system[:, :6, 6] = system[:, 6, :6] = rhs
    swept, log_det = _sweep(np.moveaxis(system, 0, -1), 6)
    swept = np.moveaxis(swept, -1, 0)
    expected = np.linalg.inv(matrices)
    size = np.abs(expected).max(axis=(1, 2))[:, np.newaxis, np.newaxis]
    assert np.max(np.abs(-swept[:, :6, :6] - expected) / size) < 1e-11
    solved = np.linalg.solve(matrices, rhs[:, :, np.newaxis])[:, :, 0]
    assert_allclose(swept[:, :6, 6], solved, rtol=1e-9, atol=1e-12)
    assert_allclose(-swept[:, 6, 6], np.einsum("ni,ni->n", rhs, solved), rtol=1e-11)
    assert_allclose(log_det, np.linalg.slogdet(matrices)[1], rtol=1e-12)


def test_log_likelihood_stays_accurate_for_extreme_parameters():
    # Huge loadings over tiny noise (where a SQUAREM extrapolation can go),
    # rows with fewer observed entries than factors: M_i is ill-conditioned
    # (~1e13) and b_i large. Multiplying b_i by an explicit M_i^-1 gave
    # log p(x_o) wrong by up to ~2000 nats here (and an EM fit that fell);
    # the sweep, which solves for M_i^-1 b_i, is within 2e-5 of a 40-digit
    # reference (float64 scipy is itself off by more at this condition).
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 40
    rng = np.random.RandomState(0)
    components = 1000 * rng.normal(size=(4, 5))
    noise_variance = np.full(5, 1e-5)
    mean = rng.normal(size=5)
    X = with_missing(rng.normal(size=(30, 5)) * 30, fraction=0.6)
    log_likelihood = _observed_posterior(X, mean, components, noise_variance)[2]
    for x, value in zip(X, log_likelihood, strict=True):
        o = np.flatnonzero(~np.isnan(x))
        covariance = mp.matrix(
            [
                [
                    mp.fsum(
                        mp.mpf(a) * mp.mpf(b)
                        for a, b in zip(*components[:, [i, j]].T, strict=True)
                    )
                    + (mp.mpf(noise_variance[i]) if i == j else 0)
                    for j in o
                ]
                for i in o
            ]
        )
        centred = mp.matrix([mp.mpf(x[i]) - mp.mpf(mean[i]) for i in o])
        mahalanobis = (centred.T * mp.lu_solve(covariance, centred))[0]
        expected = -0.5 * (
            len(o) * mp.log(2 * mp.pi) + mp.log(mp.det(covariance)) + mahalanobis
        )
        assert abs(value - float(expected)) < 1e-3


def test_observed_posterior_matches_brute_force():
    rng = np.random.RandomState(0)
    components = rng.normal(size=(3, 7))
    noise_variance = rng.uniform(0.1, 2.0, size=7)
    mean = rng.normal(size=7)
    X = with_missing(rng.normal(size=(50, 7)) * 2, fraction=0.4)
    X[3] = np.nan  # nothing observed: the prior
    factor_mean, factor_covariance, log_likelihood = _observed_posterior(
        X, mean, components, noise_variance
    )
    covariance = components.T @ components + np.diag(noise_variance)
    for i, x in enumerate(X):
        o = ~np.isnan(x)
        # z | x_o by the Gaussian conditional of the joint (z, x_o).
        cross = components[:, o]  # Cov(z, x_o)
        gain = cross @ np.linalg.inv(covariance[np.ix_(o, o)])
        assert_allclose(factor_mean[i], gain @ (x[o] - mean[o]), atol=1e-12)
        assert_allclose(factor_covariance[i], np.eye(3) - gain @ cross.T, atol=1e-12)
        expected = (
            stats.multivariate_normal(mean[o], covariance[np.ix_(o, o)]).logpdf(x[o])
            if o.any()
            else 0.0
        )
        assert_allclose(log_likelihood[i], expected, rtol=1e-12, atol=1e-12)


def test_complete_rows_match_the_complete_data_kernels():
    rng = np.random.RandomState(1)
    components = rng.normal(size=(3, 9))
    noise_variance = rng.uniform(0.1, 2.0, size=9)
    mean = rng.normal(size=9)
    X = rng.normal(size=(40, 9))
    factor_mean, _, log_likelihood = _observed_posterior(
        X, mean, components, noise_variance
    )
    expected = _log_likelihood_samples(X, mean, components, noise_variance)
    assert_allclose(log_likelihood, expected, rtol=1e-13)
    assert_allclose(
        factor_mean, _posterior_mean(X, mean, components, noise_variance), atol=1e-13
    )


def test_m_step_is_stationary_for_the_observed_likelihood():
    # At a fixed point of the M-step, the gradient of the observed-data
    # log-likelihood vanishes: the statistics and the update are the
    # exact EM ones, mean included.
    X, _ = fa_data(300, 5, 2, seed=1)
    X = with_missing(X, 0.3, seed=1)
    weight = np.random.RandomState(1).randint(1, 4, len(X)).astype(float)
    fa = EMFactorAnalysis(2, tol=1e-14, max_iter=20000).fit(X, sample_weight=weight)
    theta = np.concatenate(
        [fa.components_.ravel(), fa.mean_, np.log(fa.noise_variance_)]
    )

    def log_likelihood(theta):
        components = theta[:10].reshape(2, 5)
        return (
            weight
            @ _observed_posterior(X, theta[10:15], components, np.exp(theta[15:]))[2]
        )

    step = 1e-6
    gradient = [
        (log_likelihood(theta + step * e) - log_likelihood(theta - step * e))
        / (2 * step)
        for e in np.eye(len(theta))
    ]
    # Central differences of a sum over ~900 rows of order 10: error ~1e-4.
    assert np.max(np.abs(gradient)) < 1e-3
    # ...which central differences do show off the optimum.
    moved = theta.copy()
    moved[10] += 0.05
    e = np.eye(len(theta))[10]
    off = (log_likelihood(moved + step * e) - log_likelihood(moved - step * e)) / (
        2 * step
    )
    assert abs(off) > 1.0


def test_missing_statistics_add_over_chunks():
    X, _ = fa_data(200, 6, 2)
    X = with_missing(X, 0.3)
    rng = np.random.RandomState(0)
    components = rng.normal(size=(2, 6))
    noise_variance = rng.uniform(0.5, 1.0, size=6)
    shift = np.nanmean(X, axis=0)
    args = (shift, components, np.zeros(6), noise_variance)
    whole = _missing_statistics(X, None, *args)
    parts = [
        _missing_statistics(X[rows], None, *args)
        for rows in (slice(0, 77), slice(77, None))
    ]
    for total, first, second in zip(whole, *parts, strict=True):
        # About the observed mean some sums cancel to ~0: rounding relative
        # to the largest term.
        scale = np.max(np.abs(total))
        assert_allclose(total, np.add(first, second), rtol=1e-12, atol=1e-13 * scale)
    update = _maximize_missing(whole, components, np.zeros(6), noise_variance, False, 0)
    assert update[0].shape == (2, 6) and update[1].shape == (6,)


# --------------------------------------------------------------- estimator
@pytest.mark.parametrize("noise", NOISES)
def test_score_samples_is_the_observed_data_log_likelihood(noise):
    X, _ = fa_data(300, 7, 2)
    X = with_missing(X, 0.3)
    fa = short_fit(EMFactorAnalysis(2, noise=noise, max_iter=50), X)
    test = with_missing(fa_data(60, 7, 2, seed=3)[0], 0.5, seed=3)
    test[5] = np.nan  # nothing observed: log-likelihood 0
    scores = fa.score_samples(test)
    assert scores[5] == 0.0
    assert_allclose(scores, brute_force_scores(fa, test), rtol=1e-10, atol=1e-10)
    assert_allclose(fa.score(test), scores.mean())
    # The last lower bound is the training data's observed log-likelihood.
    assert_allclose(fa.lower_bound_, fa.score(X), rtol=1e-12)
    assert_allclose(fa.loglike_[-1], fa.score_samples(X).sum(), rtol=1e-12)


@pytest.mark.parametrize("noise", NOISES)
def test_transform_is_the_posterior_mean_given_observed_entries(noise):
    X, _ = fa_data(300, 6, 2)
    X = with_missing(X, 0.3)
    fa = short_fit(EMFactorAnalysis(2, noise=noise, max_iter=50), X)
    test = X[:20].copy()
    test[0] = np.nan
    Z = fa.transform(test)
    covariance = fa.get_covariance()
    assert_array_equal(Z[0], 0.0)
    for z, x in zip(Z[1:], test[1:], strict=True):
        o = ~np.isnan(x)
        gain = fa.components_[:, o] @ np.linalg.inv(covariance[np.ix_(o, o)])
        assert_allclose(z, gain @ (x[o] - fa.mean_[o]), atol=1e-12)


def check_monotone_fit(seed, fraction, noise, weighted):
    """A small random fit with missing entries; its log-likelihood must
    never decrease."""
    rng = np.random.RandomState(seed)
    n_features = rng.randint(2, 9)
    n_components = rng.randint(0, n_features + 1)
    X, _ = fa_data(rng.randint(5, 80), n_features, max(n_components, 1), seed)
    X = with_missing(X, fraction, seed)
    weight = rng.randint(0, 3, size=len(X)).astype(float) if weighted else None
    if weight is not None:
        # Every column observed in some row of positive weight.
        weight[np.argmax(~np.isnan(X), axis=0)] = 1.0
    fa = EMFactorAnalysis(n_components, noise=noise, tol=0.0, max_iter=30)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Heywood and convergence warnings
        fa.fit(X, sample_weight=weight)
    assert np.all(np.isfinite(fa.lower_bounds_))
    # With a noise variance at its floor (a Heywood case) the log-likelihood
    # is exact only to ~n_features * eps / floor, as in
    # test_factor_analysis.py's property test; otherwise to 1e-10 relative.
    moments = fa._prepare(X, weight, np.isnan(X))
    heywood = np.any(fa.noise_variance_ <= fa._noise_bounds(moments.scatter)[0])
    rounding = n_features * np.finfo(float).eps / fa_module.RELATIVE_NOISE_FLOOR
    assert is_monotone(fa.lower_bounds_, atol=rounding if heywood else 0.0)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    fraction=st.floats(0.05, 0.6),
    noise=st.sampled_from(NOISES),
    weighted=st.booleans(),
)
def test_log_likelihood_never_decreases_with_missing_entries(
    seed, fraction, noise, weighted
):
    check_monotone_fit(seed, fraction, noise, weighted)


# Cases that failed once: a SQUAREM extrapolation scored by an explicit
# M^-1 (a fall of 14 nats), and one leaping to loadings of 3e10 (a crash).
@pytest.mark.parametrize(
    "seed, fraction, noise",
    [(3581, 0.5625, "isotropic"), (7724, 0.5456395358402296, "diagonal")],
)
def test_log_likelihood_never_decreases_in_degenerate_fits(seed, fraction, noise):
    check_monotone_fit(seed, fraction, noise, weighted=True)


@pytest.mark.parametrize("noise", NOISES)
def test_complete_data_never_takes_the_missing_path(noise, monkeypatch):
    X, _ = fa_data(300, 6, 2)

    def refuse(*args, **kwargs):
        raise AssertionError("the missing-data path ran on complete data")

    for name in ["_observed_posterior", "_missing_statistics", "_maximize_missing"]:
        monkeypatch.setattr(fa_module, name, refuse)
    fa = EMFactorAnalysis(2, noise=noise).fit(X)
    fa.score_samples(X), fa.transform(X)
    with pytest.raises(AssertionError, match="missing-data path"):
        fa.score_samples(with_missing(X))


class PerRow(EMFactorAnalysis):
    """EMFactorAnalysis that takes the missing-data path on complete data."""

    def _prepare(self, X, sample_weight, missing=None):
        if getattr(self, "_inner", False):  # the start's moments
            return super()._prepare(X, sample_weight)
        self._inner = True
        try:
            return super()._prepare(X, sample_weight, np.zeros(X.shape, dtype=bool))
        finally:
            self._inner = False


@pytest.mark.parametrize("noise", NOISES)
def test_missing_path_on_complete_data_reaches_the_complete_fit(noise, monkeypatch):
    # The per-row EM with nothing missing is plain EM with the mean estimated
    # jointly: it must reach the maximum the scatter path finds, whose mean
    # is the sample mean.
    X, _ = fa_data(500, 6, 2)
    complete = EMFactorAnalysis(2, noise=noise, tol=1e-14, max_iter=5000).fit(X)
    passes = []

    def counted(*args, **kwargs):
        passes.append(1)
        return _missing_statistics(*args, **kwargs)

    monkeypatch.setattr(fa_module, "_missing_statistics", counted)
    per_row = PerRow(2, noise=noise, tol=1e-14, max_iter=100_000).fit(X)
    assert len(passes) > per_row.n_iter_  # chunks of every E-step and the last
    assert per_row.converged_
    assert_allclose(per_row.lower_bound_, complete.lower_bound_, rtol=1e-13)
    assert_allclose(per_row.mean_, X.mean(axis=0), rtol=1e-12)
    # Plain EM stops with the log-likelihood within ~1e-13 of the maximum,
    # the parameters within ~sqrt(1e-13) of it.
    assert_allclose(per_row.get_covariance(), complete.get_covariance(), atol=1e-5)
    assert_allclose(
        np.abs(per_row.transform(X)), np.abs(complete.transform(X)), atol=1e-5
    )


@pytest.mark.parametrize("noise", NOISES)
def test_integer_weights_equal_repeated_rows(noise):
    X, _ = fa_data(200, 6, 2)
    X = with_missing(X, 0.25)
    weight = np.random.RandomState(0).randint(0, 4, size=len(X))
    weighted = EMFactorAnalysis(2, noise=noise, tol=1e-9).fit(X, sample_weight=weight)
    repeated = EMFactorAnalysis(2, noise=noise, tol=1e-9).fit(
        np.repeat(X, weight, axis=0)
    )
    for attribute in ["mean_", "components_", "noise_variance_", "lower_bounds_"]:
        assert_allclose(
            getattr(weighted, attribute), getattr(repeated, attribute), rtol=1e-7
        )
    assert_allclose(weighted.transform(X), repeated.transform(X), rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("noise", NOISES)
def test_impute_fills_the_exact_conditional_mean(noise):
    X, _ = fa_data(300, 6, 2)
    X = with_missing(X, 0.3)
    fa = short_fit(EMFactorAnalysis(2, noise=noise, max_iter=50), X)
    test = with_missing(fa_data(40, 6, 2, seed=5)[0], 0.4, seed=5)
    test[0] = np.nan  # nothing observed: the mean
    imputed = fa._impute(test)
    observed = ~np.isnan(test)
    assert imputed is not test and np.isnan(test).sum() == np.count_nonzero(~observed)
    assert_array_equal(imputed[observed], test[observed])
    assert_allclose(imputed, conditional_means(fa, test), rtol=1e-10, atol=1e-10)
    assert_allclose(imputed[0], fa.mean_, rtol=1e-12)
    float32 = fa._impute(test.astype(np.float32))
    assert float32.dtype == np.float32
    # float32 input: rounding relative to the data's scale.
    assert_allclose(float32, imputed, rtol=1e-5, atol=1e-6 * np.abs(imputed).max())


def test_impute_draws_from_the_conditional_gaussian():
    X, _ = fa_data(300, 5, 2)
    fa = short_fit(EMFactorAnalysis(2, max_iter=50), with_missing(X, 0.2))
    row = X[:1].copy()
    row[0, [1, 3]] = np.nan
    rows = np.repeat(row, 20000, axis=0)
    draws = fa._impute(rows, sample_posterior=True, random_state=0)
    assert_array_equal(draws[:, [0, 2, 4]], rows[:, [0, 2, 4]])
    assert_array_equal(draws, fa._impute(rows, sample_posterior=True, random_state=0))
    # The Gaussian conditional: mean C_mo C_oo^-1 (x_o - mean_o) + mean_m,
    # covariance C_mm - C_mo C_oo^-1 C_om.
    C = fa.get_covariance()
    m, o = [1, 3], [0, 2, 4]
    gain = C[np.ix_(m, o)] @ np.linalg.inv(C[np.ix_(o, o)])
    expected_mean = fa.mean_[m] + gain @ (row[0, o] - fa.mean_[o])
    expected_covariance = C[np.ix_(m, m)] - gain @ C[np.ix_(o, m)]
    sample = draws[:, m]
    standard_error = np.sqrt(np.diag(expected_covariance) / len(sample))
    assert np.all(np.abs(sample.mean(axis=0) - expected_mean) < 4 * standard_error)
    # Sample covariance of 20,000 draws: relative error ~ sqrt(2 / n) = 1%.
    assert_allclose(
        np.cov(sample.T), expected_covariance, rtol=0.05, atol=0.05 * C.max()
    )


@pytest.mark.parametrize("noise", NOISES)
def test_recovers_the_model_covariance_under_mcar(noise):
    X, covariance = fa_data(5000, 8, 2, seed=2)
    if noise == "isotropic":  # data from a PPCA model
        rng = np.random.RandomState(2)
        components = rng.normal(size=(2, 8))
        X = rng.normal(size=(5000, 2)) @ components + rng.normal(size=(5000, 8))
        covariance = components.T @ components + np.eye(8)
    X_missing = with_missing(X, 0.2, seed=2)
    complete = EMFactorAnalysis(2, noise=noise).fit(X)
    missing = EMFactorAnalysis(2, noise=noise).fit(X_missing)
    norm = np.linalg.norm(covariance)
    complete_error = np.linalg.norm(complete.get_covariance() - covariance) / norm
    missing_error = np.linalg.norm(missing.get_covariance() - covariance) / norm
    # 20% fewer entries: about the complete fit's sampling error, not more.
    assert complete_error < 0.05
    assert missing_error < 1.5 * complete_error + 0.01
    # Mean imputation, the start, shrinks the covariances by 20-36%: EM
    # undoes that.
    filled = np.where(np.isnan(X_missing), np.nanmean(X_missing, axis=0), X_missing)
    mean_imputed = np.cov(filled, rowvar=False)
    assert np.linalg.norm(mean_imputed - covariance) / norm > 3 * missing_error


@pytest.mark.parametrize("noise", NOISES)
@pytest.mark.parametrize("rotation", [None, "varimax"])
def test_wide_data_and_rotations_with_missing_entries(noise, rotation):
    # Fewer rows than features: the per-row path as well (no d x d matrix).
    X, _ = fa_data(30, 60, 3, seed=4)
    X = with_missing(X, 0.2, seed=4)
    fa = EMFactorAnalysis(3, noise=noise, rotation=rotation, max_iter=100, tol=1e-8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Heywood cases: 30 rows, 60 features
        fa.fit(X)
    assert is_monotone(fa.lower_bounds_)
    assert_allclose(fa.score(X), fa.lower_bound_, rtol=1e-12)
    assert_allclose(fa.score_samples(X[:5]), brute_force_scores(fa, X[:5]), rtol=1e-10)


def test_refuses_empty_rows_and_columns_and_inf():
    X, _ = fa_data(50, 4, 1)
    fa = EMFactorAnalysis(1)
    empty_row = X.copy()
    empty_row[7] = np.nan
    with pytest.raises(ValueError, match="entirely NaN.*row 7"):
        fa.fit(empty_row)
    empty_column = X.copy()
    empty_column[:, 2] = np.nan
    with pytest.raises(ValueError, match=r"Column\(s\) \[2\]"):
        fa.fit(empty_column)
    infinite = with_missing(X)
    infinite[3, 1] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        fa.fit(infinite)
    only_unweighted = X.copy()
    only_unweighted[1:, 2] = np.nan
    weight = np.ones(len(X))
    weight[0] = 0.0
    with pytest.raises(ValueError, match=r"Column\(s\) \[2\] .*weight"):
        fa.fit(only_unweighted, sample_weight=weight)
    fa.fit(with_missing(X))
    with pytest.raises(ValueError, match="infinity"):
        fa.score_samples(infinite)
    with pytest.raises(ValueError, match="infinity"):
        fa.transform(infinite)


def test_a_far_row_scores_minus_inf_not_nan():
    X, _ = fa_data(200, 5, 2)
    fa = short_fit(EMFactorAnalysis(2, max_iter=20), with_missing(X))
    far = np.array([[1e155, np.nan, 1e155, 1.0, 1.0], [1e300, np.nan, 1.0, 1.0, 1.0]])
    assert_array_equal(fa.score_samples(far), -np.inf)
    assert np.all(np.isfinite(fa.transform(far)))


def test_float32_and_warm_start_with_missing_entries():
    X, _ = fa_data(300, 6, 2)
    X = with_missing(X, 0.2)
    fa64 = EMFactorAnalysis(2, tol=1e-9).fit(X)
    fa32 = EMFactorAnalysis(2, tol=1e-9).fit(X.astype(np.float32))
    assert_allclose(fa32.get_covariance(), fa64.get_covariance(), rtol=1e-4, atol=1e-5)
    assert fa32.transform(X.astype(np.float32)).dtype == np.float64
    warm = EMFactorAnalysis(2, tol=1e-9, max_iter=5, warm_start=True)
    with pytest.warns(ConvergenceWarning):
        warm.fit(X)
    first = warm.lower_bound_
    warm.fit(X)  # continues from the fitted model: one more EM step at least
    assert first < warm.lower_bound_ <= fa64.lower_bound_
