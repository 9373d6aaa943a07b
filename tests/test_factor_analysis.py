"""Tests of EMFactorAnalysis and its numerical kernels."""

import pickle
import tracemalloc
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal
from scipy import linalg, optimize, stats
from sklearn.base import clone
from sklearn.datasets import load_digits, load_iris, load_wine
from sklearn.decomposition import FactorAnalysis
from sklearn.decomposition._factor_analysis import _ortho_rotation
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import sklearn_latent._factor_analysis as fa_module
import sklearn_latent._factor_kernels as kernels_module
from sklearn_latent import EMFactorAnalysis
from sklearn_latent._factor_kernels import (
    SMALL_SCATTER,
    _canonical_orientation,
    _centred_rows,
    _CentredMoments,
    _covariance,
    _DenseScatter,
    _extreme_projections,
    _log_likelihood_samples,
    _maximize,
    _moment_sums,
    _newton_profile,
    _orthogonal_rotation,
    _posterior_mean,
    _posterior_statistics,
    _precision,
    _principal_start,
    _profile,
    _profile_derivatives,
    _profile_point,
    _smc_noise_variance,
    _squarem_extrapolate,
    _ThinScatter,
)

# Quasi-Newton steps run on SciPy >= 1.15 only (see QUASI_NEWTON_SCIPY).
NEEDS_QUASI_NEWTON = pytest.mark.skipif(
    not fa_module.QUASI_NEWTON_SCIPY, reason="quasi-Newton steps need SciPy >= 1.15"
)


def fa_model(n_features=12, n_components=3, seed=0):
    rng = np.random.RandomState(seed)
    components = rng.normal(size=(n_components, n_features))
    noise_variance = rng.uniform(0.2, 2.0, size=n_features)
    mean = rng.normal(size=n_features)
    return components, noise_variance, mean


def fa_data(n_samples=2000, n_features=12, n_components=3, seed=0):
    """Data drawn from a known factor analysis model, and the model."""
    components, noise_variance, mean = fa_model(n_features, n_components, seed)
    rng = np.random.RandomState(seed + 1)
    Z = rng.normal(size=(n_samples, n_components))
    noise = rng.normal(size=(n_samples, n_features)) * np.sqrt(noise_variance)
    return Z @ components + mean + noise, (components, noise_variance, mean)


