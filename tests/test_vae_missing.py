"""VAEEstimator with missing values (MIWAE): fit, scores and imputation with NaN,
checked against the exact Gaussian answers of a linear VAE, and complete data
computed exactly as before."""

import copy
import pickle
import warnings

import numpy as np
import pytest
from scipy.stats import multivariate_normal
from sklearn.exceptions import ConvergenceWarning

torch = pytest.importorskip("torch")

from torch.distributions import Independent, Normal  # noqa: E402

from sklearn_latent import VAEEstimator  # noqa: E402
from sklearn_latent.vae import _estimator, _training  # noqa: E402
from sklearn_latent.vae._estimator import (  # noqa: E402
    ELBO_DRAWS,
    RELATIVE_NOISE_FLOOR,
)

SMALL = dict(
    hidden_layer_sizes=(16,),
    batch_size=32,
    learning_rate_init=0.01,
    max_iter=20,
    random_state=0,
)


def fit_quietly(estimator, X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator.fit(X)


def mcar(X, rate, seed):
    """X with a share ``rate`` of its entries NaN, every row keeping one."""
    rng = np.random.RandomState(seed)
    missing = rng.uniform(size=X.shape) < rate
    missing[missing.all(axis=1), 0] = False
    return np.where(missing, np.nan, X)


@pytest.fixture(scope="module")
def X():
    rng = np.random.RandomState(0)
    return rng.normal(size=(120, 5)) @ rng.normal(size=(5, 5)) + rng.normal(size=5)


@pytest.fixture(scope="module")
def X_nan(X):
    return mcar(X, 0.2, seed=1)


@pytest.fixture(scope="module")
def fitted(X):
    return fit_quietly(VAEEstimator(**SMALL), X)


@pytest.fixture(scope="module")
def fitted_nan(X_nan):
    return fit_quietly(VAEEstimator(**SMALL), X_nan)


# --- Complete data: the computation of before, bit for bit -----------------


def old_elbo(module, x, eps):
    """The complete-data ELBO as written before missing values: encoder on x."""
    mean, log_var = module.encoder(x).chunk(2, dim=-1)
    z = mean + torch.exp(0.5 * log_var) * eps
    scale = torch.exp(0.5 * module.log_var)
    reconstruction = Independent(Normal(module.decoder(z), scale), 1).log_prob(x)
    if eps.dim() == 3:
        reconstruction = reconstruction.mean(0)
    kl = 0.5 * (torch.exp(log_var) + mean**2 - 1 - log_var).sum(-1)
    return reconstruction, kl


def old_epoch(module, optimizer, X, batch_size, generator):
    """One training epoch as written before missing values."""
    for batch in torch.randperm(len(X), generator=generator).split(batch_size):
        x = X[batch]
        eps = torch.randn((len(batch), module.n_components), generator=generator)
        reconstruction, kl = old_elbo(module, x, eps)
        loss = (kl - reconstruction).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        module.project()


def test_complete_data_trains_as_before(fitted, X):

    ours = copy.deepcopy((fitted.module_, fitted.optimizer_))
    reference = copy.deepcopy((fitted.module_, fitted.optimizer_))
    X_tensor = torch.tensor(X, dtype=torch.float32)
    _training.run_epoch(
        *ours,
        X_tensor,
        batch_size=32,
        beta=1.0,
        generator=torch.Generator().manual_seed(5),
    )
    old_epoch(*reference, X_tensor, 32, torch.Generator().manual_seed(5))
    for ours_p, ref_p in zip(
        ours[0].state_dict().values(), reference[0].state_dict().values(), strict=True
    ):
        assert torch.equal(ours_p, ref_p)


def test_complete_data_never_takes_the_masked_path(X, monkeypatch):
    def refuse(x):
        raise AssertionError("complete data went through the masked path")

    monkeypatch.setattr(_training, "observed", refuse)
    monkeypatch.setattr(_estimator, "observed", refuse)
    vae = fit_quietly(VAEEstimator(**{**SMALL, "early_stopping": True}), X)
    vae.partial_fit(X)
    assert not vae.module_.masked_encoder
    assert vae.module_.encoder[0].in_features == X.shape[1]
    vae.transform(X), vae.score_samples(X), vae.log_likelihood(X, n_draws=10)
    np.testing.assert_array_equal(vae._impute(X), X)


def test_complete_data_scores_are_the_old_elbo(fitted, X):
    module = fitted.module_.double()
    try:
        with torch.no_grad():
            reconstruction, kl = old_elbo(
                module, torch.tensor(X), fitted._fixed_noise(ELBO_DRAWS)
            )
    finally:
        fitted.module_.float()
    np.testing.assert_array_equal(
        fitted.score_samples(X), (reconstruction - kl).numpy()
    )


@pytest.mark.parametrize("model", ["fitted", "fitted_nan"])
def test_a_complete_rows_score_is_the_same_beside_rows_with_nan(
    request, model, X, X_nan
):
    vae = request.getfixturevalue(model)
    complete = X[:5]
    mixed = np.vstack([complete, X_nan[np.isnan(X_nan).any(axis=1)][:5]])
    # As for complete data (test_vae.py): equal up to float64 rounding, since
    # BLAS may sum in another order for another number of rows.
    for method in (vae.score_samples, vae.log_likelihood, vae.transform):
        np.testing.assert_allclose(method(mixed)[:5], method(complete), rtol=1e-12)


# --- Fitting and scoring with NaN --------------------------------------------


def test_fit_score_transform_with_nan_are_finite(fitted_nan, X_nan):
    d = X_nan.shape[1]
    assert fitted_nan.module_.masked_encoder
    assert fitted_nan.module_.encoder[0].in_features == 2 * d
    assert np.all(np.isfinite(fitted_nan.lower_bounds_))
    for values in (
        fitted_nan.score_samples(X_nan),
        fitted_nan.log_likelihood(X_nan, n_draws=50),
        fitted_nan.transform(X_nan),
    ):
        assert np.all(np.isfinite(values))
    assert fitted_nan.transform(X_nan).shape == (len(X_nan), fitted_nan.n_components)
    assert np.isfinite(fitted_nan.score(X_nan))
    assert fitted_nan.transform(X_nan.astype(np.float32)).dtype == np.float32


def test_partial_fit_and_early_stopping_with_nan(X_nan):
    vae = VAEEstimator(**SMALL).partial_fit(X_nan).partial_fit(X_nan)
    assert vae.module_.masked_encoder and np.all(np.isfinite(vae.lower_bounds_))
    vae = fit_quietly(VAEEstimator(**{**SMALL, "early_stopping": True}), X_nan)
    assert np.all(np.isfinite(vae.validation_scores_))


def test_a_model_trained_on_nan_scores_complete_rows_too(fitted_nan, X):
    assert np.all(np.isfinite(fitted_nan.score_samples(X)))


def test_moments_and_noise_floor_ignore_nan(X_nan):
    vae = VAEEstimator(**{**SMALL, "max_iter": 1}).partial_fit(X_nan)
    floor = RELATIVE_NOISE_FLOOR * np.nanvar(X_nan, axis=0)
    np.testing.assert_allclose(
        vae.module_.log_var_floor.exp().numpy(), floor, rtol=1e-5
    )


def test_the_masked_elbo_lies_below_the_iwae_estimate(fitted_nan, X_nan):
    elbo = fitted_nan.score_samples(X_nan)
    log_px = fitted_nan.log_likelihood(X_nan, n_draws=2000)
    assert elbo.mean() < log_px.mean()
    assert np.mean(elbo < log_px) > 0.9


@pytest.mark.parametrize("model", ["fitted", "fitted_nan"])
def test_a_row_with_nothing_observed_scores_zero(request, model, X_nan):
    vae = request.getfixturevalue(model)
    rows = np.vstack([X_nan[:3], np.full((2, X_nan.shape[1]), np.nan)])
    for method in (vae.score_samples, vae.log_likelihood):
        scores = method(rows)
        np.testing.assert_array_equal(scores[3:], 0.0)
        np.testing.assert_allclose(scores[:3], method(X_nan[:3]), rtol=1e-12)


def test_a_model_trained_on_nan_encodes_missing_at_the_training_means(
    fitted_nan, X_nan
):
    module = fitted_nan.module_
    np.testing.assert_allclose(
        module.input_fill.numpy(), np.nanmean(X_nan, axis=0), rtol=1e-6
    )
    x = X_nan[:6]
    observed = ~np.isnan(x)
    filled = np.where(observed, x, module.input_fill.double().numpy())
    module.double()
    try:
        with torch.no_grad():
            inputs = torch.tensor(np.hstack([filled, observed]))
            expected = module.encoder(inputs).chunk(2, dim=-1)[0].numpy()
    finally:
        module.float()
    np.testing.assert_array_equal(fitted_nan.transform(x), expected)


def test_a_model_trained_on_complete_data_encodes_missing_as_its_typical_point(
    fitted, X
):
    x = X[:4].copy()
    x[:, [1, 3]] = np.nan
    module = fitted.module_.double()
    try:
        with torch.no_grad():
            typical = module.decoded_mean(torch.zeros(module.n_components).double())
            filled = torch.tensor(x).where(~torch.isnan(torch.tensor(x)), typical)
            expected = module.encoder(filled).chunk(2, dim=-1)[0].numpy()
    finally:
        fitted.module_.float()
    np.testing.assert_array_equal(fitted.transform(x), expected)
    assert fitted.score_samples(x).mean() < fitted.log_likelihood(x, 2000).mean()


@pytest.mark.parametrize("method", ["fit", "partial_fit"])
def test_rows_or_columns_with_nothing_observed_are_an_error(X, X_nan, method):
    empty_row = X_nan.copy()
    empty_row[7] = np.nan
    with pytest.raises(
        ValueError, match=r"1 row\(s\) of X \(indices \[7\]\) are entirely NaN"
    ):
        getattr(VAEEstimator(**SMALL), method)(empty_row)
    empty_column = X.copy()
    empty_column[:, 2] = np.nan
    with pytest.raises(ValueError, match=r"feature\(s\) of X \(indices \[2\]\)"):
        getattr(VAEEstimator(**SMALL), method)(empty_column)


def test_a_column_left_empty_by_the_validation_split_is_an_error(X):
    X_bad = X.copy()
    X_bad[1:, 2] = np.nan  # one observed value, which early stopping may hold out
    for seed in range(20):
        vae = VAEEstimator(
            **{**SMALL, "random_state": seed},
            early_stopping=True,
            validation_fraction=0.5,
        )
        try:
            fit_quietly(vae, X_bad)
        except ValueError as error:
            assert "validation_fraction" in str(error)
            return
    pytest.fail("no seed held the only observed value out")


def test_infinity_is_an_error_everywhere(fitted, X):
    for bad in (np.inf, -np.inf):
        X_bad = X.copy()
        X_bad[3, 2] = bad
        for method in (
            VAEEstimator(**SMALL).fit,
            VAEEstimator(**SMALL).partial_fit,
            fitted.transform,
            fitted.score_samples,
            fitted.log_likelihood,
        ):
            with pytest.raises(ValueError, match="infinity"):
                method(X_bad)


def test_bernoulli_range_check_skips_nan():
    X01 = mcar(np.random.RandomState(1).uniform(size=(100, 6)), 0.2, seed=2)
    vae = fit_quietly(VAEEstimator(**{**SMALL, "likelihood": "bernoulli"}), X01)
    imputed = vae._impute(X01)
    assert 0 <= imputed.min() and imputed.max() <= 1
    drawn = vae._impute(X01, sample_posterior=True, random_state=0)
    assert set(np.unique(drawn[np.isnan(X01)])) <= {0.0, 1.0}
    X_bad = X01.copy()
    X_bad[0, 0] = 1.5
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        vae.score_samples(X_bad)


# --- Against the exact answers of a linear Gaussian VAE ----------------------


@pytest.fixture(scope="module")
def factor_model():
    """A linear VAE fitted to data from a factor-analysis model with 20% MCAR
    NaN, and the Gaussian (mean, covariance) of x its decoder defines."""
    rng = np.random.RandomState(0)
    n, d, k = 1000, 6, 2
    W = rng.normal(size=(k, d))
    noise = rng.uniform(0.2, 1.0, size=d)
    X = rng.normal(size=(n, k)) @ W + rng.normal(size=d)
    X += rng.normal(size=(n, d)) * np.sqrt(noise)
    X_nan = mcar(X, 0.2, seed=1)
    vae = VAEEstimator(k, hidden_layer_sizes=(), random_state=0).fit(X_nan)
    with torch.no_grad():
        layer = vae.module_.decoder[-1]
        C = layer.weight.double().numpy()
        mean = layer.bias.double().numpy()
        covariance = C @ C.T + np.diag(vae.module_.log_var.double().exp().numpy())
    return vae, X_nan, mean, covariance


def exact_log_px(X, mean, covariance):
    """log N(x_o; mean_o, covariance_oo) of each row, by brute force."""
    scores = []
    for x in X:
        o = ~np.isnan(x)
        scores.append(
            multivariate_normal(mean[o], covariance[np.ix_(o, o)]).logpdf(x[o])
        )
    return np.array(scores)


def exact_conditional(X, mean, covariance):
    """E[x_m | x_o] filled into X, and the conditional standard deviations."""
    X_mean, sd = X.copy(), np.zeros_like(X)
    for x, x_mean, s in zip(X, X_mean, sd, strict=True):
        o, m = ~np.isnan(x), np.isnan(x)
        gain = np.linalg.solve(covariance[np.ix_(o, o)], covariance[np.ix_(o, m)]).T
        x_mean[m] = mean[m] + gain @ (x[o] - mean[o])
        s[m] = np.sqrt(
            np.diag(covariance[np.ix_(m, m)] - gain @ covariance[np.ix_(o, m)])
        )
    return X_mean, sd


def test_log_likelihood_with_nan_is_the_exact_observed_data_likelihood(factor_model):
    vae, X_nan, mean, covariance = factor_model
    exact = exact_log_px(X_nan, mean, covariance)
    elbo_gap = np.mean(exact - vae.score_samples(X_nan))
    iwae_gap = np.mean(exact - vae.log_likelihood(X_nan, n_draws=2000))
    # The ELBO is a bound, loose here: one diagonal q(z|x_o) from one linear
    # encoder cannot be every pattern's posterior (measured: 0.30 nats).
    assert elbo_gap > 0.1
    # IWAE's bias falls as 1/K, and its sampling error, per row up to a few
    # tenths of a nat where q misses the posterior, averages over 1000 rows
    # (measured: |gap| <= 0.006 for K = 100 to 5000). 0.02 is 7% of the ELBO's
    # gap; counting missing entries, or scoring them at their zero fill, would
    # be off by whole nats.
    assert abs(iwae_gap) < 0.02


def test_impute_is_the_exact_conditional_mean(factor_model):
    vae, X_nan, mean, covariance = factor_model
    missing = np.isnan(X_nan)
    expected, sd = exact_conditional(X_nan, mean, covariance)
    imputed = vae._impute(X_nan)
    # Self-normalised importance sampling with 300 draws: its error, in
    # conditional standard deviations, was 0.058 (RMS) and 0.56 (max); 0.054
    # and 0.53 with 1000. The column mean is 1.2 conditional sds off.
    error = (imputed - expected)[missing] / sd[missing]
    assert np.sqrt(np.mean(error**2)) < 0.1
    assert np.abs(error).max() < 1.0
    np.testing.assert_array_equal(imputed[~missing], X_nan[~missing])


def test_impute_sample_posterior_draws_from_the_conditional(factor_model):
    vae, X_nan, mean, covariance = factor_model
    missing = np.isnan(X_nan)
    expected, sd = exact_conditional(X_nan, mean, covariance)
    residuals = np.concatenate(
        [
            ((vae._impute(X_nan, sample_posterior=True, random_state=seed) - expected)
             / np.where(missing, sd, 1))[missing]
            for seed in range(3)
        ]
    )  # fmt: skip
    # ~3,700 standardised residuals of draws from p(x_m | x_o): mean 0 and
    # variance 1 (standard errors 0.016 and 0.023; measured over 5 seeds:
    # -0.011 and 0.971 with 300 draws, a little narrow, as SIR is).
    assert abs(residuals.mean()) < 0.07
    assert abs(residuals.var() - 1) < 0.1


def test_impute_contract(fitted_nan, X_nan):
    X32 = X_nan.astype(np.float32)
    before = X32.copy()
    imputed = fitted_nan._impute(X32)
    assert imputed.dtype == np.float32 and imputed is not X32
    np.testing.assert_array_equal(X32, before)
    assert not np.isnan(imputed).any()
    observed = ~np.isnan(X32)
    np.testing.assert_array_equal(imputed[observed], X32[observed])
    np.testing.assert_array_equal(fitted_nan._impute(X_nan), fitted_nan._impute(X_nan))
    one, same, other = (
        fitted_nan._impute(X_nan, sample_posterior=True, random_state=seed)
        for seed in (0, 0, 1)
    )
    np.testing.assert_array_equal(one, same)
    assert not np.array_equal(one, other)
    # A row with nothing observed gets the model's mean, finite.
    empty = fitted_nan._impute(np.full((1, X_nan.shape[1]), np.nan))
    assert np.all(np.isfinite(empty))
    # A row's imputation does not depend on the other rows passed with it.
    rows = np.flatnonzero(np.isnan(X_nan).any(axis=1))[:3]
    np.testing.assert_allclose(
        fitted_nan._impute(X_nan[rows]), fitted_nan._impute(X_nan)[rows], rtol=1e-12
    )


def test_a_model_trained_on_nan_pickles(fitted_nan, X_nan):
    loaded = pickle.loads(pickle.dumps(fitted_nan))
    assert loaded.module_.masked_encoder
    np.testing.assert_array_equal(
        loaded.score_samples(X_nan), fitted_nan.score_samples(X_nan)
    )
    np.testing.assert_array_equal(loaded._impute(X_nan), fitted_nan._impute(X_nan))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_fit_with_nan_infers_as_its_cpu_copy(X_nan):
    gpu = fit_quietly(VAEEstimator(device="cuda", **SMALL), X_nan)
    assert all(p.is_cuda for p in gpu.module_.parameters())
    cpu = copy.deepcopy(gpu)
    cpu.module_.to("cpu")
    cpu.device_ = "cpu"
    # Fixed noise and the importance draws of the conditional mean are drawn
    # on the CPU for either device: the same numbers up to rounding.
    for method in ("transform", "score_samples", "_impute"):
        on_gpu, on_cpu = getattr(gpu, method)(X_nan), getattr(cpu, method)(X_nan)
        assert np.isfinite(on_gpu).all()
        np.testing.assert_allclose(on_gpu, on_cpu, rtol=1e-9, atol=1e-9)
    assert np.isfinite(gpu.log_likelihood(X_nan, n_draws=50)).all()
    draws = gpu._impute(X_nan, sample_posterior=True, random_state=0)
    assert np.isfinite(draws).all()
    assert np.array_equal(draws[~np.isnan(X_nan)], X_nan[~np.isnan(X_nan)])
