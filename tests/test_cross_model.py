"""What the three estimators share: one vocabulary, one grid, one quantity."""

import warnings

import numpy as np
import pytest
from scipy.stats import multivariate_normal
from sklearn.base import clone
from sklearn.decomposition import FactorAnalysis
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_latent import EMFactorAnalysis, EMGaussianMixture

torch = pytest.importorskip("torch")
from sklearn_latent import VAEEstimator  # noqa: E402


def factor_model_data(n_samples, n_features=6, n_components=2, seed=0):
    rng = np.random.RandomState(seed)
    W = rng.randn(n_components, n_features)
    noise = rng.uniform(0.2, 1.0, n_features)
    X = rng.randn(n_samples, n_components) @ W + rng.randn(n_samples, n_features) * (
        np.sqrt(noise)
    )
    return X + rng.randn(n_features)


ESTIMATORS = [
    EMGaussianMixture(random_state=0),
    EMFactorAnalysis(random_state=0),
    VAEEstimator(hidden_layer_sizes=(16,), max_iter=15, random_state=0),
]


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_one_grid_over_n_components_fits_every_estimator(estimator):
    X = factor_model_data(n_samples=300)
    pipe = make_pipeline(StandardScaler(), estimator)
    name = pipe.steps[-1][0]
    grid = {f"{name}__n_components": [1, 2, 3]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search = GridSearchCV(pipe, grid, cv=3, n_jobs=2).fit(X)
    scores = search.cv_results_["mean_test_score"]
    assert np.all(np.isfinite(scores))
    # Each score is the estimator's own held-out mean log-likelihood (or
    # ELBO) per sample, as a fit and score here gives it.
    train, test = next(KFold(3).split(X))  # cv=3's first split
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        here = clone(pipe).set_params(**search.cv_results_["params"][1])
        here.fit(X[train])
    assert search.cv_results_["split0_test_score"][1] == pytest.approx(
        here.score(X[test]), rel=1e-12
    )
    X_new, Z_new = search.best_estimator_[-1].sample(5)
    assert X_new.shape == (5, X.shape[1]) and len(Z_new) == 5


def test_linear_vae_reaches_the_exact_factor_analysis_likelihood():
    """The EM-VAE bridge: with no hidden layers the Gaussian VAE is factor analysis.

    Its optimal ELBO equals EM's exact log-likelihood, and the IWAE estimate of
    log p(x) lies between the two. The VAE runs with its default settings.
    """
    rng = np.random.RandomState(0)
    n, d, k = 2000, 10, 3
    W = rng.normal(size=(k, d))
    noise = rng.uniform(0.2, 1.0, size=d)
    mean = rng.normal(size=d)
    X = rng.normal(size=(n, k)) @ W + mean + rng.normal(size=(n, d)) * np.sqrt(noise)

    # The maximum-likelihood fit scores at least the generating parameters,
    # and EM agrees with scikit-learn's SVD-based fit.
    true_loglike = multivariate_normal(mean, W.T @ W + np.diag(noise)).logpdf(X).mean()
    fa = EMFactorAnalysis(n_components=k).fit(X)
    exact = fa.score(X)
    assert true_loglike <= exact < true_loglike + 0.05
    assert exact == pytest.approx(
        FactorAnalysis(n_components=k).fit(X).score(X), abs=1e-4
    )

    vae = VAEEstimator(k, hidden_layer_sizes=(), random_state=0).fit(X)
    assert vae.converged_
    # score is the ELBO under 32 moment-matched draws: exact for a linear VAE.
    assert exact - 0.05 < vae.score(X) <= exact + 1e-6

    subset = X[:500]
    elbo, log_px = vae.score(subset), vae.log_likelihood(subset).mean()
    assert elbo < log_px < fa.score(subset) + 0.01