def quiet_fit(estimator, X, **kwargs):
    """Fit without Heywood or convergence warnings."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The noise variance of")
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        return estimator.fit(X, **kwargs)


def scatter_of(X, form):
    """The scatter of X about its mean, held as ``form``: "dense" or "thin"."""
    centered = X - X.mean(axis=0)
    if form == "dense":
        return _DenseScatter(centered.T @ centered / len(X))
    return _ThinScatter(centered / np.sqrt(len(X)))


FORMS = pytest.mark.parametrize("form", ["dense", "thin"])


def is_monotone(values, atol=0.0):
    values = np.asarray(values)
    return np.all(np.diff(values) >= -1e-10 * np.abs(values[1:]) - atol)


# ------------------------------------------------------------------ kernels
def moments_of(X, weight, shift):
    total, first, second = _moment_sums(X, weight, shift=shift)
    n_rows = len(X) if weight is None else np.count_nonzero(weight)
    return _CentredMoments.from_sums(total, first, second, shift, n_rows)


def test_moments_match_weighted_mean_and_covariance():
    rng = np.random.RandomState(0)
    # A large offset: summing about zero would lose the scatter's precision.
    X = 1e6 + rng.normal(size=(300, 4)) @ rng.normal(size=(4, 4))
    weight = rng.randint(0, 4, size=300).astype(float)
    moments = moments_of(X, weight, X[0])
    assert moments.total_weight == weight.sum()
    assert moments.n_rows == np.count_nonzero(weight)
    assert_allclose(moments.mean, np.average(X, axis=0, weights=weight))
    expected = np.cov(X - 1e6, rowvar=False, aweights=weight, bias=True)
    assert_allclose(moments.scatter, expected, rtol=1e-9)
    assert_allclose(
        moments_of(X, None, X[0]).scatter,
        np.cov(X - 1e6, rowvar=False, bias=True),
        rtol=1e-9,
    )


@pytest.mark.parametrize("offset", [0.0, 1e8])
def test_moments_of_parts_add_up_to_those_of_the_whole(offset):
    # Chan's update: parts centred on their own means, even far from the
    # origin and from each other, add to the whole's moments to 1e-12.
    rng = np.random.RandomState(1)
    X = rng.normal(size=(500, 5)) @ rng.normal(size=(5, 5))
    X[250:] += offset  # a batch that drifted far away
    weight = rng.uniform(0, 3, size=500)
    weight[:7] = 0.0
    whole = moments_of(X, weight, X[0])
    cuts = [0, 3, 250, 251, 400, 500]
    parts = [
        moments_of(X[a:b], weight[a:b], X[a])
        for a, b in zip(cuts[:-1], cuts[1:], strict=True)
    ]
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    assert total.n_rows == whole.n_rows == 493
    assert_allclose(total.total_weight, whole.total_weight, rtol=1e-12)
    assert_allclose(total.mean, whole.mean, rtol=1e-12)
    assert_allclose(total.sum_of_squares, whole.sum_of_squares, rtol=1e-12)
    # A part of zero weight changes nothing.
    empty = moments_of(X[:7], weight[:7], X[0])
    assert (total + empty) is total and (empty + total) is total


@FORMS
def test_posterior_statistics_match_explicit_formulas(form):
    X, (components, noise_variance, mean) = fa_data(500)
    W, psi = components * 0.7, noise_variance * 1.3  # not the fitted values
    centered = X - X.mean(axis=0)
    ezz, beta_scatter, mean_ll = _posterior_statistics(W, psi, scatter_of(X, form))

    covariance = W.T @ W + np.diag(psi)
    expected_ll = stats.multivariate_normal(X.mean(axis=0), covariance).logpdf(X)
    assert_allclose(mean_ll, expected_ll.mean(), rtol=1e-12)
    # Posterior of z given x: mean beta (x - mean), covariance M^-1.
    posterior_cov = np.linalg.inv(np.eye(len(W)) + W @ np.diag(1 / psi) @ W.T)
    beta = posterior_cov @ W @ np.diag(1 / psi)
    Ez = centered @ beta.T
    assert_allclose(beta_scatter, Ez.T @ centered / len(X), rtol=1e-10)
    assert_allclose(ezz, posterior_cov + Ez.T @ Ez / len(X), rtol=1e-10)


def test_centred_rows_give_the_weighted_scatter():
    rng = np.random.RandomState(0)
    X = 1e6 + rng.normal(size=(30, 50))  # the offset costs no precision
    weight = rng.randint(0, 4, size=30).astype(float)
    for w in [None, weight]:
        total, mean, rows = _centred_rows(X, w, shift=X[0])
        assert total == (30 if w is None else weight.sum())
        assert_allclose(mean, np.average(X, axis=0, weights=w))
        expected = np.cov(X - 1e6, rowvar=False, aweights=w, bias=True)
        assert_allclose(rows.T @ rows, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("n_samples", [8, 30])
def test_thin_scatter_matches_the_dense_one(n_samples):
    # Fewer rows than features: eigenvalues beyond the rank are zero.
    rng = np.random.RandomState(1)
    X = rng.normal(size=(n_samples, 3)) @ rng.normal(size=(3, 40))
    X += rng.normal(size=X.shape) * rng.uniform(0.5, 2, size=40)
    dense, thin = scatter_of(X, "dense"), scatter_of(X, "thin")
    B = rng.normal(size=(40, 4))
    assert_allclose(thin @ B, dense.matrix @ B)
    assert_allclose(thin.diagonal, np.diag(dense.matrix))
    scale = rng.uniform(0.5, 2, size=40)
    scaled = dense.matrix / np.outer(scale, scale)
    values = np.linalg.eigvalsh(scaled)[::-1]
    values[n_samples - 1 :] = 0  # the rank of centred data
    for k in [0, 3, n_samples - 1, n_samples + 2]:
        top_values, top_vectors = thin.top_eigen(scale, k)
        assert_allclose(top_values, values[:k], atol=1e-10)
        # Unit eigenvectors where the data span a direction, else zero.
        assert_allclose(scaled @ top_vectors, top_vectors * top_values, atol=1e-10)
        spanned = np.arange(k) < n_samples - 1
        assert_allclose(np.linalg.norm(top_vectors, axis=0), spanned)
    for ridge in [1e-6, 1.0]:
        inverse = np.linalg.inv(scaled + ridge * np.eye(40))
        assert_allclose(thin.ridge_inverse_diagonal(scale, ridge), np.diag(inverse))
        assert_allclose(dense.ridge_inverse_diagonal(scale, ridge), np.diag(inverse))


def test_extreme_projections_by_brute_force():
    rng = np.random.RandomState(2)
    X, mean, directions = (
        rng.normal(size=(40, 6)),
        rng.normal(size=6),
        rng.normal(size=(6, 3)),
    )
    weight = rng.randint(0, 2, size=40)
    for w in [None, weight]:
        projections = (X - mean) @ directions
        for j in range(3):
            rows = range(40) if w is None else np.flatnonzero(w)
            best = max(rows, key=lambda i, j=j: abs(projections[i, j]))
            extreme = _extreme_projections(X, mean, directions, w)[j]
            assert extreme == projections[best, j]


@pytest.mark.parametrize("isotropic", [False, True])
def test_maximize_matches_bishop_updates(isotropic):
    X, (components, noise_variance, _) = fa_data(400)
    centered = X - X.mean(axis=0)
    scatter = centered.T @ centered / len(X)
    ezz, beta_scatter, _ = _posterior_statistics(
        components, noise_variance, _DenseScatter(scatter)
    )
    floor = np.full(X.shape[1], 1e-12)
    W, psi = _maximize(ezz, beta_scatter, np.diag(scatter), isotropic, floor)
    # Bishop (2006) 12.69-12.70 written per sample, W as (n_features, k).
    expected_W = (beta_scatter.T @ np.linalg.inv(ezz)).T
    residual = np.diag(scatter - expected_W.T @ beta_scatter)
    expected_psi = np.full_like(residual, residual.mean()) if isotropic else residual
    assert_allclose(W, expected_W, rtol=1e-10)
    assert_allclose(psi, expected_psi, rtol=1e-10)
    assert_allclose(
        _maximize(ezz, beta_scatter, np.diag(scatter), isotropic, psi + 1)[1], psi + 1
    )


def test_sample_formulas_match_scipy():
    X, (components, noise_variance, mean) = fa_data(50)
    covariance = _covariance(components, noise_variance)
    assert_allclose(covariance, components.T @ components + np.diag(noise_variance))
    assert_allclose(_precision(components, noise_variance), np.linalg.inv(covariance))
    assert_allclose(
        _log_likelihood_samples(X, mean, components, noise_variance),
        stats.multivariate_normal(mean, covariance).logpdf(X),
    )
    posterior_cov = np.linalg.inv(
        np.eye(len(components))
        + components @ np.diag(1 / noise_variance) @ components.T
    )
    expected = (X - mean) @ np.diag(1 / noise_variance) @ components.T @ posterior_cov
    assert_allclose(_posterior_mean(X, mean, components, noise_variance), expected)


def test_squarem_is_exact_on_a_linear_iteration():
    # For theta_t = fixed + rho^t (theta_0 - fixed), scheme S3 lands on fixed.
    rng = np.random.RandomState(0)
    fixed = (rng.normal(size=(2, 3)), rng.uniform(1, 2, size=3))
    start = (rng.normal(size=(2, 3)), rng.uniform(1, 2, size=3))

    def step(t):
        w = fixed[0] + 0.9**t * (start[0] - fixed[0])
        log_psi = np.log(fixed[1]) + 0.9**t * (np.log(start[1]) - np.log(fixed[1]))
        return w, np.exp(log_psi)

    W, psi = _squarem_extrapolate(step(0), step(1), step(2), 1e-12, 1e12)
    assert_allclose(W, fixed[0])
    assert_allclose(psi, fixed[1])
    # Noise is clipped to its bounds; a zero second difference gives theta2.
    assert np.all(_squarem_extrapolate(step(0), step(1), step(2), 1e-12, 1.2)[1] <= 1.2)
    same = _squarem_extrapolate(start, start, start, 1e-12, 1e12)
    assert_allclose(same[0], start[0])


def test_smc_noise_matches_regression_residuals():
    X, _ = fa_data(300)
    centered = X - X.mean(axis=0)
    scatter = centered.T @ centered / len(X)
    noise = _smc_noise_variance(_DenseScatter(scatter), n_components=3, ridge=0.0)
    for j in range(X.shape[1]):
        others = np.delete(X, j, axis=1)
        r2 = LinearRegression().fit(others, X[:, j]).score(others, X[:, j])
        expected = (1 - 3 / (2 * X.shape[1])) * (1 - r2) * X[:, j].var()
        assert_allclose(noise[j], expected, rtol=1e-8)


def test_canonical_orientation_keeps_the_model():
    components, noise_variance, _ = fa_model()
    rotation = np.linalg.qr(np.random.RandomState(0).normal(size=(3, 3)))[0]
    canonical = _canonical_orientation(rotation @ components, noise_variance)
    assert_allclose(canonical.T @ canonical, components.T @ components)
    gram = canonical @ np.diag(1 / noise_variance) @ canonical.T
    assert_allclose(gram, np.diag(np.diag(gram)), atol=1e-10)
    assert np.all(np.diff(np.diag(gram)) <= 0)
    # The same rows from any rotation, up to sign (signs come from the data).
    again = _canonical_orientation(components, noise_variance)
    signs = np.sign(np.sum(again * canonical, axis=1))[:, np.newaxis]
    assert_allclose(again, signs * canonical)


@pytest.mark.parametrize("method", ["varimax", "quartimax"])
def test_rotation_matches_scikit_learn(method):
    components, _, _ = fa_model(n_features=10, n_components=4)
    expected = _ortho_rotation(components.T, method=method)
    assert_allclose(_orthogonal_rotation(components, method), expected)


@FORMS
@pytest.mark.parametrize("svd_method", ["lapack", "randomized"])
def test_principal_start_is_the_ppca_solution(form, svd_method):
    X, _ = fa_data(500)
    floor = np.full(X.shape[1], 1e-12)
    W, psi = _principal_start(
        scatter_of(X, form), 3, None, svd_method, 7, np.random.RandomState(0), floor
    )
    values = np.linalg.eigvalsh(np.cov(X, rowvar=False, bias=True))[::-1]
    assert_allclose(psi, values[3:].mean())
    assert_allclose(np.linalg.eigvalsh(W @ W.T)[::-1], values[:3] - psi[0])


# ------------------------------------------------------------ correctness
def tipping_bishop_log_likelihood(X, n_components):
    values = np.linalg.eigvalsh(np.cov(X, rowvar=False, bias=True))[::-1]
    n_features = X.shape[1]
    sigma2 = values[n_components:].mean()
    return -0.5 * (
        n_features * np.log(2 * np.pi)
        + np.log(values[:n_components]).sum()
        + (n_features - n_components) * np.log(sigma2)
        + n_features
    )


@pytest.mark.parametrize(
    "X, n_components",
    [
        (fa_data(1000)[0], 3),
        (fa_data(1000, n_features=20, n_components=5, seed=3)[0], 2),
        (load_iris().data, 1),
        (load_wine().data, 3),
    ],
)
def test_isotropic_reaches_tipping_bishop_closed_form(X, n_components):
    ppca = EMFactorAnalysis(n_components, noise="isotropic").fit(X)
    expected = tipping_bishop_log_likelihood(X, n_components)
    assert_allclose(ppca.score(X), expected, rtol=1e-6)
    assert_allclose(ppca.lower_bound_, expected, rtol=1e-6)
    assert np.ptp(ppca.noise_variance_) == 0


@pytest.mark.parametrize("seed", [0, 1])
def test_isotropic_em_finds_the_closed_form_from_random_loadings(seed):
    # EM itself gets there, not only the closed-form start.
    X, _ = fa_data(1000, n_features=15, n_components=4, seed=seed)
    expected = tipping_bishop_log_likelihood(X, 3)
    ppca = EMFactorAnalysis(3, noise="isotropic", warm_start=True, tol=1e-10)
    ppca.fit(X)
    rng = np.random.RandomState(seed)
    ppca.components_ = rng.normal(size=ppca.components_.shape) * X.std()
    ppca.noise_variance_ = np.full(X.shape[1], X.var())
    ppca.fit(X)
    assert ppca.n_iter_ > 5
    assert_allclose(ppca.score(X), expected, rtol=1e-6)


@pytest.mark.parametrize(
    "X, n_components",
    [
        (load_digits().data, 5),
        (fa_data(3000, n_features=20, n_components=4, seed=1)[0], 4),
        (fa_data(2000, n_features=15, n_components=2, seed=2)[0], 3),
        (load_iris().data, 1),
        (load_wine().data, 2),
        (StandardScaler().fit_transform(load_wine().data), 4),
    ],
)
def test_diagonal_scores_at_least_scikit_learn(X, n_components):
    reference = FactorAnalysis(n_components, random_state=0).fit(X).score(X)
    ours = quiet_fit(EMFactorAnalysis(n_components), X)
    assert ours.converged_
    assert ours.score(X) >= reference - 1e-4
    # The fitted parameters come from one more M-step than the last bound.
    assert is_monotone(ours.lower_bounds_ + [ours.score(X)])


def test_recovers_known_model_covariance():
    X, (components, noise_variance, mean) = fa_data(20000, seed=4)
    fa = EMFactorAnalysis(3).fit(X)
    true_covariance = components.T @ components + np.diag(noise_variance)
    error = np.linalg.norm(fa.get_covariance() - true_covariance)
    assert error < 0.03 * np.linalg.norm(true_covariance)
    assert_allclose(fa.noise_variance_, noise_variance, rtol=0.1)
    assert_allclose(fa.mean_, mean, atol=0.05)


@pytest.mark.parametrize("seed", range(30))
def test_log_likelihood_never_decreases(seed):
    rng = np.random.RandomState(seed)
    n_features = rng.randint(3, 25)
    n_components = rng.randint(1, n_features)
    X, _ = fa_data(rng.randint(2 * n_features, 300), n_features, n_components, seed)
    X *= rng.lognormal(0, 1, size=n_features)
    noise = ["diagonal", "isotropic"][seed % 2]
    weight = rng.randint(0, 3, size=len(X)) if seed % 3 == 0 else None
    fa = quiet_fit(
        EMFactorAnalysis(n_components, noise=noise, tol=1e-9, max_iter=200),
        X,
        sample_weight=weight,
    )
    assert np.all(np.isfinite(fa.lower_bounds_))
    # With noise at its floor (a Heywood case) the log-likelihood is exact
    # only to ~n_features * eps / floor (see the property test below): equal
    # parameters rotated score that far apart.
    rounding = n_features * np.finfo(float).eps / fa_module.RELATIVE_NOISE_FLOOR
    assert is_monotone(fa.lower_bounds_, atol=rounding)


def test_reads_the_data_twice(monkeypatch):
    # Once for the moments, once for the factors' signs: never per iteration.
    calls = []

    def counting_sums(X, sample_weight, shift):
        calls.append(len(X))
        return _moment_sums(X, sample_weight, shift)

    def counting_projections(X, *args):
        calls.append(len(X))
        return _extreme_projections(X, *args)

    monkeypatch.setattr(fa_module, "_moment_sums", counting_sums)
    monkeypatch.setattr(fa_module, "_extreme_projections", counting_projections)
    X, _ = fa_data(5000)
    fa = quiet_fit(EMFactorAnalysis(3, tol=0, max_iter=20), X)
    assert fa.n_iter_ == 20
    assert sum(calls) == 2 * len(X)


# --------------------------------------------------- formulas vs sklearn
def fitted_pair(n_components=3, rotation=None):
    X, _ = fa_data(800)
    ours = EMFactorAnalysis(n_components, rotation=rotation).fit(X)
    theirs = FactorAnalysis(n_components).fit(X)
    theirs.components_ = ours.components_
    theirs.noise_variance_ = ours.noise_variance_
    theirs.mean_ = ours.mean_
    return X, ours, theirs


def test_formulas_agree_with_scikit_learn_on_the_same_parameters():
    X, ours, theirs = fitted_pair()
    assert_allclose(ours.transform(X), theirs.transform(X))
    assert_allclose(ours.get_covariance(), theirs.get_covariance())
    assert_allclose(ours.get_precision(), theirs.get_precision())
    assert_allclose(ours.score_samples(X), theirs.score_samples(X))
    assert_allclose(ours.score(X), theirs.score(X))


def test_components_match_scikit_learn_up_to_sign():
    X, _ = fa_data(3000, n_features=10, n_components=2, seed=5)
    ours = EMFactorAnalysis(2, tol=1e-10).fit(X)
    theirs = FactorAnalysis(2, tol=1e-8, svd_method="lapack").fit(X)
    signs = np.sign(np.sum(ours.components_ * theirs.components_, axis=1))
    assert_allclose(ours.components_, signs[:, None] * theirs.components_, atol=1e-3)
    assert_allclose(ours.noise_variance_, theirs.noise_variance_, rtol=1e-3)


@pytest.mark.parametrize("rotation", ["varimax", "quartimax"])
def test_rotation_keeps_likelihood(rotation):
    X, plain, _ = fitted_pair()
    rotated = EMFactorAnalysis(3, rotation=rotation).fit(X)
    assert_allclose(
        rotated.components_, _ortho_rotation(plain.components_.T, method=rotation)
    )
    assert_allclose(rotated.score(X), plain.score(X))
    assert_allclose(rotated.get_covariance(), plain.get_covariance())


# ------------------------------------------------------------ sample weights
def test_integer_weights_equal_repeated_rows():
    X, _ = fa_data(200)
    weight = np.random.RandomState(0).randint(0, 4, size=len(X))
    weighted = EMFactorAnalysis(3).fit(X, sample_weight=weight)
    repeated = EMFactorAnalysis(3).fit(np.repeat(X, weight, axis=0))
    for attribute in ["mean_", "components_", "noise_variance_", "lower_bounds_"]:
        assert_allclose(
            getattr(weighted, attribute), getattr(repeated, attribute), rtol=1e-7
        )
    assert_allclose(weighted.transform(X), repeated.transform(X), rtol=1e-6)
    assert_allclose(weighted.loglike_, np.array(weighted.lower_bounds_) * weight.sum())


def test_zero_weights_equal_removed_rows():
    X, _ = fa_data(200)
    weight = np.ones(len(X))
    weight[::3] = 0
    weighted = EMFactorAnalysis(3).fit(X, sample_weight=weight)
    removed = EMFactorAnalysis(3).fit(X[weight > 0])
    assert_allclose(weighted.components_, removed.components_, rtol=1e-7)
    assert_allclose(weighted.score(X), removed.score(X))


# ---------------------------------------------------- warnings and errors
def test_heywood_case_is_floored_with_a_warning():
    X, _ = fa_data(300)
    X = np.column_stack([X, np.full(len(X), 3.0)])
    with pytest.warns(UserWarning, match=r"1 feature\(s\) \(indices \[12\]\)"):
        fa = EMFactorAnalysis(3).fit(X)
    assert fa.noise_variance_[12] == fa_module.CONSTANT_FEATURE_NOISE
    # A feature that is a combination of others needs no noise.
    X[:, 12] = X[:, 0] - X[:, 1]
    with pytest.warns(UserWarning, match="Heywood case"):
        fa = EMFactorAnalysis(4).fit(X)
    floor = fa_module.RELATIVE_NOISE_FLOOR * X[:, 12].var()
    assert_allclose(fa.noise_variance_[12], floor)
    assert np.all(np.isfinite(fa.score_samples(X)))


def test_errors_are_clear():
    X, _ = fa_data(20, n_features=4)
    with pytest.raises(ValueError, match="n_components=5 must be at most"):
        EMFactorAnalysis(5).fit(X)
    with pytest.raises(ValueError, match="minimum of 2 is required"):
        EMFactorAnalysis(1).fit(X[:1])
    # NaN marks a missing entry (tests/test_factor_analysis_missing.py); a
    # row with nothing observed, or inf, is an error.
    X_nan = X.copy()
    X_nan[0] = np.nan
    with pytest.raises(ValueError, match="entirely NaN"):
        EMFactorAnalysis(1).fit(X_nan)
    X_nan[0] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        EMFactorAnalysis(1).fit(X_nan)
    with pytest.raises(ValueError, match="one positive variance per feature"):
        EMFactorAnalysis(1, noise_variance_init=[1.0, 1.0]).fit(X)
    with pytest.raises(ValueError, match="at least one non-zero"):
        EMFactorAnalysis(1).fit(X, sample_weight=np.zeros(len(X)))
    with pytest.raises(ValueError, match="Z has 2 columns"):
        EMFactorAnalysis(1).fit(X).inverse_transform(np.zeros((3, 2)))


# ------------------------------------------------------------------ API
def test_pipeline_and_grid_search():
    X, _ = fa_data(600, n_features=10, n_components=3, seed=6)
    pipe = make_pipeline(StandardScaler(), EMFactorAnalysis(3))
    assert pipe.fit_transform(X).shape == (600, 3)
    assert np.isfinite(pipe.score(X))
    search = GridSearchCV(EMFactorAnalysis(), {"n_components": [1, 3]}, n_jobs=2, cv=3)
    search.fit(X)
    assert search.best_params_ == {"n_components": 3}


def test_bic_picks_the_true_number_of_factors():
    X, _ = fa_data(3000, n_features=10, n_components=3, seed=7)
    bic = [quiet_fit(EMFactorAnalysis(k), X).bic(X) for k in range(1, 6)]
    assert np.argmin(bic) == 2
    fa = EMFactorAnalysis(3).fit(X)
    n_parameters = 10 * 3 - 3 + 10 + 10
    assert_allclose(fa.aic(X), -2 * fa.score(X) * len(X) + 2 * n_parameters)
    assert_allclose(
        fa.bic(X), -2 * fa.score(X) * len(X) + n_parameters * np.log(len(X))
    )


def test_sample_draws_from_the_joint():
    _, (components, noise_variance, mean) = fa_data()
    X, _ = fa_data(5000)
    fa = EMFactorAnalysis(3, random_state=1).fit(X)
    X_new, Z_new = fa.sample(20000)
    assert X_new.shape == (20000, 12) and Z_new.shape == (20000, 3)
    assert_allclose(np.cov(Z_new, rowvar=False), np.eye(3), atol=0.05)
    assert_allclose(X_new.mean(axis=0), fa.mean_, atol=0.1)
    covariance = fa.get_covariance()
    assert np.linalg.norm(
        np.cov(X_new, rowvar=False) - covariance
    ) < 0.05 * np.linalg.norm(covariance)
    # X given Z is Z W + mean plus noise of the fitted variance.
    residual = X_new - fa.inverse_transform(Z_new)
    assert_allclose(residual.var(axis=0), fa.noise_variance_, rtol=0.1)
    assert_allclose(fa.sample(5)[0], fa.sample(5)[0])


def test_transform_and_inverse_transform():
    X, _ = fa_data(500)
    fa = EMFactorAnalysis(3).fit(X)
    Z = fa.transform(X)
    assert Z.shape == (500, 3)
    assert_allclose(fa.fit_transform(X), Z)
    assert_allclose(fa.inverse_transform(Z), Z @ fa.components_ + fa.mean_)
    # The posterior mean shrinks: reconstructions explain part of the variance.
    residual = X - fa.inverse_transform(Z)
    assert np.all(residual.var(axis=0) < X.var(axis=0))
    assert list(fa.get_feature_names_out()) == [
        "emfactoranalysis0",
        "emfactoranalysis1",
        "emfactoranalysis2",
    ]


def test_pickle_warm_start_and_defaults():
    X, _ = fa_data(500)
    fa = EMFactorAnalysis(3).fit(X)
    restored = pickle.loads(pickle.dumps(fa))
    assert_allclose(restored.transform(X), fa.transform(X))

    warm = EMFactorAnalysis(3, warm_start=True).fit(X)
    warm.fit(X)
    assert warm.n_iter_ <= 2
    assert_allclose(warm.score(X), fa.score(X), rtol=1e-7)

    full = EMFactorAnalysis().fit(X)
    assert full.components_.shape == (12, 12)
    lapack = EMFactorAnalysis(3, svd_method="lapack").fit(X)
    assert_allclose(lapack.score(X), fa.score(X), rtol=1e-7)
    single = EMFactorAnalysis(3).fit(X.astype(np.float32))
    assert_allclose(single.score(X), fa.score(X), rtol=1e-5)


def model_selection_data(n_samples=300, n_features=15, rank=3, seed=42):
    """scikit-learn's PPCA/FA model selection example, smaller."""
    rng = np.random.RandomState(seed)
    U, _, _ = linalg.svd(rng.randn(n_features, n_features))
    X = rng.randn(n_samples, rank) @ U[:, :rank].T
    homoscedastic = X + rng.randn(n_samples, n_features)
    heteroscedastic = X + rng.randn(n_samples, n_features) * (
        rng.rand(n_features) + 0.5
    )
    return homoscedastic, heteroscedastic


