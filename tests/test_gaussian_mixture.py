"""EMGaussianMixture against scikit-learn's GaussianMixture and brute force."""

import pickle
import tracemalloc
import warnings

import numpy as np
import pytest
import scipy.sparse
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal
from scipy.special import logsumexp
from scipy.stats import multivariate_normal
from sklearn import config_context
from sklearn.datasets import make_blobs
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import sklearn_latent._gaussian_kernels as gk
from sklearn_latent import EMGaussianMixture

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]
INIT_PARAMS = ["kmeans", "k-means++", "random", "random_from_data"]
FITTED = ["weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"]


def blobs(n_samples=400, n_features=4, centers=3, random_state=0):
    X, _ = make_blobs(
        n_samples, n_features=n_features, centers=centers, random_state=random_state
    )
    return X


def full_covariance(gm, k):
    """Component k's covariance as a (d, d) matrix, whatever the type."""
    d = gm.means_.shape[1]
    return {
        "full": lambda: gm.covariances_[k],
        "tied": lambda: gm.covariances_,
        "diag": lambda: np.diag(gm.covariances_[k]),
        "spherical": lambda: gm.covariances_[k] * np.eye(d),
    }[gm.covariance_type]()


def fit_both(X, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return GaussianMixture(**params).fit(X), EMGaussianMixture(**params).fit(X)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("init_params", INIT_PARAMS)
def test_parity_with_scikit_learn(covariance_type, init_params):
    X = blobs()
    ref, ours = fit_both(
        X,
        n_components=3,
        covariance_type=covariance_type,
        init_params=init_params,
        random_state=0,
        max_iter=30,
        tol=0,
    )
    for name in FITTED:
        assert_allclose(getattr(ours, name), getattr(ref, name), rtol=1e-7, atol=0)
    # The first bound of a single-point start (k-means++, random_from_data) is
    # ill-conditioned: its variances are reg_covar plus rounding of order
    # eps |x|^2 in either library, which moves it by ~3e-8 relative here.
    if hasattr(ref, "lower_bounds_"):  # scikit-learn >= 1.7
        assert_allclose(ours.lower_bounds_, ref.lower_bounds_, rtol=1e-7, atol=0)
    assert_allclose(ours.lower_bound_, ref.lower_bound_, rtol=1e-7, atol=0)
    assert ours.n_iter_ == ref.n_iter_ == 30
    assert_allclose(ours.score_samples(X), ref.score_samples(X), rtol=1e-10)
    assert_allclose(ours.predict_proba(X), ref.predict_proba(X), atol=1e-10)
    assert_allclose(ours.bic(X), ref.bic(X), rtol=1e-10)
    assert_allclose(ours.aic(X), ref.aic(X), rtol=1e-10)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_parity_with_user_initialisation_and_restarts(covariance_type):
    X = blobs(n_samples=300, n_features=3, random_state=1)
    start = GaussianMixture(3, covariance_type=covariance_type, max_iter=1).fit(X)
    ref, ours = fit_both(
        X,
        n_components=3,
        covariance_type=covariance_type,
        weights_init=start.weights_,
        means_init=start.means_,
        precisions_init=start.precisions_,
        n_init=2,
    )
    for name in FITTED:
        assert_allclose(getattr(ours, name), getattr(ref, name), rtol=1e-7)
    assert ours.n_iter_ == ref.n_iter_ and ours.converged_ == ref.converged_
    if hasattr(ref, "lower_bounds_"):  # scikit-learn >= 1.7
        assert_allclose(ours.lower_bounds_, ref.lower_bounds_, rtol=1e-7)
    assert_allclose(ours.lower_bound_, ref.lower_bound_, rtol=1e-7)
    # The user's arrays are validated into copies, never replaced.
    assert ours.get_params()["weights_init"] is start.weights_


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_default_fit_matches_scikit_learn(covariance_type):
    X = blobs(n_samples=500, n_features=5, centers=4, random_state=2)
    ref, ours = fit_both(
        X, n_components=4, covariance_type=covariance_type, n_init=3, random_state=3
    )
    # Restarts can reach the same optimum with the components in another
    # order, and which of two equal bounds wins is a rounding tie: compare the
    # fitted mixtures up to a permutation of their components.
    assert ours.converged_ and ref.converged_
    assert_allclose(ours.lower_bound_, ref.lower_bound_, rtol=1e-9)
    order, ref_order = np.lexsort(ours.means_.T), np.lexsort(ref.means_.T)
    assert_allclose(ours.means_[order], ref.means_[ref_order], rtol=1e-7)
    relabel = np.empty(4, dtype=int)
    relabel[order] = ref_order
    assert_array_equal(relabel[ours.predict(X)], ref.predict(X))


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_float32_is_computed_in_float32(covariance_type):
    X = blobs().astype(np.float32)
    gm = EMGaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X)
    for name in FITTED:
        assert getattr(gm, name).dtype == np.float32, name
    assert gm.score_samples(X).dtype == np.float32
    assert gm.transform(X).dtype == np.float32
    ref = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X)
    assert_allclose(gm.means_, ref.means_, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("d", [1, 2, 3, 4, 7, 10])
def test_full_second_order_features_are_every_pair_once(d):
    rng = np.random.RandomState(d)
    Y = rng.randn(d, 9)
    # A strided output, as any row-strided block of a feature matrix.
    buffer = np.full((d * (d + 1) // 2, 20), np.nan)
    out = buffer[:, ::2][:, :9]
    gk.Full.second(Y, out)
    rows, cols = gk.feature_pairs(d)
    assert_array_equal(out, Y[rows] * Y[cols])
    # Every unordered pair (i <= j) exactly once.
    assert len(rows) == d * (d + 1) // 2
    unordered = {(min(i, j), max(i, j)) for i, j in zip(rows, cols, strict=True)}
    assert unordered == set(zip(*np.triu_indices(d), strict=True))


@pytest.mark.parametrize("spread", [30.0, 3000.0])
def test_log_normalize_is_plain_softmax_bit_for_bit(spread):
    # Far components underflow exp to 0; skipping them must change nothing,
    # also for values about the threshold.
    rng = np.random.RandomState(0)
    log_prob = -rng.uniform(0, spread, size=(7, 400))
    log_prob[:, :40] = np.linspace(-760.0, -730.0, 40) * (spread > 100)
    log_prob[rng.randint(7, size=400), np.arange(400)] = 0.0
    shifted = log_prob - log_prob.max(axis=0)
    total = np.exp(shifted).sum(axis=0)
    resp, log_norm = gk.log_normalize(log_prob.copy())
    assert_array_equal(resp, np.exp(shifted) / total)
    assert_array_equal(log_norm, np.log(total) + log_prob.max(axis=0))


@pytest.mark.parametrize("spread", [5.0, 2000.0])
def test_log_sum_exp_is_scipys_logsumexp(spread):
    # Both branches of the exp (with far components and without), values
    # about the underflow threshold, and columns of -inf (rows too far from
    # every component), which give -inf without a warning.
    rng = np.random.RandomState(0)
    log_prob = -rng.uniform(0, spread, size=(7, 400)) - 50.0
    log_prob[:, :40] = np.linspace(-760.0, -730.0, 40) * (spread > 100)
    log_prob[:, 40:43] = -np.inf
    log_prob[0, 43] = -np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scores = gk.log_sum_exp(log_prob.copy())
    assert_array_equal(scores[40:43], -np.inf)
    assert_allclose(scores, logsumexp(log_prob, axis=0), rtol=1e-14)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_score_samples_is_brute_force_log_likelihood(covariance_type):
    X = blobs(n_samples=200)
    gm = EMGaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X)
    covariances = [full_covariance(gm, k) for k in range(3)]
    log_prob = np.column_stack(
        [
            np.log(w) + multivariate_normal(m, c).logpdf(X)
            for w, m, c in zip(gm.weights_, gm.means_, covariances, strict=True)
        ]
    )
    assert_allclose(gm.score_samples(X), logsumexp(log_prob, axis=1), rtol=1e-10)
    assert_allclose(gm.score(X), logsumexp(log_prob, axis=1).mean(), rtol=1e-10)
    resp = np.exp(log_prob - logsumexp(log_prob, axis=1, keepdims=True))
    assert_allclose(gm.transform(X), resp, atol=1e-12)
    # The bound recorded at the last E-step is the log-likelihood of the
    # parameters before the last M-step: the final score is at least as high.
    assert gm.score(X) >= gm.lower_bound_ - 1e-12


@settings(max_examples=40, deadline=None)
@given(
    covariance_type=st.sampled_from(COVARIANCE_TYPES),
    init_params=st.sampled_from(["kmeans", "random"]),
    n_features=st.integers(1, 4),
    n_components=st.integers(2, 4),
    log_distance=st.floats(-1, 5),
    log_offset=st.floats(0, 6),
    seed=st.integers(0, 2**16),
)
def test_lower_bound_never_decreases(
    covariance_type,
    init_params,
    n_features,
    n_components,
    log_distance,
    log_offset,
    seed,
):
    # Exact EM (reg_covar=0): the log-likelihood cannot decrease, also for
    # clusters far apart and far from the origin. (Single-point starts need
    # reg_covar > 0, so the starts here are kmeans and random.)
    rng = np.random.RandomState(seed)
    X = rng.randn(200, n_features) * rng.uniform(0.1, 10, n_features)
    X[:100] += 10.0**log_distance * rng.uniform(-1, 1, n_features)
    X += 10.0**log_offset
    gm = EMGaussianMixture(
        n_components=n_components,
        covariance_type=covariance_type,
        init_params=init_params,
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
    # Rounding: a covariance of condition number c formed in float64 has its
    # smallest variance off by ~eps c relatively, which moves the mean
    # log-likelihood by ~d eps c / 2 at a plateau (a component spanning both
    # far clusters reaches c ~ 1e9; scikit-learn's tied covariance, formed
    # from uncentred moments, is further off).
    if covariance_type in ("diag", "spherical"):
        variances = gm.covariances_.reshape(n_components, -1)
        conditioning = np.max(variances.max(axis=1) / variances.min(axis=1))
    else:
        covariances = gm.covariances_.reshape(-1, n_features, n_features)
        conditioning = np.max(np.linalg.cond(covariances))
    rounding = n_features * np.finfo(np.float64).eps * conditioning
    assert np.all(np.diff(bounds) >= -1e-12 * np.abs(bounds[1:]) - 1e-9 - rounding)


@settings(max_examples=20, deadline=None)
@given(
    covariance_type=st.sampled_from(COVARIANCE_TYPES),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 2**16),
)
def test_pickle_round_trip_keeps_every_score(covariance_type, dtype, seed):
    X = blobs(n_samples=150, random_state=seed % 100).astype(dtype)
    gm = EMGaussianMixture(3, covariance_type=covariance_type, random_state=seed)
    gm.fit(X)
    restored = pickle.loads(pickle.dumps(gm))
    X_new = np.random.RandomState(seed).randn(20, 4).astype(dtype) * 5
    assert_array_equal(restored.score_samples(X_new), gm.score_samples(X_new))
    assert_array_equal(restored.predict_proba(X_new), gm.predict_proba(X_new))


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_chunking_does_not_change_the_fit(covariance_type):
    X = blobs(n_samples=3000)
    params = dict(n_components=3, covariance_type=covariance_type, random_state=0)
    whole = EMGaussianMixture(**params).fit(X)
    with config_context(working_memory=0.01):  # about 10 kB: many chunks
        chunked = EMGaussianMixture(**params).fit(X)
    for name in FITTED:
        assert_allclose(getattr(chunked, name), getattr(whole, name), rtol=1e-10)


@pytest.mark.parametrize("covariance_type", ["full", "tied"])
def test_the_full_e_step_keeps_its_chunks_in_cache(covariance_type, monkeypatch):
    # The full model's E-step reads each chunk's features twice (the E-step's
    # product and the M-step's sums): its chunks keep to about CACHE_BYTES, so
    # that the second read comes from cache. Others take the longest chunks.
    import sklearn_latent._em as em
    import sklearn_latent._gaussian_mixture as gmm_module

    sizes = []

    def recorded(X, *args, **kwargs):
        if kwargs.get("model") is not None:  # the E-step, not the start
            sizes.append(len(X))
        return chunk_statistics(X, *args, **kwargs)

    chunk_statistics = gmm_module._chunk_statistics
    monkeypatch.setattr(gmm_module, "_chunk_statistics", recorded)
    monkeypatch.setattr(em, "_cores", lambda: 2)  # the budget grows beyond two
    X = np.random.RandomState(0).randn(5000, 50)
    gm = EMGaussianMixture(2, covariance_type=covariance_type, max_iter=1)
    gm.fit(X)
    row_bytes = gm._row_bytes(X)
    if covariance_type == "full":
        assert max(sizes) == em.CACHE_BYTES // row_bytes < em.MAX_CHUNK_ROWS
    else:
        assert max(sizes) == em.MAX_CHUNK_ROWS
    # working_memory still bounds them.
    sizes.clear()
    with config_context(working_memory=1):
        gm.fit(X)
    assert max(sizes) * row_bytes * 2 <= 2**20
    # On many cores the chunks' overheads, which hold the GIL, weigh more than
    # the cache: 16 cores give the full model the longest chunks again.
    sizes.clear()
    monkeypatch.setattr(em, "_cores", lambda: 16)
    gm.fit(X)
    assert max(sizes) == em.MAX_CHUNK_ROWS


def test_data_far_from_the_origin():
    # Statistics about the data mean keep the fit accurate under a translation.
    X = blobs()
    offset = 1e6
    params = dict(n_components=3, random_state=0, tol=0, max_iter=20)
    near = EMGaussianMixture(**params).fit(X)
    far = EMGaussianMixture(**params).fit(X + offset)
    assert_allclose(far.means_ - offset, near.means_, atol=1e-8)
    assert_allclose(far.covariances_, near.covariances_, rtol=1e-6)


@settings(max_examples=15, deadline=None)
@given(
    covariance_type=st.sampled_from(COVARIANCE_TYPES),
    seed=st.integers(0, 2**16),
    log_offset=st.floats(0, 6),
)
def test_integer_weights_equal_repeated_rows(covariance_type, seed, log_offset):
    rng = np.random.RandomState(seed)
    X = blobs(n_samples=120, random_state=seed % 50) + 10.0**log_offset
    weights = rng.randint(0, 4, size=len(X))
    weights[:3] = 1  # at least three distinct rows for three components
    start = start_at(X, covariance_type, n_components=3, seed=seed)
    weighted = fit_from(X, covariance_type, start, max_iter=15)
    weighted = EMGaussianMixture(**weighted.get_params()).fit(X, sample_weight=weights)
    repeated = EMGaussianMixture(**weighted.get_params()).fit(
        np.repeat(X, weights, axis=0)
    )
    for name in FITTED:
        assert_allclose(
            getattr(weighted, name), getattr(repeated, name), rtol=1e-8, atol=1e-10
        )
    assert_allclose(weighted.lower_bounds_, repeated.lower_bounds_, rtol=1e-10)


def test_zero_weight_ignores_a_row_in_every_initialisation():
    X = blobs(n_samples=100)
    outliers = np.full((5, 4), 1e3)
    X_out = np.vstack([X, outliers])
    weights = np.r_[np.ones(len(X)), np.zeros(5)]
    for init_params in INIT_PARAMS:
        gm = EMGaussianMixture(3, init_params=init_params, random_state=0)
        gm.fit(X_out, sample_weight=weights)
        assert np.all(np.abs(gm.means_) < 100), init_params


def test_kmeans_initialisation_uses_the_weights():
    from sklearn.cluster import KMeans

    X = blobs(n_samples=200)
    weights = np.random.RandomState(0).uniform(0, 3, len(X))
    gm = EMGaussianMixture(3, max_iter=0, random_state=0)
    gm.fit(X, sample_weight=weights)
    labels = (
        KMeans(3, n_init=1, random_state=np.random.RandomState(0))
        .fit(X, sample_weight=weights)
        .labels_
    )
    expected = [
        np.average(X[labels == k], axis=0, weights=weights[labels == k])
        for k in range(3)
    ]
    assert_allclose(gm.means_, expected, rtol=1e-10)


@pytest.mark.parametrize(
    "sample_weight, message",
    [
        (-np.ones(50), "Negative values"),
        (np.zeros(50), "at least one non-zero"),
        (np.ones(49), "shape"),
    ],
)
def test_bad_sample_weight(sample_weight, message):
    X = blobs(n_samples=50)
    with pytest.raises(ValueError, match=message):
        EMGaussianMixture(2).fit(X, sample_weight=sample_weight)


def test_too_few_weighted_rows():
    X = blobs(n_samples=50)
    weights = np.zeros(50)
    weights[:2] = 1
    with pytest.raises(ValueError, match="n_samples >= n_components"):
        EMGaussianMixture(3).fit(X, sample_weight=weights)


@pytest.mark.parametrize(
    "X, error, message",
    [
        # NaN are missing entries (tests/test_gaussian_mixture_missing.py);
        # a column with none observed is an error.
        (np.array([[1.0, np.nan], [2.0, np.nan], [0.0, np.nan]]), ValueError, "NaN"),
        (np.array([[1.0, np.inf], [2.0, 3.0], [0.0, 1.0]]), ValueError, "infinity"),
        (np.empty((0, 3)), ValueError, "0 sample"),
        (np.ones((1, 3)), ValueError, "minimum of 2"),
        (np.ones((3, 2)) + 1j, ValueError, "Complex data not supported"),
        (np.array([["a", "b"], ["c", "d"]], dtype=object), ValueError, "convert"),
        (scipy.sparse.csr_array(np.eye(3)), TypeError, "dense data is required"),
    ],
)
def test_bad_input(X, error, message):
    with pytest.raises(error, match=message):
        EMGaussianMixture().fit(X)


def test_more_components_than_samples():
    with pytest.raises(ValueError, match="n_samples >= n_components"):
        EMGaussianMixture(5).fit(np.random.RandomState(0).randn(4, 2))


def test_wrong_number_of_features_after_fit():
    gm = EMGaussianMixture(2, random_state=0).fit(blobs())
    with pytest.raises(ValueError, match="features"):
        gm.predict(np.ones((3, 5)))


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_ill_conditioned_covariance_says_what_to_do(covariance_type):
    X = np.repeat(np.random.RandomState(0).randn(4, 3), 10, axis=0)
    gm = EMGaussianMixture(
        4, covariance_type=covariance_type, reg_covar=0, random_state=0
    )
    with pytest.raises(ValueError, match="increase reg_covar"):
        gm.fit(X)


@pytest.mark.parametrize(
    "param, value, message",
    [
        ("weights_init", [0.5, 0.6], "normalized"),
        ("weights_init", [0.5, 0.5, 0.0], "shape"),
        ("means_init", np.zeros((3, 4)), "shape"),
        ("precisions_init", -np.ones((2, 4)), "positive"),
    ],
)
def test_bad_initial_parameters(param, value, message):
    params = {"covariance_type": "diag", param: value}
    with pytest.raises(ValueError, match=message):
        EMGaussianMixture(2, **params).fit(blobs())


def test_convergence_warning_and_warm_start():
    X = blobs()
    gm = EMGaussianMixture(
        3, init_params="random", max_iter=2, tol=0, warm_start=True, random_state=0
    )
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        gm.fit(X)
    first = list(gm.lower_bounds_)
    gm.set_params(max_iter=100, tol=1e-3).fit(X)
    assert gm.converged_
    # The second fit resumed: it starts above where the first one ended, and
    # far above a fresh random start.
    assert gm.lower_bounds_[0] > first[-1] > first[0]


def test_verbose_output(capsys):
    EMGaussianMixture(2, verbose=2, verbose_interval=1, random_state=0).fit(blobs())
    out = capsys.readouterr().out
    assert "Initialization 0" in out and "Iteration 1" in out and "converged" in out


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_sample_follows_the_model(covariance_type):
    gm = EMGaussianMixture(3, covariance_type=covariance_type, random_state=0)
    gm.fit(blobs())
    X, labels = gm.sample(20000)
    assert X.shape == (20000, 4) and labels.shape == (20000,)
    assert_allclose(np.bincount(labels) / 20000, gm.weights_, atol=0.02)
    for k in range(3):
        assert_allclose(X[labels == k].mean(axis=0), gm.means_[k], atol=0.1)
    assert_allclose(np.cov(X[labels == 0].T), full_covariance(gm, 0), atol=0.1)
    with pytest.raises(ValueError, match="at least one sample"):
        gm.sample(0)


def test_transform_and_feature_names():
    pd = pytest.importorskip("pandas")
    X = blobs()
    gm = EMGaussianMixture(3, random_state=0).fit(X)
    resp = gm.transform(X)
    assert resp.shape == (len(X), 3)
    assert_allclose(resp.sum(axis=1), 1)
    assert_array_equal(
        gm.get_feature_names_out(),
        ["emgaussianmixture0", "emgaussianmixture1", "emgaussianmixture2"],
    )
    frame = gm.set_output(transform="pandas").transform(pd.DataFrame(X))
    assert list(frame.columns) == list(gm.get_feature_names_out())


def test_pipeline_grid_search_and_pickle():
    X = blobs(n_samples=300, centers=3)
    pipe = make_pipeline(StandardScaler(), EMGaussianMixture(random_state=0))
    search = GridSearchCV(
        pipe, {"emgaussianmixture__n_components": [1, 2, 3, 4]}, cv=3, n_jobs=2
    ).fit(X)
    # Held-out log-likelihood picks more than one component on three blobs.
    assert search.best_params_["emgaussianmixture__n_components"] > 1
    restored = pickle.loads(pickle.dumps(search.best_estimator_))
    assert_array_equal(restored.predict(X), search.best_estimator_.predict(X))
    assert_allclose(restored.score_samples(X), search.best_estimator_.score_samples(X))


# ----------------------------------------------------------- accuracy (trust)
def two_clusters(L, dtype=np.float64, n=300, n_features=2, seed=0):
    """Two unit-variance clusters at -L and +L in every feature."""
    rng = np.random.RandomState(seed)
    X = np.r_[rng.randn(n, n_features) - L, rng.randn(n, n_features) + L]
    return X.astype(dtype)


def start_at(X, covariance_type, n_components=2, seed=0):
    """Initial parameters from a plain fit of X: the same start for two fits."""
    gm = EMGaussianMixture(
        n_components, covariance_type=covariance_type, max_iter=2, random_state=seed
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm.fit(X)
    return gm.weights_, gm.means_, gm.precisions_


def fit_from(X, covariance_type, start, a=1.0, b=0.0, max_iter=5):
    """Fit from ``start`` mapped by x -> a x + b (precisions scale by 1/a^2)."""
    weights, means, precisions = start
    gm = EMGaussianMixture(
        len(weights),
        covariance_type=covariance_type,
        weights_init=weights,
        means_init=a * means + b,
        precisions_init=precisions / a**2,
        max_iter=max_iter,
        tol=0,
        reg_covar=0,  # a fixed regularisation is not affine equivariant
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return gm.fit(X)


@settings(max_examples=25, deadline=None)
@given(
    covariance_type=st.sampled_from(COVARIANCE_TYPES),
    log_scale=st.floats(-3, 3),
    sign=st.sampled_from([-1.0, 1.0]),
    log_offset=st.floats(0, 7),
    log_distance=st.floats(0, 6),
)
def test_affine_equivariance_float64(
    covariance_type, log_scale, sign, log_offset, log_distance
):
    # Clusters up to 1e6 spreads apart, moved up to 1e7 spreads away: the
    # responsibilities do not change and log p shifts by exactly -d log|a|.
    X = two_clusters(10.0**log_distance, n=100)
    a, b = sign * 10.0**log_scale, 10.0**log_offset * np.array([1.0, -0.5])
    start = start_at(X, covariance_type)
    ref = fit_from(X, covariance_type, start)
    moved = fit_from(a * X + b, covariance_type, start, a, b)
    # The moved data themselves are rounded at eps * (|b| + |a x|) / |a|.
    rounding = np.finfo(np.float64).eps * np.max(np.abs(X) + np.abs(b / a))
    tol = 1e4 * rounding + 1e-9
    assert_allclose(moved.predict_proba(a * X + b), ref.predict_proba(X), atol=tol)
    d = X.shape[1]
    assert_allclose(
        moved.score_samples(a * X + b) + d * np.log(abs(a)),
        ref.score_samples(X),
        rtol=tol,
        atol=tol,
    )
    assert np.all(np.diff(moved.lower_bounds_) >= -tol)


@settings(max_examples=25, deadline=None)
@given(
    covariance_type=st.sampled_from(COVARIANCE_TYPES),
    log_offset=st.floats(0, 4),
    log_distance=st.floats(0, 4),
)
def test_float32_is_as_accurate_as_float64_on_the_same_values(
    covariance_type, log_offset, log_distance
):
    # Offsets and distances up to 1e4 spreads: float32 data are fitted as
    # accurately as the same values in float64, up to float32 output rounding.
    X32 = (two_clusters(10.0**log_distance, n=100) + 10.0**log_offset).astype(
        np.float32
    )
    X64 = X32.astype(np.float64)
    start = start_at(X64, covariance_type)
    ours32 = fit_from(X32, covariance_type, start)
    ours64 = fit_from(X64, covariance_type, start)
    assert ours32.means_.dtype == np.float32
    # The float32 model stores its means rounded to eps32 * scale, which moves
    # a log-density by up to about |x - mu| / sigma^2 times that: 10 eps32
    # * scale here. Anything coarser would be arithmetic done in float32.
    scale = np.max(np.abs(X64))
    tol = 10 * np.finfo(np.float32).eps * scale
    assert_allclose(ours32.means_, ours64.means_, rtol=0, atol=tol)
    assert_allclose(ours32.predict_proba(X32), ours64.predict_proba(X64), atol=tol)
    assert_allclose(ours32.score_samples(X32), ours64.score_samples(X64), atol=tol)


@pytest.mark.parametrize(
    "L, dtype", [(1e3, np.float32), (3e3, np.float32), (1e4, np.float32), (1e8, None)]
)
def test_far_apart_clusters_match_their_own_variance(L, dtype):
    # Two unit-variance clusters at -L and +L: the fitted variances are the
    # clusters' own, in float32 as in float64 (reproducers of the trust issue).
    X = two_clusters(L, dtype or np.float64)
    truth = np.r_[X[:300].astype(np.float64).var(0), X[300:].astype(np.float64).var(0)]
    means = [[-L, -L], [L, L]]
    ours = EMGaussianMixture(2, means_init=means).fit(X)
    ref = GaussianMixture(2, means_init=means).fit(X)
    variances = np.diagonal(ours.covariances_, axis1=1, axis2=2).ravel()
    assert_allclose(variances, truth, rtol=1e-4)
    assert np.all(np.diff(ours.lower_bounds_) >= 0)
    # Unit-spread rows at |x| ~ L are rounded at eps * L, and so is any
    # log-likelihood computed from them, in either library.
    assert ours.score(X) >= ref.score(X) - 10 * np.finfo(X.dtype).eps * L


def test_float64_model_scores_float32_input_as_the_same_values():
    X = two_clusters(1e4)
    gm = EMGaussianMixture(2, means_init=[[-1e4, -1e4], [1e4, 1e4]]).fit(X)
    X32 = X.astype(np.float32)
    assert_allclose(
        gm.score_samples(X32), gm.score_samples(X32.astype(np.float64)), atol=1e-6
    )


def test_tied_covariance_of_data_far_from_the_origin():
    rng = np.random.RandomState(0)
    X = rng.randn(1000, 2) @ np.array([[1.0, 0.3], [0.0, 1.0]])
    X[:500] += 5
    near = EMGaussianMixture(2, covariance_type="tied", random_state=0).fit(X)
    far = EMGaussianMixture(2, covariance_type="tied", random_state=0).fit(X + 1e7)
    assert_allclose(far.covariances_, near.covariances_, rtol=1e-6)


@pytest.mark.parametrize("scale", [1e-20, 1e-5, 1e5, 1e306])
def test_weights_are_relative(scale):
    X = blobs(n_samples=300)
    unit = EMGaussianMixture(3, random_state=0).fit(X)
    scaled = EMGaussianMixture(3, random_state=0).fit(
        X, sample_weight=np.full(len(X), scale)
    )
    for name in FITTED:
        assert_allclose(getattr(scaled, name), getattr(unit, name), rtol=1e-9)
    assert_allclose(scaled.lower_bounds_, unit.lower_bounds_, rtol=1e-12)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_nearest_reference_path_equals_the_fast_path(covariance_type, monkeypatch):
    # On ordinary data both paths are accurate: they must agree to rounding.
    X = blobs(n_samples=300, n_features=3)
    params = dict(covariance_type=covariance_type, random_state=0, tol=0, max_iter=10)
    fast = EMGaussianMixture(3, **params).fit(X)
    monkeypatch.setattr(gk, "FAST_PATH_ERROR", 0.0)
    careful = EMGaussianMixture(3, **params).fit(X)
    for name in FITTED:
        assert_allclose(getattr(careful, name), getattr(fast, name), rtol=1e-10)
    assert_allclose(careful.lower_bounds_, fast.lower_bounds_, rtol=1e-12)
    assert_allclose(careful.score_samples(X), fast.score_samples(X), rtol=1e-12)


# ------------------------------------------------------- never a broken model
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_a_far_point_scores_minus_infinity(covariance_type):
    gm = EMGaussianMixture(2, covariance_type=covariance_type, random_state=0)
    gm.fit(blobs())
    far = np.full((2, 4), 1e155)
    far[1] *= -1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scores = gm.score_samples(np.r_[far, blobs()[:3]])
        resp = gm.predict_proba(far)
    assert np.all(scores[:2] == -np.inf) and np.all(np.isfinite(scores[2:]))
    if covariance_type == "tied":  # the posterior needs no quadratic form
        assert_allclose(resp, _tied_posterior(gm, far), atol=1e-12)
    else:  # no finite density and no finite difference: NaN, as sklearn
        assert np.all(np.isnan(resp))


def _tied_posterior(gm, X):
    """p(z | x) of a tied mixture from its closed form: the softmax over k of
    x^T P mu_k - 1/2 mu_k^T P mu_k + log w_k (the shared -1/2 x^T P x cancels)."""
    P = gm.precisions_
    logits = X @ (P @ gm.means_.T)
    logits += np.log(gm.weights_)
    logits -= 0.5 * np.einsum("kd,de,ke->k", gm.means_, P, gm.means_)
    return np.exp(logits - logsumexp(logits, axis=1, keepdims=True))


@pytest.mark.parametrize("scale", [1e4, 1e8, 1e12])
def test_tied_posterior_far_along_the_shared_level_sets(scale):
    # Rows far from the data along a direction u on which the components'
    # log-densities differ by nothing, (mu_1 - mu_2)^T P u = 0: the shared
    # -1/2 y^T P y grows as scale^2, and the posterior stays that of the row
    # it was moved from. Subtracting that term before normalising lost it
    # (rounding of eps scale^2 nats against differences of a few).
    X = blobs(n_features=2, centers=2)
    gm = EMGaussianMixture(2, covariance_type="tied", random_state=0).fit(X)
    gap = gm.precisions_ @ (gm.means_[0] - gm.means_[1])
    u = np.array([-gap[1], gap[0]]) / np.linalg.norm(gap)
    base = gm.means_.mean(axis=0) + np.array([[0.0, 0.0], [0.3, -0.2]])
    moved = base + scale * u
    expected = _tied_posterior(gm, base)
    assert np.all(expected > 1e-3)  # both components take part
    assert_allclose(gm.predict_proba(moved), expected, rtol=1e-9 * scale / 1e4)
    assert_array_equal(gm.predict(moved), np.argmax(expected, axis=1))


def test_overflowing_data_is_a_clear_error():
    with pytest.raises(ValueError, match="StandardScaler"):
        EMGaussianMixture(2).fit(blobs() * 1e200)


def test_singular_precisions_init_is_a_value_error():
    X = blobs(n_features=2)
    singular = np.array([[[1.0, 1.0], [1.0, 1.0]]] * 2)
    with pytest.raises(ValueError, match="positive-definite"):
        EMGaussianMixture(2, precisions_init=singular).fit(X)


def test_initial_arrays_take_the_dtype_of_the_data():
    X = blobs().astype(np.float32)
    start = start_at(X.astype(np.float64), "full")
    gm = fit_from(X, "full", start, max_iter=0)
    for name in FITTED:
        assert getattr(gm, name).dtype == np.float32, name


def test_random_from_data_draws_rows_in_proportion_to_their_weights():
    X = np.arange(6, dtype=float).reshape(3, 2)
    weight = np.array([1.0, 2.0, 7.0])
    draws = np.array(
        [
            EMGaussianMixture(
                1, init_params="random_from_data", max_iter=0, random_state=seed
            )
            .fit(X, sample_weight=weight)
            .means_[0, 0]
            / 2
            for seed in range(300)
        ]
    )
    counts = np.bincount(np.rint(draws).astype(int), minlength=3)
    expected = 300 * weight / weight.sum()
    # Six binomial standard deviations: fails only if the draws ignore weights.
    assert np.all(np.abs(counts - expected) < 6 * np.sqrt(expected))


@pytest.mark.parametrize("method", ["predict", "predict_proba", "score_samples"])
def test_prediction_memory_follows_working_memory(method):
    rng = np.random.RandomState(0)
    X = rng.randn(4_000, 120)
    gm = EMGaussianMixture(3, covariance_type="full", max_iter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm.fit(X[:500])
    output = X.shape[0] * 3 * 8
    with config_context(working_memory=16):
        tracemalloc.start()
        getattr(gm, method)(X)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    # 16 MiB of chunk temporaries, the output, and room for small arrays.
    assert peak < 16 * 2**20 + output + 4 * 2**20, peak / 2**20


# ----------------------------------------------------------- additive statistics
@pytest.mark.parametrize("careful", [False, True], ids=["fast", "nearest"])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_statistics_of_blocks_add_up_to_those_of_the_whole(
    covariance_type, careful, monkeypatch
):
    if careful:
        monkeypatch.setattr(gk, "FAST_PATH_ERROR", 0.0)
    rng = np.random.RandomState(0)
    X = blobs(n_samples=300) + 1e4
    weight = rng.uniform(0, 3, len(X))
    gm = EMGaussianMixture(3, covariance_type=covariance_type, random_state=0)
    gm.fit(X, sample_weight=weight)
    whole = gm._expected_statistics(X, weight)
    blocks = [slice(0, 17), slice(17, 200), slice(200, 300)]
    parts = [gm._expected_statistics(X[b], weight[b]) for b in blocks]
    added = parts[0] + parts[1] + parts[2]
    # To 1e-12 relative to each statistic's size (entries much smaller than
    # the largest carry the largest's rounding).
    for name in ("weight", "means", "scatter", "log_likelihood", "total_weight"):
        expected = getattr(whole, name)
        size = np.max(np.abs(expected))
        assert_allclose(getattr(added, name), expected, rtol=0, atol=1e-12 * size)
    # Scaling is what a running average needs: 2 s = s + s.
    doubled = whole + whole
    for name in ("weight", "means", "scatter", "log_likelihood"):
        assert_allclose(getattr(2 * whole, name), getattr(doubled, name), rtol=1e-14)
    # The M-step of the added statistics is the M-step of the whole.
    covariances = gm._parameters_from_statistics(whole)[2]
    assert_allclose(
        gm._parameters_from_statistics(added)[2],
        covariances,
        rtol=0,
        atol=1e-12 * np.max(np.abs(covariances)),
    )


# ------------------------------------------------------------------ online EM
def known_mixture(n_samples, seed):
    rng = np.random.RandomState(seed)
    means = np.array([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]])
    labels = rng.choice(3, size=n_samples, p=[0.5, 0.3, 0.2])
    return means[labels] + rng.randn(n_samples, 2), means


def test_partial_fit_on_a_stream_recovers_the_means():
    gm = EMGaussianMixture(3, random_state=0)
    for batch in range(50):
        X, means = known_mixture(500, seed=batch)
        gm.partial_fit(X)
    order = np.argsort(gm.means_[:, 0] + 2 * gm.means_[:, 1])
    assert_allclose(gm.means_[order], means, atol=0.05)
    assert_allclose(np.sort(gm.weights_), [0.2, 0.3, 0.5], atol=0.02)
    assert gm.n_batch_iter_ == 50 and len(gm.lower_bounds_) == 50
    X, _ = known_mixture(2000, seed=99)
    batch = EMGaussianMixture(3, random_state=0).fit(X)
    assert gm.score(X) > batch.score(X) - 0.01


def test_online_fit_comes_close_to_batch_em_in_a_few_passes():
    X, _ = known_mixture(20_000, seed=1)
    batch = EMGaussianMixture(3, random_state=0, tol=1e-9).fit(X)
    online = EMGaussianMixture(
        3, random_state=0, learning_method="online", batch_size=500, tol=1e-3
    ).fit(X)
    assert online.converged_ and online.n_iter_ <= 5
    assert online.n_batch_iter_ == online.n_iter_ * 40
    assert batch.score(X) - 0.01 < online.score(X) <= batch.score(X) + 1e-7


def test_partial_fit_with_weights_equals_repeated_rows():
    X, _ = known_mixture(300, seed=0)
    weights = np.random.RandomState(0).randint(1, 4, len(X))
    params = dict(n_components=3, random_state=0, init_params="random_from_data")
    start = EMGaussianMixture(**params, max_iter=1).fit(X)
    init = dict(
        weights_init=start.weights_,
        means_init=start.means_,
        precisions_init=start.precisions_,
    )
    weighted = EMGaussianMixture(**params, **init)
    repeated = EMGaussianMixture(**params, **init)
    for half in (slice(0, 150), slice(150, 300)):
        weighted.partial_fit(X[half], sample_weight=weights[half])
        repeated.partial_fit(np.repeat(X[half], weights[half], axis=0))
    for name in FITTED:
        assert_allclose(getattr(weighted, name), getattr(repeated, name), rtol=1e-9)


def test_partial_fit_errors_are_clear_and_leave_the_model():
    X, _ = known_mixture(300, seed=0)
    gm = EMGaussianMixture(3, random_state=0).partial_fit(X)
    means = gm.means_.copy()
    with pytest.raises(ValueError, match="every batch must have the features"):
        gm.partial_fit(np.c_[X, X])
    gm.set_params(n_components=4)
    with pytest.raises(ValueError, match="n_components"):
        gm.partial_fit(X)
    gm.set_params(n_components=3)
    bad = X.copy()
    bad[0] = np.nan  # a NaN is a missing entry; a row of them is an error
    with pytest.raises(ValueError, match="entirely NaN"):
        gm.partial_fit(bad)
    assert_array_equal(gm.means_, means)
    assert gm.n_batch_iter_ == 1
    # A batch fit afterwards starts afresh; partial_fit then blends a batch
    # into its statistics, with the first step size, rather than replace them.
    gm.fit(X)
    fitted = gm.means_.copy()
    assert gm.n_batch_iter_ == 0
    gm.partial_fit(X[:100])
    alone = EMGaussianMixture(3, means_init=fitted, max_iter=1).fit(X[:100]).means_
    rho = gm.learning_offset**-gm.learning_decay
    assert gm.n_batch_iter_ == 1
    assert np.abs(gm.means_ - fitted).max() < 2 * rho * np.abs(alone - fitted).max()


def test_partial_fit_keeps_float32():
    X, _ = known_mixture(300, seed=0)
    gm = EMGaussianMixture(3, random_state=0).partial_fit(X.astype(np.float32))
    gm.partial_fit(X[:100].astype(np.float32))
    for name in FITTED:
        assert getattr(gm, name).dtype == np.float32, name


def test_passes_over_rows_run_on_several_threads_with_identical_results():
    import threading

    from sklearn import config_context
    from threadpoolctl import threadpool_limits

    from sklearn_latent._utils import map_in_order, n_threads

    both = threading.Barrier(2, timeout=30)  # breaks unless two threads meet
    assert list(map_in_order(lambda i: both.wait() * 0 + i, [0, 1], 2)) == [0, 1]
    X, _ = known_mixture(3000, seed=0)
    # From one start (k-means itself runs on threads of its own).
    start = EMGaussianMixture(3, random_state=0, max_iter=0).fit(X)
    fits = {}
    # Small working memory: many chunks, which the threads share.
    with config_context(working_memory=0.05):
        for threads in (1, 2):
            with threadpool_limits(threads):
                assert n_threads() == threads
                gm = EMGaussianMixture(
                    3,
                    weights_init=start.weights_,
                    means_init=start.means_,
                    precisions_init=start.precisions_,
                    tol=1e-8,
                ).fit(X)
                fits[threads] = (gm.means_, gm.covariances_, gm.score_samples(X))
    for one, two in zip(fits[1], fits[2], strict=True):
        assert_array_equal(one, two)


def test_joblib_parallel_config_bounds_the_threads():
    from joblib import parallel_config
    from threadpoolctl import threadpool_limits

    from sklearn_latent._utils import n_threads

    with threadpool_limits(2):
        with parallel_config(n_jobs=1):
            assert n_threads() == 1
        with parallel_config(n_jobs=4):
            assert n_threads() == 2


def test_partial_fit_over_chunks_of_a_memory_mapped_file(tmp_path):
    X, means = known_mixture(6000, seed=3)
    np.save(tmp_path / "X.npy", X)
    mapped = np.load(tmp_path / "X.npy", mmap_mode="r")
    gm = EMGaussianMixture(3, random_state=0)
    for start in range(0, len(mapped), 500):
        gm.partial_fit(mapped[start : start + 500])
    order = np.argsort(gm.means_[:, 0] + 2 * gm.means_[:, 1])
    assert gm.n_batch_iter_ == 12
    assert_allclose(gm.means_[order], means, atol=0.15)


@settings(max_examples=40, deadline=None)
@given(
    n_rows=st.integers(0, 70),
    n_columns=st.integers(1, 5),
    dtype=st.sampled_from([np.float64, np.float32]),
    fortran=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_column_reductions_folded_match_numpy(n_rows, n_columns, dtype, fortran, seed):
    # The data summary reduces 16 rows side by side: minima and maxima are
    # numpy's exactly, sums equal up to rounding, for any row count
    # (remainders, fewer rows than the fold) and either memory order.
    from sklearn_latent._utils import column_reduce

    X = np.random.default_rng(seed).normal(size=(n_rows, n_columns)).astype(dtype)
    X = np.asfortranarray(X) if fortran else X
    for ufunc, initial in ((np.minimum, np.inf), (np.maximum, -np.inf)):
        assert_array_equal(
            column_reduce(ufunc, X, initial=initial),
            ufunc.reduce(X, axis=0, initial=initial),
        )
    total = column_reduce(np.add, X, dtype=np.float64)
    assert total.dtype == np.float64
    assert_allclose(total, X.sum(axis=0, dtype=np.float64), rtol=1e-12, atol=1e-12)
