"""dask arrays on a distributed LocalCluster: fits equal numpy's, outputs are lazy."""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from sklearn_latent import EMFactorAnalysis, EMGaussianMixture

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]


@pytest.fixture(scope="module")
def client():
    """Two worker processes: the estimator and the statistics really travel."""
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def three_clusters(n_samples=3000, seed=0):
    rng = np.random.RandomState(seed)
    centres = np.array([[0.0, 0.0, 0.0], [5.0, 5.0, 5.0], [-5.0, 5.0, 0.0]])
    X = centres[rng.choice(3, n_samples)] + rng.randn(n_samples, 3)
    return X, rng.uniform(0.2, 3.0, n_samples)


def started(covariance_type, X, **params):
    """Parameters fixed to one initialisation, so both fits start alike."""
    start = EMGaussianMixture(
        3, covariance_type=covariance_type, max_iter=0, random_state=0
    ).fit(X)
    return EMGaussianMixture(
        3,
        covariance_type=covariance_type,
        weights_init=start.weights_,
        means_init=start.means_,
        precisions_init=start.precisions_,
        **params,
    )


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("weights", ["none", "numpy", "dask"])
def test_gaussian_mixture_on_dask_equals_numpy(client, covariance_type, weights):
    X, w = three_clusters()
    X_dask = da.from_array(X, chunks=(700, 3))
    weight = {"none": None, "numpy": w, "dask": da.from_array(w, chunks=500)}
    expected = started(covariance_type, X, tol=1e-8).fit(
        X, sample_weight=None if weights == "none" else w
    )
    got = started(covariance_type, X, tol=1e-8).fit(
        X_dask, sample_weight=weight[weights]
    )
    assert got.n_iter_ == expected.n_iter_
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        assert_allclose(getattr(got, name), getattr(expected, name), rtol=1e-8)
    assert_allclose(got.lower_bounds_, expected.lower_bounds_, rtol=1e-10)


def test_outputs_of_dask_input_are_lazy_and_chunked_like_it(client):
    X, _ = three_clusters()
    gm = EMGaussianMixture(3, random_state=0).fit(X)
    X_dask = da.from_array(X, chunks=(700, 3))
    outputs = {
        "score_samples": (gm.score_samples, ()),
        "predict": (gm.predict, ()),
        "predict_proba": (gm.predict_proba, (3,)),
        "transform": (gm.transform, (3,)),
    }
    for name, (method, columns) in outputs.items():
        lazy = method(X_dask)
        assert isinstance(lazy, da.Array), name
        assert lazy.chunks == (X_dask.chunks[0], *((c,) for c in columns)), name
        assert_allclose(lazy.compute(), method(X), rtol=1e-12, err_msg=name)
    assert_allclose(gm.score(X_dask), gm.score(X), rtol=1e-12)
    assert_allclose(gm.bic(X_dask), gm.bic(X), rtol=1e-12)


def test_a_fit_started_from_a_sample_of_rows_finds_the_clusters(client):
    X, _ = three_clusters(30_000)
    gm = EMGaussianMixture(3, random_state=0).fit(da.from_array(X, chunks=5000))
    reference = EMGaussianMixture(3, random_state=0).fit(X)
    assert_allclose(gm.score(X), reference.score(X), rtol=1e-6)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_online_fit_of_dask_blocks_equals_numpy(client):
    # Blocks of whole mini-batches: the same batches in the same order.
    X, _ = three_clusters()
    params = dict(learning_method="online", batch_size=250, max_iter=3, tol=0)
    expected = started("full", X, **params).fit(X)
    got = started("full", X, **params).fit(da.from_array(X, chunks=750))
    assert got.n_batch_iter_ == expected.n_batch_iter_ == 36
    assert_allclose(got.means_, expected.means_, rtol=1e-10)
    assert_allclose(got.lower_bounds_, expected.lower_bounds_, rtol=1e-10)