# -------------------------------------------------- profile likelihood
@pytest.mark.parametrize("form, n_samples", [("dense", 400), ("dense", 8), ("thin", 8)])
def test_profile_is_the_likelihood_at_its_loadings_and_its_gradient(form, n_samples):
    X, _ = fa_data(n_samples)
    scatter = scatter_of(X, form)
    noise = np.random.RandomState(0).uniform(0.3, 3.0, size=12)
    for k in [0, 2, 5, 12]:
        value, gradient, W = _profile(noise, scatter, k)
        assert_allclose(value, _posterior_statistics(W, noise, scatter)[2])
        expected = optimize.approx_fprime(
            np.log(noise), lambda x, k=k: _profile(np.exp(x), scatter, k)[0], 1e-7
        )
        assert_allclose(gradient, expected, rtol=1e-4, atol=1e-6)
        # No other loadings do better for this noise.
        rng = np.random.RandomState(k)
        for _ in range(3 if k else 0):
            other = W + 0.05 * rng.normal(size=W.shape)
            assert _posterior_statistics(other, noise, scatter)[2] < value


@pytest.mark.parametrize("k", [0, 2, 5, 11, 12])
def test_profile_hessian_matches_differences_of_its_gradient(k):
    # Exact first- and second-order derivatives in the uniqueness u, against
    # central differences of the value and of the gradient. Small noise makes
    # some top eigenvalues large; large noise puts some below 1 (no loading).
    X, _ = fa_data(400)
    matrix = scatter_of(X, "dense").matrix
    upper = np.diag(matrix).copy()
    uniqueness = np.random.RandomState(k).uniform(0.05, 3.0, size=12)
    uniqueness[:2] = [1e-3, 2e-3]

    def point(u):
        return _profile_point(u, matrix, upper, k)

    value, *eigen = point(uniqueness)
    assert_allclose(-value, _profile(uniqueness * upper, _DenseScatter(matrix), k)[0])
    gradient, hessian = _profile_derivatives(uniqueness, *eigen)
    # Central differences: O(step^2) off, and rounding of values with terms of
    # 1/u (up to 1e3 here) divided by 2 step; a wrong term would be O(1) off.
    step = 1e-4 * uniqueness
    scale = abs(gradient).max()
    for j in range(12):
        up, down = uniqueness.copy(), uniqueness.copy()
        up[j] += step[j]
        down[j] -= step[j]
        up_point, down_point = point(up), point(down)
        difference = (up_point[0] - down_point[0]) / (2 * step[j])
        assert_allclose(gradient[j], difference, rtol=1e-4, atol=1e-5 * scale)
        column = (
            _profile_derivatives(up, *up_point[1:])[0]
            - _profile_derivatives(down, *down_point[1:])[0]
        ) / (2 * step[j])
        assert_allclose(
            hessian[:, j], column, rtol=1e-4, atol=1e-6 * abs(hessian).max()
        )


@pytest.mark.parametrize("n_components", [2, 6, 9])
def test_newton_steps_reach_a_maximum_of_the_profile(n_components):
    # From the SMC start on low-rank data (Heywood cases at k beyond the
    # rank), the end satisfies the bound-constrained optimality conditions
    # and no tightly converged L-BFGS-B run from it gains anything.
    X = model_selection_data(300, 12, 3)[1]
    scatter = scatter_of(X, "dense")
    upper = scatter.diagonal
    lower = 1e-6 * upper
    start = np.maximum(_smc_noise_variance(scatter, n_components), lower)
    noise, components, converged = _newton_profile(
        start, scatter, n_components, lower, upper, tol=1e-12, max_iter=200
    )
    assert converged
    value, _, profiled = _profile(noise, scatter, n_components)
    # The same loadings up to the eigenvectors' signs.
    assert_allclose(components.T @ components, profiled.T @ profiled, atol=1e-10)
    assert value > _profile(start, scatter, n_components)[0]
    uniqueness = noise / upper
    gradient, hessian = _profile_derivatives(
        uniqueness, *_profile_point(uniqueness, scatter.matrix, upper, n_components)[1:]
    )
    at_floor = uniqueness <= lower / upper * (1 + 1e-9)
    at_top = uniqueness >= 1 - 1e-9
    free = ~(at_floor | at_top)
    # Minus the log-likelihood: zero gradient inside, pushing outwards at
    # the bounds, and positive semi-definite curvature inside.
    assert_allclose(gradient[free], 0, atol=1e-5)
    assert np.all(gradient[at_floor] >= -1e-8) and np.all(gradient[at_top] <= 1e-8)
    assert np.linalg.eigvalsh(hessian[np.ix_(free, free)]).min() > -1e-8
    polished = optimize.minimize(
        lambda u: -_profile(u * upper, scatter, n_components)[0],
        uniqueness,
        method="L-BFGS-B",
        bounds=optimize.Bounds(lower / upper, 1.0),
        options={"ftol": 1e-15, "gtol": 1e-12},
    )
    assert -polished.fun < value + 1e-9