def test_bad_dask_input_is_refused_clearly(client):
    X, _ = three_clusters(300)
    gm = EMGaussianMixture(3, random_state=0).fit(X)
    with pytest.raises(ValueError, match="X has 2 features"):
        gm.score_samples(da.from_array(X[:, :2], chunks=100))
    bad = X.copy()
    bad[250, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        EMGaussianMixture(3).fit(da.from_array(bad, chunks=100))
    with pytest.raises(ValueError, match="NaN"):
        gm.score_samples(da.from_array(bad, chunks=100)).compute()
    with pytest.raises(ValueError, match="Negative"):
        EMGaussianMixture(3).fit(
            da.from_array(X, chunks=100), sample_weight=da.full(300, -1.0, chunks=50)
        )
    unknown = da.from_array(X, chunks=100)
    unknown = unknown[unknown[:, 0] > -100]
    with pytest.raises(ValueError, match="compute_chunk_sizes"):
        EMGaussianMixture(3).fit(unknown)
    with pytest.raises(ValueError, match="as large as"):
        EMGaussianMixture(3).fit(da.from_array(X * 1e300, chunks=100))
    assert_array_equal(gm.predict(X), gm.predict(da.from_array(X, chunks=100)))
    with pytest.raises(TypeError, match="one batch in memory"):
        gm.partial_fit(da.from_array(X, chunks=100))


def test_partial_fit_over_dask_blocks_with_incremental():
    wrappers = pytest.importorskip("dask_ml.wrappers")
    X, _ = three_clusters(6000)
    X_dask = da.from_array(X, chunks=500)
    model = wrappers.Incremental(EMGaussianMixture(3, random_state=0)).fit(X_dask)
    assert model.estimator_.n_batch_iter_ == X_dask.numblocks[0]
    means = model.estimator_.means_
    order = np.argsort(means[:, 0] - 2 * means[:, 1])
    assert_allclose(
        means[order],
        [[-5.0, 5.0, 0.0], [5.0, 5.0, 5.0], [0.0, 0.0, 0.0]],
        atol=0.15,
    )


def test_vae_scores_and_encodes_dask_arrays_lazily():
    # In this process (the synchronous scheduler): worker processes would
    # each spend seconds importing torch, and the estimator pickles anyway.
    pytest.importorskip("torch")
    import dask

    from sklearn_latent import VAEEstimator

    X, _ = three_clusters(600)
    vae = VAEEstimator(hidden_layer_sizes=(8,), max_iter=3, random_state=0)
    with pytest.warns(Warning):  # not converged in 3 epochs
        vae.fit(X)
    X_dask = da.from_array(X, chunks=250)
    with dask.config.set(scheduler="sync"):
        check_lazy_rows(vae, X, X_dask)


def check_lazy_rows(vae, X, X_dask):
    for method, expected in [
        (vae.transform, vae.transform(X)),
        (vae.score_samples, vae.score_samples(X)),
        (lambda Z: vae.log_likelihood(Z, n_draws=20), vae.log_likelihood(X, 20)),
    ]:
        lazy = method(X_dask)
        assert isinstance(lazy, da.Array) and lazy.chunks[0] == X_dask.chunks[0]
        assert_allclose(lazy.compute(), expected, rtol=1e-12)
    assert_allclose(vae.score(X_dask), vae.score(X), rtol=1e-12)


def test_vae_partial_fit_over_dask_blocks_with_incremental():
    pytest.importorskip("torch")
    wrappers = pytest.importorskip("dask_ml.wrappers")
    from sklearn_latent import VAEEstimator

    X, _ = three_clusters(1000)
    X_dask = da.from_array(X, chunks=250)
    model = wrappers.Incremental(
        VAEEstimator(hidden_layer_sizes=(8,), random_state=0)
    ).fit(X_dask)
    assert model.estimator_.n_iter_ == 4
    assert np.isfinite(model.estimator_.score(X_dask))


def test_vae_fit_streams_the_blocks_of_a_dask_array():
    pytest.importorskip("torch")
    import dask

    from sklearn_latent import VAEEstimator

    X, _ = three_clusters(2000)
    computed = []

    def block(i):
        computed.append(i)
        return X[500 * i : 500 * (i + 1)]

    X_dask = da.concatenate(
        [
            da.from_delayed(dask.delayed(block)(i), (500, 3), dtype=X.dtype)
            for i in range(4)
        ]
    )
    params = dict(hidden_layer_sizes=(16,), max_iter=30, random_state=0)
    with dask.config.set(scheduler="sync"), pytest.warns(Warning):
        vae = VAEEstimator(**params).fit(X_dask)
    # One pass for the moments, then each epoch computes each block once.
    assert len(computed) == 4 * (1 + 30) and vae.n_iter_ == 30
    with pytest.warns(Warning):
        in_memory = VAEEstimator(**params).fit(X)
    assert abs(vae.score(X) - in_memory.score(X)) < 0.5
    with pytest.raises(ValueError, match="early_stopping"):
        VAEEstimator(early_stopping=True).fit(X_dask)
    with pytest.raises(TypeError, match="one batch in memory"):
        vae.partial_fit(X_dask)


# ------------------------------------------------------------ factor analysis
def factor_data(n_samples=3000, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n_samples, 3)) @ rng.normal(size=(3, 8))
    X += rng.normal(size=(n_samples, 8)) * rng.uniform(0.3, 1.5, size=8) + 100.0
    return X, rng.uniform(0.2, 3.0, n_samples)