@NEEDS_QUASI_NEWTON
def test_thin_data_fit_twice_and_keep_the_better(monkeypatch):
    # No more rows than features: the default start and a second whole run
    # from noise at each feature's variance, the better kept. (On these data,
    # 10 x 25 with k=6, the default start alone ended 0.59 nats per sample
    # below scikit-learn's score, the second 0.05 above it.)
    rng = np.random.default_rng(3)
    components = rng.normal(size=(3, 25))
    noise = rng.uniform(0.5, 2.0, size=25)
    X = rng.normal(size=(10, 3)) @ components + rng.normal(size=25)
    X += rng.normal(size=(10, 25)) * np.sqrt(noise)
    starts = []
    initialize = EMFactorAnalysis._initialize

    def counted(self, *args, **kwargs):
        starts.append(1)
        return initialize(self, *args, **kwargs)

    monkeypatch.setattr(EMFactorAnalysis, "_initialize", counted)
    both = quiet_fit(EMFactorAnalysis(6), X)
    assert len(starts) == 2
    from_variance = quiet_fit(EMFactorAnalysis(6, noise_variance_init=X.var(0)), X)
    monkeypatch.setattr(EMFactorAnalysis, "_n_starts", lambda self, data: 1)
    default = quiet_fit(EMFactorAnalysis(6), X)
    best = max(default.lower_bound_, from_variance.lower_bound_)
    assert_allclose(both.lower_bound_, best, rtol=1e-12)
    assert_allclose(both.score(X), max(default.score(X), from_variance.score(X)))
    assert default.lower_bound_ != from_variance.lower_bound_  # two maxima
    # More rows than features: one start.
    monkeypatch.undo()
    monkeypatch.setattr(EMFactorAnalysis, "_initialize", counted)
    starts.clear()
    quiet_fit(EMFactorAnalysis(6), np.vstack([X, X + 1, X - 1]))
    assert len(starts) == 1


@NEEDS_QUASI_NEWTON
def test_newton_runs_do_not_stop_at_a_saddle(monkeypatch):
    # On these data a run's steps once gained less than tol where the free
    # Hessian had a negative eigenvalue (-0.053): a saddle's neighbourhood,
    # 1.2e-4 nats per sample below the maximum the steps reach going on. A
    # run that says it converged ends where the profile curves down only.
    rng = np.random.RandomState(0)
    loadings = rng.randn(3, 12)
    X = rng.randn(300, 3) @ loadings + 0.5 * rng.randn(300, 12)
    ends = []
    newton_profile = kernels_module._newton_profile

    def recorded(noise, scatter, n_components, lower, upper, *args):
        end = newton_profile(noise, scatter, n_components, lower, upper, *args)
        ends.append((end, scatter.matrix, n_components, lower, upper))
        return end

    monkeypatch.setattr(kernels_module, "_newton_profile", recorded)
    quiet_fit(EMFactorAnalysis(6), X)
    assert ends
    for (noise, _, converged), matrix, k, lower, upper in ends:
        if not converged:
            continue
        uniqueness = noise / upper
        eigen = _profile_point(uniqueness, matrix, upper, k)[1:]
        gradient, hessian = _profile_derivatives(uniqueness, *eigen)
        free = (noise > lower * (1 + 1e-9)) & (noise < upper * (1 - 1e-9))
        lowest = np.linalg.eigvalsh(hessian[np.ix_(free, free)])[0]
        assert lowest > -1e-6 * abs(hessian).max()


@NEEDS_QUASI_NEWTON
@pytest.mark.parametrize("n_samples, newton", [(30, False), (40, True)])
def test_newton_steps_need_two_rows_a_feature(monkeypatch, n_samples, newton):
    # Closer to thin data the profile has many local maxima and L-BFGS-B's
    # short steps found higher ones more often: Newton steps need at least
    # NEWTON_ROWS_PER_FEATURE rows a feature (here 20 features).
    X = model_selection_data(n_samples, 20, 3)[1]
    runs = []
    newton_profile = kernels_module._newton_profile

    def counted(*args):
        runs.append(1)
        return newton_profile(*args)

    monkeypatch.setattr(kernels_module, "_newton_profile", counted)
    quiet_fit(EMFactorAnalysis(12), X)
    assert bool(runs) == newton


# ------------------------------------------ the history of the returned fit
@pytest.mark.parametrize("noise", ["diagonal", "isotropic"])
@pytest.mark.parametrize(
    "X, n_components",
    [
        (fa_data(800)[0], 3),
        (load_wine().data, 2),
        (load_digits().data[:500], 8),
        (model_selection_data()[1], 15),
    ],
)
@pytest.mark.parametrize("weighted", [False, True])
def test_last_loglike_is_the_score_of_the_returned_parameters(
    X, n_components, noise, weighted
):
    weight = np.random.RandomState(0).uniform(0, 3, len(X)) if weighted else None
    fa = quiet_fit(EMFactorAnalysis(n_components, noise=noise), X, sample_weight=weight)
    samples = fa.score_samples(X)
    total = samples.sum() if weight is None else samples @ weight
    assert_allclose(fa.loglike_[-1], total, rtol=1e-7)
    assert_allclose(
        fa.lower_bound_ * (len(X) if weight is None else weight.sum()), total
    )
    assert is_monotone(fa.lower_bounds_)


# ----------------------------------------------------------- Heywood cases
@pytest.mark.parametrize("which", [0, 1])
@pytest.mark.parametrize("n_components", [0, 3, 6, 9, 12, 15])
def test_heywood_cases_score_at_least_scikit_learn(which, n_components):
    X = model_selection_data()[which]
    reference = FactorAnalysis(n_components).fit(X).score(X)
    ours = quiet_fit(EMFactorAnalysis(n_components), X)
    assert ours.converged_
    assert ours.score(X) >= reference - 1e-7


@NEEDS_QUASI_NEWTON
def test_heywood_case_converges_at_a_tight_tolerance():
    # Factors beyond the rank: plain EM needed thousands of iterations here.
    X = model_selection_data(400, 20, 3)[1]
    fa = quiet_fit(EMFactorAnalysis(12, tol=1e-10, max_iter=300), X)
    assert fa.converged_
    loose = quiet_fit(EMFactorAnalysis(12), X)
    # At the boundary (noise variances at their floor) rounding is amplified
    # by the conditioning, variance / noise ~ 1e6: a tol=1e-10 run's own
    # lower bounds move by ~5e-10 there, and another LAPACK gave an end
    # 4e-10 below the loose run's. Allow that rounding level, no more.
    condition = np.max(X.var(axis=0) / fa.noise_variance_)
    rounding = np.finfo(np.float64).eps * condition * abs(loose.score(X))
    assert rounding < 1e-7  # still far below any difference between maxima
    assert fa.score(X) >= loose.score(X) - rounding