@pytest.mark.parametrize("noise", ["diagonal", "isotropic"])
@pytest.mark.parametrize("weights", ["none", "numpy", "dask"])
def test_factor_analysis_on_dask_equals_numpy(client, noise, weights):
    X, w = factor_data()
    X_dask = da.from_array(X, chunks=(700, 8))
    weight = {"none": None, "numpy": w, "dask": da.from_array(w, chunks=500)}
    numpy_weight = None if weights == "none" else w
    expected = EMFactorAnalysis(3, noise=noise, tol=1e-8).fit(
        X, sample_weight=numpy_weight
    )
    got = EMFactorAnalysis(3, noise=noise, tol=1e-8).fit(
        X_dask, sample_weight=weight[weights]
    )
    assert got.n_iter_ == expected.n_iter_
    for name in ("mean_", "components_", "noise_variance_"):
        assert_allclose(getattr(got, name), getattr(expected, name), rtol=1e-8)
    assert_allclose(got.lower_bounds_, expected.lower_bounds_, rtol=1e-10)
    # Lazy outputs, chunked like X's rows, equal to numpy's.
    Z, scores = got.transform(X_dask), got.score_samples(X_dask)
    assert Z.chunks == (X_dask.chunks[0], (3,))
    assert scores.chunks == (X_dask.chunks[0],)
    assert_allclose(Z.compute(), expected.transform(X), rtol=1e-7, atol=1e-9)
    assert_allclose(scores.compute(), expected.score_samples(X), rtol=1e-9)
    assert_allclose(got.score(X_dask), expected.score(X), rtol=1e-9)


def test_factor_analysis_refuses_bad_dask_input_clearly(client):
    X, _ = factor_data(300)
    bad = X.copy()
    bad[250, 1] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        EMFactorAnalysis(2).fit(da.from_array(bad, chunks=100))
    with pytest.raises(ValueError, match="Negative"):
        EMFactorAnalysis(2).fit(
            da.from_array(X, chunks=100), sample_weight=da.full(300, -1.0, chunks=50)
        )
    with pytest.raises(ValueError, match="non-zero"):
        EMFactorAnalysis(2).fit(
            da.from_array(X, chunks=100), sample_weight=da.zeros(300, chunks=50)
        )
    with pytest.raises(TypeError, match="one batch in memory"):
        EMFactorAnalysis(2).partial_fit(da.from_array(X, chunks=100))


def test_factor_analysis_partial_fit_with_incremental():
    wrappers = pytest.importorskip("dask_ml.wrappers")
    X, _ = factor_data(4000)
    model = wrappers.Incremental(EMFactorAnalysis(3, tol=1e-10))
    model.fit(da.from_array(X, chunks=500))
    assert model.estimator_.n_batch_iter_ == 8
    whole = EMFactorAnalysis(3, tol=1e-10).fit(X)
    assert abs(model.estimator_.lower_bound_ - whole.lower_bound_) < 1e-6
    assert_allclose(
        model.estimator_.get_covariance(), whole.get_covariance(), rtol=1e-4
    )


def test_a_sample_of_rows_costs_the_client_memory_of_the_sample_only():
    import tracemalloc

    from sklearn_latent._dask import sample_rows

    # 100,000,000 rows: permuting their indices alone would take 800 MB.
    X = da.zeros((100_000_000, 1), chunks=(20_000_000, 1))
    tracemalloc.start()
    try:
        rows, weight = sample_rows(X, None, 1000, np.random.RandomState(0))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert rows.shape == (1000, 1) and weight is None
    assert peak < 100 * 2**20, peak  # 15 MB measured; 763 MB before