@NEEDS_QUASI_NEWTON
def test_the_step_after_convergence_is_no_quasi_newton_run(monkeypatch):
    # Once an E-step gains less than tol the loop stops after its M-step:
    # that step is a SQUAREM cycle, not a quasi-Newton run.
    X = model_selection_data()[1]
    runs, steps = [], []
    maximize_profile = fa_module._maximize_profile
    m_step = EMFactorAnalysis._m_step

    def counted(*args):
        runs.append(1)
        return maximize_profile(*args)

    def recorded(self, statistics, last=False):
        before = len(runs)
        m_step(self, statistics, last)
        steps.append((statistics[-1], len(runs) > before))

    monkeypatch.setattr(fa_module, "_maximize_profile", counted)
    monkeypatch.setattr(EMFactorAnalysis, "_m_step", recorded)
    fa = quiet_fit(EMFactorAnalysis(12), X)
    assert fa.converged_ and len(steps) == fa.n_iter_ >= 3
    bounds = np.array([bound for bound, _ in steps])
    gains = np.abs(np.diff(np.r_[-np.inf, bounds]))
    assert gains[-1] < fa.tol and np.all(gains[:-1] >= fa.tol)
    quasi_newton = [ran for _, ran in steps]
    assert any(quasi_newton[:-1]) and not quasi_newton[-1]


@NEEDS_QUASI_NEWTON
def test_fewer_samples_than_features_scores_at_least_scikit_learn():
    X = np.random.RandomState(0).randn(20, 50)
    reference = FactorAnalysis(3).fit(X).score(X)
    ours = quiet_fit(EMFactorAnalysis(3), X)
    assert ours.score(X) >= reference
    assert np.all(np.isfinite(ours.score_samples(X)))


# ------------------------------------------------------------- far inputs
def test_far_points_score_minus_infinity_and_transform_without_nan():
    X, _ = fa_data(300)
    fa = EMFactorAnalysis(3).fit(X)
    far = np.vstack([np.full(12, 1e155), np.full(12, -1e300), np.full(12, 1.7e308)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warnings either
        scores = fa.score_samples(far)
        Z = fa.transform(far)
    assert np.all(scores == -np.inf)
    # Far, but not overflowing: the same as scipy's density.
    near = np.full((1, 12), 1e10)
    expected = stats.multivariate_normal(fa.mean_, fa.get_covariance()).logpdf(near)
    assert_allclose(fa.score_samples(near), expected, rtol=1e-6)
    assert not np.any(np.isnan(Z))
    # Far rows keep their direction: E[z | x] is linear in x - mean.
    direction = fa.transform(fa.mean_ + np.ones((1, 12))) - fa.transform(fa.mean_[None])
    assert_allclose(Z[0] / 1e155, direction[0], rtol=1e-6)
    assert_allclose(Z[2] / 1.7e308, direction[0], rtol=1e-6)


@pytest.mark.parametrize("case", ["data", "weights"])
def test_overflowing_data_or_weights_raise_a_clear_error(case):
    X, _ = fa_data(200)
    weight = np.full(len(X), 1e306) if case == "weights" else None
    if case == "data":
        X = X * 1e200
    with pytest.raises(ValueError, match="StandardScaler"):
        EMFactorAnalysis(3).fit(X, sample_weight=weight)


# ------------------------------------------------------ precision and scale
def test_float32_offset_and_constant_columns():
    X, _ = fa_data(2000)
    fa = EMFactorAnalysis(3).fit(X)
    single = EMFactorAnalysis(3).fit(X.astype(np.float32))
    # float32 input: rounding the data itself moves the score by ~1e-7.
    assert_allclose(single.score(X), fa.score(X), rtol=1e-6)
    assert_allclose(single.get_covariance(), fa.get_covariance(), rtol=1e-4, atol=1e-5)
    # A large offset changes nothing but the mean.
    shifted = EMFactorAnalysis(3).fit(X + 1e6)
    assert_allclose(shifted.score(X + 1e6), fa.score(X), rtol=1e-8)
    assert_allclose(shifted.mean_, fa.mean_ + 1e6)
    # A constant column is explained without noise and scores finitely.
    with_constant = np.column_stack([X, np.full(len(X), 5.0)])
    with pytest.warns(UserWarning, match="Heywood"):
        constant = EMFactorAnalysis(3).fit(with_constant)
    assert constant.noise_variance_[-1] == fa_module.CONSTANT_FEATURE_NOISE
    assert np.all(np.isfinite(constant.score_samples(with_constant)))
    assert_allclose(constant.components_[:, -1], 0, atol=1e-5)


# ------------------------------------------------- scikit-learn's signs
def example_model_selection_data():
    """The data of scikit-learn's example "Model selection with Probabilistic
    PCA and Factor Analysis (FA)": n=500, d=25, rank 5, two noise models."""
    rng = np.random.RandomState(42)
    U, _, _ = linalg.svd(rng.randn(25, 25))
    X = rng.randn(500, 5) @ U[:, :5].T
    homoscedastic = X + rng.randn(500, 25)
    sigmas = rng.rand(25) + 0.5
    return homoscedastic, X + rng.randn(500, 25) * sigmas


def sign_data(name):
    if name == "iris":  # scikit-learn's example "Factor Analysis (with rotation)"
        return StandardScaler().fit_transform(load_iris().data), 2
    if name == "known":
        return fa_data(500, n_features=25, n_components=5, seed=6)[0], 5
    homoscedastic, heteroscedastic = example_model_selection_data()
    return {"homoscedastic": homoscedastic, "heteroscedastic": heteroscedastic}[name], 5


def sign_margins(fa, X):
    """Per factor, 1 - (largest score of the other sign) / (largest score), in
    magnitude: near 0, the sign rests on a near tie."""
    scores = (X - fa.mean_) @ (fa.components_ / fa.noise_variance_).T
    # Orient each factor so that its largest score is positive.
    scores *= np.sign(scores[np.abs(scores).argmax(axis=0), range(scores.shape[1])])
    return 1 + scores.min(axis=0) / scores.max(axis=0)


def cosines(ours, theirs):
    """Cosine of each of our factors with scikit-learn's: near 1 for the same
    factor with the same sign, near -1 for the same factor flipped."""
    norms = np.linalg.norm(ours, axis=1) * np.linalg.norm(theirs, axis=1)
    return np.sum(ours * theirs, axis=1) / norms


def scikit_learn_loadings(X, n_components, noise_variance, rotation=None):
    """FactorAnalysis's loadings for the given noise, with its signs: its first
    iteration from that noise (enough power iterations for exact singular
    vectors)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return FactorAnalysis(
            n_components,
            rotation=rotation,
            noise_variance_init=noise_variance,
            max_iter=1,
            iterated_power=30,
        ).fit(X)


@pytest.mark.parametrize(
    "name, rotation",
    [
        ("iris", None),
        ("iris", "varimax"),
        ("homoscedastic", None),
        ("heteroscedastic", None),
        ("known", None),
        ("known", "quartimax"),
    ],
)
def test_signs_are_scikit_learns(name, rotation):
    X, n_components = sign_data(name)
    ours = quiet_fit(EMFactorAnalysis(n_components, rotation=rotation, tol=1e-12), X)
    # The data decide every sign clearly (no near tie), on any BLAS.
    unrotated = scikit_learn_loadings(X, n_components, ours.noise_variance_)
    assert np.all(sign_margins(unrotated, X) > 0.02)
    theirs = scikit_learn_loadings(X, n_components, ours.noise_variance_, rotation)
    # Not exactly equal where EM alone (SciPy < 1.15) stops short of the
    # optimum in a Heywood case (iris): there ~1e-3 apart.
    assert np.all(cosines(ours.components_, theirs.components_) > 0.999)


@pytest.mark.parametrize("name", ["homoscedastic", "heteroscedastic", "known"])
def test_signs_match_a_scikit_learn_fit(name):
    # Where scikit-learn's own fit reaches our optimum (up to its tolerance),
    # it finds the same factors with the same signs.
    X, n_components = sign_data(name)
    ours = EMFactorAnalysis(n_components).fit(X)
    theirs = FactorAnalysis(n_components, tol=1e-4, iterated_power=10).fit(X)
    assert ours.score(X) >= theirs.score(X) - 1e-5
    assert np.all(cosines(ours.components_, theirs.components_) > 0.99)


# ------------------------------------------------------------ wide data
def fit_by_path(estimator, X, sample_weight, dense, monkeypatch):
    """Fit with the scatter held ``dense`` or thin, and check it was."""
    built = []
    for name in ["_DenseScatter", "_ThinScatter"]:
        kind = getattr(fa_module, name)
        monkeypatch.setattr(
            fa_module, name, lambda *a, kind=kind: built.append(kind) or kind(*a)
        )
    estimator._dense_scatter = dense
    quiet_fit(estimator, X, sample_weight=sample_weight)
    assert built == [_DenseScatter if dense else _ThinScatter]
    for name, kind in [
        ("_DenseScatter", _DenseScatter),
        ("_ThinScatter", _ThinScatter),
    ]:
        monkeypatch.setattr(fa_module, name, kind)
    return estimator


@pytest.mark.parametrize("noise", ["diagonal", "isotropic"])
@pytest.mark.parametrize("weighted", [False, True])
def test_wide_and_tall_paths_agree(noise, weighted, monkeypatch):
    # With EM steps alone (as beyond QUASI_NEWTON_MAX_FEATURES) both paths
    # take the same steps from the same exact start ("lapack"), so they agree
    # to rounding (with the true number of factors: a spare one, fitted to
    # noise, is so weakly determined that rounding moves it by ~1e-9).
    monkeypatch.setattr(fa_module, "QUASI_NEWTON_MAX_FEATURES", 0)
    X, _ = fa_data(30, n_features=80, n_components=3, seed=8)
    weight = np.random.RandomState(0).randint(0, 3, size=30) if weighted else None
    params = dict(noise=noise, svd_method="lapack", rotation="varimax")
    wide = fit_by_path(EMFactorAnalysis(3, **params), X, weight, False, monkeypatch)
    tall = fit_by_path(EMFactorAnalysis(3, **params), X, weight, True, monkeypatch)

    def agree(ours, theirs):
        ours, theirs = np.asarray(ours), np.asarray(theirs)
        assert_allclose(ours, theirs, rtol=1e-10, atol=1e-10 * np.abs(theirs).max())

    assert wide.n_iter_ == tall.n_iter_
    for attribute in ["mean_", "components_", "noise_variance_", "loglike_"]:
        agree(getattr(wide, attribute), getattr(tall, attribute))
    Z = wide.transform(X)
    agree(Z, tall.transform(X))
    agree(wide.inverse_transform(Z), tall.inverse_transform(Z))
    agree(wide.score_samples(X), tall.score_samples(X))
    agree(wide.bic(X), tall.bic(X))
    for drawn, expected in zip(wide.sample(3), tall.sample(3), strict=True):
        agree(drawn, expected)
    agree(wide.get_covariance(), tall.get_covariance())
    agree(wide.get_precision(), tall.get_precision())


@NEEDS_QUASI_NEWTON
def test_wide_and_tall_paths_agree_with_quasi_newton_steps(monkeypatch):
    # With at most 500 features both paths take quasi-Newton steps, from the
    # same start (the SMC noise by Woodbury on the wide path). L-BFGS-B stops
    # where its tolerance is met, a point that rounding moves: the
    # likelihoods agree to 1e-10, the parameters to ~sqrt of that.
    X, _ = fa_data(40, n_features=60, n_components=3, seed=8)
    weight = np.random.RandomState(0).randint(0, 3, size=40)
    wide = fit_by_path(EMFactorAnalysis(3), X, weight, False, monkeypatch)
    tall = fit_by_path(EMFactorAnalysis(3), X, weight, True, monkeypatch)
    assert_allclose(wide.lower_bound_, tall.lower_bound_, rtol=1e-10)
    scale = np.abs(tall.components_).max()
    assert_allclose(wide.components_, tall.components_, atol=1e-6 * scale)
    assert_allclose(wide.noise_variance_, tall.noise_variance_, rtol=1e-6)


def test_wide_fit_memory_is_linear_in_features():
    # 50 x 20,000: the data take 8 MB, a 20,000^2 scatter would take 3.2 GB.
    X, _ = fa_data(50, n_features=20_000, n_components=3, seed=9)
    tracemalloc.start()
    try:
        fa = EMFactorAnalysis(3).fit(X)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert fa.converged_
    assert peak < 3 * X.nbytes


def test_recovers_known_model_with_5000_features():
    X, (components, noise_variance, mean) = fa_data(500, n_features=5000, seed=10)
    fa = EMFactorAnalysis(3).fit(X)
    assert fa.converged_
    # Sampling errors of 500 samples: ~sqrt(2 / 500) = 6% for a variance.
    assert np.median(np.abs(fa.noise_variance_ / noise_variance - 1)) < 0.06
    # |W^T W - W0^T W0|_F, by (n_components, n_components) products alone.
    squared_error = (
        np.sum((fa.components_ @ fa.components_.T) ** 2)
        - 2 * np.sum((fa.components_ @ components.T) ** 2)
        + np.sum((components @ components.T) ** 2)
    )
    error = np.sqrt(squared_error / np.sum((components @ components.T) ** 2))
    assert error < 0.1
    # The fitted loadings span the true ones: all principal angles small.
    cosines = linalg.svdvals(
        linalg.orth(fa.components_.T).T @ linalg.orth(components.T)
    )
    assert np.all(cosines > 0.99)
    assert_allclose(fa.mean_, mean, atol=5 * np.sqrt(X.var(axis=0).max() / 500))
    single = EMFactorAnalysis(3).fit(X.astype(np.float32))
    assert_allclose(single.score(X), fa.score(X), rtol=1e-6)


# ------------------------------------------------------- property tests
@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    scale=st.floats(1e-3, 1e3),
    sign=st.sampled_from([-1.0, 1.0]),
    offset=st.floats(-1e3, 1e3),
    noise=st.sampled_from(["diagonal", "isotropic"]),
)
def test_affine_equivariance(seed, scale, sign, offset, noise):
    # x -> a x + b: the maximum log-likelihood shifts by exactly -d log|a| per
    # sample, the model moves with the data and E[z|x] does not change.
    X, _ = fa_data(200, n_features=6, n_components=2, seed=seed % 1000)
    a = sign * scale
    fa = quiet_fit(EMFactorAnalysis(2, noise=noise, tol=1e-10), X)
    moved = quiet_fit(EMFactorAnalysis(2, noise=noise, tol=1e-10), a * X + offset)
    assert_allclose(moved.lower_bound_, fa.lower_bound_ - 6 * np.log(abs(a)), atol=1e-8)
    # Near a Heywood case the likelihood is so flat that two fits stopping
    # within tol of each other can differ in the parameters by ~sqrt(tol):
    # compare the moved fit with the first one moved by hand.
    assert_allclose(
        moved.mean_, a * fa.mean_ + offset, rtol=1e-9, atol=1e-9 * abs(offset)
    )
    by_hand = clone(moved).set_params(warm_start=True)
    quiet_fit(by_hand, a * X + offset)
    by_hand.mean_ = a * fa.mean_ + offset
    by_hand.components_ = a * fa.components_
    by_hand.noise_variance_ = a**2 * fa.noise_variance_
    assert_allclose(
        by_hand.score_samples(a * X + offset),
        fa.score_samples(X) - 6 * np.log(abs(a)),
        rtol=1e-9,
        atol=1e-9,
    )
    Z, Z_moved = fa.transform(X), by_hand.transform(a * X + offset)
    assert_allclose(Z_moved, Z, rtol=1e-7, atol=1e-9)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    n_samples=st.integers(5, 120),
    n_features=st.integers(2, 15),
    data=st.data(),
)
def test_never_decreases_and_ends_at_the_returned_score(
    seed, n_samples, n_features, data
):
    # Random shapes (n_samples <= n_features included), scales, weights and
    # constant columns: the history never decreases and its last entry is the
    # weighted log-likelihood of the returned parameters.
    n_components = data.draw(st.integers(0, n_features), label="n_components")
    noise = data.draw(st.sampled_from(["diagonal", "isotropic"]), label="noise")
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n_samples, 3)) @ rng.normal(size=(3, n_features))
    X += rng.normal(size=X.shape) * rng.lognormal(0, 1, size=n_features)
    if data.draw(st.booleans(), label="constant column"):
        X[:, 0] = 7.0
    weight = rng.randint(1, 4, size=n_samples) if seed % 2 else None
    fa = quiet_fit(
        EMFactorAnalysis(n_components, noise=noise, tol=1e-8, max_iter=300),
        X,
        sample_weight=weight,
    )
    # A noise variance at its floor makes tr(C^-1 S) terms up to 1/floor times
    # the data's scale: the log-likelihood is exact only to about
    # n_features * eps / floor (a constant column's noise is below even that
    # floor, but its scatter row is zero).
    rounding = n_features * np.finfo(float).eps / fa_module.RELATIVE_NOISE_FLOOR
    assert is_monotone(fa.lower_bounds_, atol=rounding)
    samples = fa.score_samples(X)
    total = samples.sum() if weight is None else samples @ weight
    assert np.all(np.isfinite(samples))
    assert_allclose(fa.loglike_[-1], total, rtol=1e-7)


# -------------------------------------------------------------- partial_fit
def quietly(method, *args, **kwargs):
    """Call without Heywood or convergence warnings."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The noise variance of")
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        return method(*args, **kwargs)


def fit_of_all(X, weight=None, **params):
    return quiet_fit(EMFactorAnalysis(3, tol=1e-10, **params), X, sample_weight=weight)


def assert_same_model(got, expected, X):
    # The statistics EM sees are those of all the rows, to rounding...
    seen, whole = got._moments_seen, expected._moments_seen
    assert_allclose(seen.total_weight, whole.total_weight, rtol=1e-12)
    assert_allclose(seen.mean, whole.mean, rtol=1e-12)
    assert_allclose(seen.sum_of_squares, whole.sum_of_squares, rtol=1e-10)
    # ... and both fits reach the same maximum from their own starts, as far
    # as EM's stopping rule (gain per iteration below tol, at a linear rate)
    # and the flatness of the maximum (parameters to about sqrt of that) let.
    assert abs(got.lower_bound_ - expected.lower_bound_) < 1e-6
    assert_allclose(got.get_covariance(), expected.get_covariance(), rtol=1e-4)


@pytest.mark.parametrize("noise", ["diagonal", "isotropic"])
def test_partial_fit_over_batches_is_the_fit_of_all_rows(noise):
    X = fa_data(1200)[0] + 1e6  # far from the origin: moments add exactly
    weight = np.random.RandomState(1).uniform(0, 2, size=len(X))
    fa = EMFactorAnalysis(3, noise=noise, tol=1e-10)
    for start in range(0, len(X), 250):
        rows = slice(start, start + 250)
        quietly(fa.partial_fit, X[rows], sample_weight=weight[rows])
    assert fa.n_batch_iter_ == 5
    assert_same_model(fa, fit_of_all(X, weight, noise=noise), X)


def test_partial_fit_after_fit_adds_to_the_fitted_rows():
    X = fa_data(1000)[0]
    fa = fit_of_all(X[:600])
    assert fa.n_batch_iter_ == 0
    quietly(fa.partial_fit, X[600:])
    assert fa.n_batch_iter_ == 1
    assert_same_model(fa, fit_of_all(X), X)


def test_partial_fit_keeps_each_factor_orientation():
    X = fa_data(2000, seed=4)[0]
    fa = EMFactorAnalysis(3)
    previous = None
    for start in range(0, len(X), 200):
        quietly(fa.partial_fit, X[start : start + 200])
        if previous is not None:
            assert np.all(np.sum(fa.components_ * previous, axis=1) > 0)
        previous = fa.components_.copy()
    # The first batch gave scikit-learn's signs: those of a fit of it alone.
    first = quiet_fit(EMFactorAnalysis(3), X[:200])
    assert np.all(np.sum(first.components_ * previous, axis=1) > 0)


def test_partial_fit_errors_are_clear_and_leave_the_model():
    X = fa_data(600)[0]
    fa = quietly(EMFactorAnalysis(3).partial_fit, X[:300])
    before = fa.get_covariance()
    with pytest.raises(ValueError, match="features of the first"):
        fa.partial_fit(X[:, :5])
    bad = X[300:].copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fa.partial_fit(bad)
    with pytest.raises(ValueError, match="warm_start|n_components"):
        fa.set_params(n_components=2).partial_fit(X[300:])
    assert_array_equal(fa.set_params(n_components=3).get_covariance(), before)
    wide = quiet_fit(EMFactorAnalysis(2), fa_data(10, n_features=30)[0])
    with pytest.raises(ValueError, match="fewer samples than features"):
        wide.partial_fit(fa_data(10, n_features=30, seed=1)[0])


def test_partial_fit_over_chunks_of_a_memory_mapped_file(tmp_path):
    X = fa_data(3000, seed=2)[0]
    np.save(tmp_path / "X.npy", X)
    mapped = np.load(tmp_path / "X.npy", mmap_mode="r")
    fa = EMFactorAnalysis(3, tol=1e-10)
    for start in range(0, len(mapped), 700):
        quietly(fa.partial_fit, mapped[start : start + 700])
    assert_same_model(fa, fit_of_all(X), X)


@pytest.mark.parametrize(
    "n_samples, n_features, small",
    [(300, 40, True), (300, SMALL_SCATTER + 1, False), (40, 2000, False)],
)
def test_iterations_on_a_small_scatter_run_blas_on_one_thread(
    n_samples, n_features, small, monkeypatch
):
    # The start and each iteration on a small scatter are many tiny
    # factorisations: BLAS threads cost more to wake than they save there.
    # Large scatters (dense or thin) keep every BLAS thread, and so does the
    # pass over the rows that orients the factors.
    from threadpoolctl import threadpool_info, threadpool_limits

    seen = {}

    def blas_threads():
        return max(
            i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"
        )

    def recording(name):
        method = getattr(EMFactorAnalysis, name)

        def recorded(self, *args, **kwargs):
            seen.setdefault(name, set()).add(blas_threads())
            return method(self, *args, **kwargs)

        monkeypatch.setattr(EMFactorAnalysis, name, recorded)

    for name in ("_initialize", "_e_step", "_extremes"):
        recording(name)
    X, _ = fa_data(n_samples, n_features=n_features, n_components=3, seed=3)
    with threadpool_limits(2, user_api="blas"):
        outside = blas_threads()
        if outside < 2:
            pytest.skip("BLAS runs one thread here")
        quiet_fit(EMFactorAnalysis(3, max_iter=3), X)
    solver = {1} if small else {outside}
    assert seen == {"_initialize": solver, "_e_step": solver, "_extremes": {outside}}


def test_warm_start_refits_continue_until_converged():
    # lower_bound_ scores the returned parameters, which a warm start's first
    # E-step scores again: were that the yardstick, every refit would stop
    # after one iteration claiming convergence while the likelihood still rose.
    rng = np.random.RandomState(42)
    basis = linalg.svd(rng.randn(25, 25))[0][:, :5]
    X = rng.randn(500, 5) @ basis.T + rng.randn(500, 25)  # rank 5; k=15: Heywood
    reference = quiet_fit(EMFactorAnalysis(15, max_iter=1000), X)
    # max_iter=6: the first fit stops right after its first Newton run, short
    # of the maximum, so that the refit has iterations left to run. Without
    # Newton steps (SciPy < 1.15) 8, as before them: there at 6 the last
    # refit happens to stop after its first iteration.
    max_iter = 6 if fa_module.QUASI_NEWTON_SCIPY else 8
    fa = EMFactorAnalysis(15, max_iter=max_iter, warm_start=True)
    scores = []
    # Two refits with Newton steps; without them (SciPy < 1.15) EM crawls
    # here: about 520 iterations in all, as one fit takes.
    for _ in range(100):
        quiet_fit(fa, X)
        scores.append(fa.score(X))
        if fa.converged_:
            break
    assert fa.converged_
    assert len(scores) > 1 and fa.n_iter_ > 1  # the first fit stopped at max_iter
    assert np.all(np.diff(scores) >= -1e-12)
    assert fa.score(X) > reference.score(X) - 1e-3
    quiet_fit(fa, X)  # converged: another run gains less than tol
    assert fa.score(X) - scores[-1] < 2 * fa.tol
