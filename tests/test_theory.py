"""The identities the library rests on, checked numerically.

Where the posterior p(z|x) is tractable (a Gaussian mixture, factor analysis,
a linear Gaussian VAE) the quantities below are computed here in closed form,
in float64, independently of the library, and compared with what the library
computes. ``docs/theory.rst`` proves each identity and names the test that
checks it; keep the two in step.

Notation: the decomposition log p(x) = ELBO(q, theta) + KL[q(z) || p(z|x)],
with ELBO(q, theta) = E_q[log p(x, z)] + H[q].
"""

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy import optimize
from scipy.special import logsumexp, softmax
from scipy.stats import multivariate_normal
from sklearn.exceptions import ConvergenceWarning

from sklearn_latent import EMFactorAnalysis, EMGaussianMixture
from sklearn_latent._factor_analysis import RELATIVE_NOISE_FLOOR
from sklearn_latent._factor_kernels import (
    _DenseScatter,
    _maximize,
    _posterior_statistics,
)

LOG_2PI = np.log(2 * np.pi)


# ------------------------------------------------ linear Gaussian models
# The model z ~ N(0, I_k), x | z ~ N(C z + c, diag(noise)), C of shape (d, k):
# factor analysis with loadings W = C^T, and the linear Gaussian VAE's decoder.


def log_marginal(X, C, c, noise):
    """log p(x) of each row: x ~ N(c, C C^T + diag(noise))."""
    return multivariate_normal(c, C @ C.T + np.diag(noise)).logpdf(X)


def exact_posterior(X, C, c, noise):
    """p(z|x) = N(m_n, S): means (n, k) and the covariance (k, k) all rows share."""
    S = np.linalg.inv(np.eye(C.shape[1]) + C.T @ (C / noise[:, None]))
    return (X - c) @ (C / noise[:, None]) @ S, S


def gaussian_elbo(X, m, S, C, c, noise):
    """ELBO(q) of each row for q = N(m_n, S_n): E_q[log p(x|z)] + E_q[log p(z)] + H[q].

    ``S`` is (k, k) or (n, k, k). Every expectation of a quadratic under a
    Gaussian is in closed form.
    """
    S = np.broadcast_to(S, (len(X), *S.shape[-2:]))
    k = C.shape[1]
    residual = X - c - m @ C.T
    spread = np.einsum("jk,nkl,jl->nj", C, S, C)  # diag(C S_n C^T)
    reconstruction = -0.5 * np.sum(
        LOG_2PI + np.log(noise) + (residual**2 + spread) / noise, axis=1
    )
    prior = -0.5 * (k * LOG_2PI + np.sum(m**2, axis=1) + np.trace(S, axis1=1, axis2=2))
    entropy = 0.5 * (k * (LOG_2PI + 1) + np.linalg.slogdet(S)[1])
    return reconstruction + prior + entropy


def gaussian_kl(m0, S0, m1, S1):
    """KL[N(m0_n, S0_n) || N(m1_n, S1)] of each row; S0 (k, k) or (n, k, k)."""
    k = m0.shape[1]
    P1 = np.linalg.inv(S1)
    S0 = np.broadcast_to(S0, (len(m0), k, k))
    diff = m1 - m0
    return 0.5 * (
        np.einsum("kl,nlk->n", P1, S0)
        + np.einsum("nk,kl,nl->n", diff, P1, diff)
        - k
        + np.linalg.slogdet(S1)[1]
        - np.linalg.slogdet(S0)[1]
    )


def linear_gaussian_data(n=60, d=5, k=2, seed=0):
    rng = np.random.RandomState(seed)
    C = rng.normal(size=(d, k))
    noise = rng.uniform(0.3, 1.5, size=d)
    X = rng.normal(size=(n, k)) @ C.T + rng.normal(size=(n, d)) * np.sqrt(noise)
    return X + rng.normal(size=d)


def test_elbo_at_the_exact_posterior_is_the_log_likelihood():
    # Any decoder, not only a fitted one: the identity holds for every theta.
    X = linear_gaussian_data()
    rng = np.random.RandomState(1)
    C, c, noise = rng.normal(size=(5, 2)), rng.normal(size=5), rng.uniform(0.5, 2, 5)
    m, S = exact_posterior(X, C, c, noise)
    assert_allclose(
        gaussian_elbo(X, m, S, C, c, noise),
        log_marginal(X, C, c, noise),
        rtol=0,
        atol=1e-8,
    )
    # Any other q has a lower ELBO, by exactly its KL to the posterior.
    m_other, S_other = m + 0.3, S * 1.5
    gap = log_marginal(X, C, c, noise) - gaussian_elbo(X, m_other, S_other, C, c, noise)
    assert_allclose(gap, gaussian_kl(m_other, S_other, m, S), rtol=0, atol=1e-8)
    assert np.all(gap > 1e-2)


# ------------------------------------------------------- the linear VAE
def linear_vae(X, k=2):
    """A linear Gaussian VAEEstimator trained a few epochs (not to its optimum,
    so that its encoder is not the exact posterior), in float64."""
    torch = pytest.importorskip("torch")
    from sklearn_latent import VAEEstimator

    vae = VAEEstimator(k, hidden_layer_sizes=(), max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        vae.fit(X)
    vae.module_.double()  # its parameters, read and written below in float64
    return vae, torch


def decoder_parameters(vae, torch):
    """(C, c, noise) of a linear VAE's decoder: decode(z) = C z + c."""
    module, k = vae.module_, vae.module_.n_components
    with torch.no_grad():
        points = module.decode(torch.cat([torch.zeros(1, k), torch.eye(k)]).double())
        noise = torch.exp(module.log_var)
    c = points[0].numpy()
    return (points[1:] - points[0]).numpy().T, c, noise.numpy()


def encoder_distribution(vae, torch, X):
    """q(z|x) = N(m_n, diag(s_n^2)) of the VAE's encoder: means and covariances."""
    with torch.no_grad():
        mean, log_var = vae.module_.encode(torch.from_numpy(X))
    variances = np.exp(log_var.numpy())
    return mean.numpy(), variances[:, :, None] * np.eye(variances.shape[1])


def test_vae_score_samples_is_the_closed_form_elbo():
    # score_samples averages over 32 noise draws shared by every row, shifted
    # and whitened to mean 0 and covariance I. A linear Gaussian VAE's ELBO is
    # a quadratic in the noise, so that average is the exact expectation.
    X = linear_gaussian_data()
    vae, torch = linear_vae(X)
    C, c, noise = decoder_parameters(vae, torch)
    m, S = encoder_distribution(vae, torch, X)
    assert_allclose(
        vae.score_samples(X), gaussian_elbo(X, m, S, C, c, noise), rtol=0, atol=1e-8
    )


def test_vae_elbo_gap_is_the_kl_to_the_exact_posterior():
    # log p(x) - ELBO(q) = KL[q || p(z|x)] for the VAE's own encoder q.
    X = linear_gaussian_data()
    vae, torch = linear_vae(X)
    C, c, noise = decoder_parameters(vae, torch)
    m, S = encoder_distribution(vae, torch, X)
    posterior_mean, posterior_cov = exact_posterior(X, C, c, noise)
    kl = gaussian_kl(m, S, posterior_mean, posterior_cov)
    gap = log_marginal(X, C, c, noise) - gaussian_elbo(X, m, S, C, c, noise)
    assert_allclose(gap, kl, rtol=0, atol=1e-8)
    assert np.all(kl > 1e-3)  # the encoder is not the posterior: a real gap
    # The library's ELBO has the same gap.
    assert_allclose(
        log_marginal(X, C, c, noise) - vae.score_samples(X), kl, rtol=0, atol=1e-8
    )


def set_linear_vae(vae, torch, C, c, noise, X):
    """Give a linear VAE the decoder (C, c, noise) and, as encoder, its exact
    posterior, which must be diagonal (C^T diag(noise)^-1 C diagonal)."""
    A = (C / noise[:, None]).T  # posterior mean = S A (x - c)
    S = np.linalg.inv(np.eye(C.shape[1]) + A @ C)
    assert np.allclose(S, np.diag(np.diag(S)), rtol=0, atol=1e-12)
    (encoder,), (decoder,) = vae.module_.encoder, vae.module_.decoder
    with torch.no_grad():
        decoder.weight.copy_(torch.from_numpy(C))
        decoder.bias.copy_(torch.from_numpy(c))
        vae.module_.log_var.copy_(torch.from_numpy(np.log(noise)))
        k = C.shape[1]
        encoder.weight.copy_(torch.from_numpy(np.vstack([S @ A, np.zeros_like(A)])))
        encoder.bias.copy_(
            torch.from_numpy(np.concatenate([-S @ A @ c, np.log(np.diag(S))]))
        )
    assert vae.module_.encoder(torch.from_numpy(X)).shape[1] == 2 * k


def test_linear_vae_with_factor_analysis_parameters_is_exact():
    # The linear-Gaussian case: EM's factor analysis, as a linear VAE whose
    # encoder is the exact posterior, has ELBO = log p(x) = EM's score, and
    # every importance weight of the IWAE estimate is p(x).
    X = linear_gaussian_data()
    fa = EMFactorAnalysis(2).fit(X)
    vae, torch = linear_vae(X)
    # fa.components_ are orthogonal under the noise precision, so the exact
    # posterior covariance is diagonal: the VAE's encoder family contains it.
    set_linear_vae(vae, torch, fa.components_.T, fa.mean_, fa.noise_variance_, X)
    exact = fa.score_samples(X)
    assert_allclose(vae.score_samples(X), exact, rtol=0, atol=1e-8)
    assert_allclose(vae.log_likelihood(X, n_draws=3), exact, rtol=0, atol=1e-8)


def test_vae_decoder_gradient_at_the_exact_posterior_is_the_likelihood_gradient():
    # The VAE's step on the decoder is an M-step direction: with q = p(z|x),
    # the gradient of the training objective (the ELBO, as the training loop
    # computes it) over theta is the gradient of log p(x) (Fisher's identity).
    X = linear_gaussian_data()
    vae, torch = linear_vae(X)  # skips without torch
    from sklearn_latent.vae._estimator import ELBO_DRAWS
    from sklearn_latent.vae._losses import elbo_terms

    C, c, noise = decoder_parameters(vae, torch)
    # Rotate z so that the exact posterior is diagonal; p(x) does not change.
    _, rotation = np.linalg.eigh(C.T @ (C / noise[:, None]))
    set_linear_vae(vae, torch, C @ rotation, c, noise, X)
    module, x = vae.module_, torch.from_numpy(X)
    decoder = [module.decoder[0].weight, module.decoder[0].bias, module.log_var]

    reconstruction, kl = elbo_terms(module, x, vae._fixed_noise(ELBO_DRAWS))
    elbo_gradient = torch.autograd.grad((reconstruction - kl).sum(), decoder)
    weight, bias, log_var = decoder
    covariance = weight @ weight.T + torch.diag(torch.exp(log_var))
    log_px = torch.distributions.MultivariateNormal(bias, covariance).log_prob(x)
    likelihood_gradient = torch.autograd.grad(log_px.sum(), decoder)
    for ours, expected in zip(elbo_gradient, likelihood_gradient, strict=True):
        assert expected.abs().max() > 1e-2  # not at a stationary point
        assert_allclose(ours.numpy(), expected.numpy(), rtol=0, atol=1e-8)


# -------------------------------------------------------- factor analysis
def fa_expected_complete(X, posterior_mean, posterior_cov, W, noise, mean):
    """E_{p(z|x)}[log p(x, z)] averaged over rows, up to E[log p(z)], which
    no parameter changes: the M-step's objective for loadings W (k, d)."""
    residual = X - mean - posterior_mean @ W
    spread = np.einsum("kj,kl,lj->j", W, posterior_cov, W)
    return -0.5 * np.mean(
        np.sum(LOG_2PI + np.log(noise) + (residual**2 + spread) / noise, axis=1)
    )


@pytest.mark.parametrize("isotropic", [False, True], ids=["diagonal", "isotropic"])
@pytest.mark.parametrize("floor_active", [False, True], ids=["free", "floored"])
def test_fa_m_step_maximises_the_expected_complete_log_likelihood(
    isotropic, floor_active
):
    X = linear_gaussian_data(n=80, d=5, k=2, seed=2)
    n, d = X.shape
    k = 2
    rng = np.random.RandomState(3)
    W0, noise0 = rng.normal(size=(k, d)), rng.uniform(0.5, 2.0, d)
    mean = X.mean(axis=0)
    scatter = (X - mean).T @ (X - mean) / n
    # The E-step under theta0, from scratch ...
    m, S = exact_posterior(X, W0.T, mean, noise0)
    # ... and the library's E- and M-step kernels, as every EM step applies them.
    ezz, beta_scatter, _ = _posterior_statistics(W0, noise0, _DenseScatter(scatter))
    free = _maximize(ezz, beta_scatter, np.diag(scatter), isotropic, np.zeros(d))[1]
    if not floor_active:
        floor = np.full(d, 1e-12)
    elif isotropic:
        floor = np.full(d, 1.5 * free[0])
    else:
        floor = np.where(np.arange(d) == np.argmin(free), 1.5 * free.min(), 1e-12)
    W1, noise1 = _maximize(ezz, beta_scatter, np.diag(scatter), isotropic, floor)

    def negative_q(theta):
        W = theta[: k * d].reshape(k, d)
        mu = theta[k * d : k * d + d]
        noise = np.exp(np.broadcast_to(theta[k * d + d :], (d,)))
        return -fa_expected_complete(X, m, S, W, noise, mu)

    n_noise = 1 if isotropic else d
    start = np.concatenate([W0.ravel(), mean + 1.0, np.log(noise0[:n_noise])])
    bounds = [(None, None)] * (k * d + d) + [(np.log(f), None) for f in floor[:n_noise]]
    found = optimize.minimize(
        negative_q,
        start,
        method="L-BFGS-B",
        bounds=bounds,
        options={"ftol": 1e-15, "gtol": 1e-10, "maxiter": 10000},
    )
    theta1 = np.concatenate([W1.ravel(), mean, np.log(noise1[:n_noise])])
    # The M-step is at least as high as the optimiser's best, and the same point.
    assert -negative_q(theta1) >= -found.fun - 1e-12
    assert -negative_q(theta1) == pytest.approx(-found.fun, rel=1e-9)
    assert_allclose(found.x, theta1, rtol=0, atol=1e-4)
    assert np.any(noise1 == floor) == floor_active


def test_fa_em_step_follows_the_proof():
    # One EM step, theta0 -> theta1, through the library's kernels:
    #   log p(X; theta0) = ELBO(q0, theta0)         (E-step: KL = 0)
    #                   <= ELBO(q0, theta1)         (M-step)
    #                    = log p(X; theta1) - KL[q0 || p(z|x; theta1)]
    X = linear_gaussian_data(n=80, d=5, k=2, seed=2)
    n, d = X.shape
    rng = np.random.RandomState(3)
    W0, noise0 = rng.normal(size=(2, d)), rng.uniform(0.5, 2.0, d)
    mean = X.mean(axis=0)
    scatter = (X - mean).T @ (X - mean) / n
    ezz, beta_scatter, loglike0 = _posterior_statistics(
        W0, noise0, _DenseScatter(scatter)
    )
    W1, noise1 = _maximize(ezz, beta_scatter, np.diag(scatter), False, np.zeros(d))
    loglike1 = _posterior_statistics(W1, noise1, _DenseScatter(scatter))[2]

    m0, S0 = exact_posterior(X, W0.T, mean, noise0)
    m1, S1 = exact_posterior(X, W1.T, mean, noise1)
    elbo_00 = gaussian_elbo(X, m0, S0, W0.T, mean, noise0)
    elbo_01 = gaussian_elbo(X, m0, S0, W1.T, mean, noise1)
    log_p1 = log_marginal(X, W1.T, mean, noise1)
    assert elbo_00.mean() == pytest.approx(loglike0, rel=1e-12)
    assert elbo_01.mean() > elbo_00.mean() + 1e-2
    kl = gaussian_kl(m0, S0, m1, S1)
    assert_allclose(log_p1 - elbo_01, kl, rtol=0, atol=1e-8)
    assert np.all(kl >= 0) and kl.mean() > 1e-3
    assert log_p1.mean() == pytest.approx(loglike1, rel=1e-12)


def test_noise_floor_bounds_the_factor_analysis_likelihood():
    # Six rows in ten dimensions: the scatter matrix is singular, and with five
    # factors C = W^T W + Psi can approach it as Psi -> 0, so the likelihood is
    # unbounded. The floor psi_j >= 1e-6 var_j bounds it, since C >= Psi gives
    # log p(x) <= -1/2 sum_j log(2 pi psi_j).
    X = np.random.RandomState(0).normal(size=(6, 10))
    floor = RELATIVE_NOISE_FLOOR * X.var(axis=0)
    with pytest.warns(UserWarning, match="reached its floor"):
        fa = EMFactorAnalysis(5).fit(X)
    assert_allclose(fa.noise_variance_, floor, rtol=1e-9)
    assert np.isfinite(fa.score(X))
    assert fa.score(X) <= -0.5 * np.sum(np.log(2 * np.pi * floor))


# -------------------------------------------------------- Gaussian mixture
def full_covariances(covariance_type, covariances, n_components, d):
    """(K, d, d) covariance matrices from any covariance_type's array."""
    if covariance_type == "full":
        return covariances
    if covariance_type == "tied":
        return np.broadcast_to(covariances, (n_components, d, d))
    if covariance_type == "diag":
        return covariances[:, :, None] * np.eye(d)
    return covariances[:, None, None] * np.eye(d)


def mixture_log_joint(X, weights, means, covariances):
    """log(pi_k N(x_n | mu_k, Sigma_k)), shape (n, K), by Cholesky factors."""
    L = np.linalg.cholesky(covariances)  # (K, d, d)
    Y = np.linalg.solve(L[:, None], (X[None] - means[:, None])[..., None])[..., 0]
    log_det = 2 * np.sum(np.log(np.diagonal(L, axis1=1, axis2=2)), axis=1)
    log_density = -0.5 * (np.sum(Y**2, axis=2).T + X.shape[1] * LOG_2PI + log_det)
    return np.log(weights) + log_density


def mixture_q(X, sample_weight, resp, weights, means, covariances, reg_covar):
    """The M-step's objective: sum_n w_n E_{r_n}[log p(x_n, z)], less
    reg_covar/2 sum_n w_n E_{r_n}[tr Sigma_z^-1] (zero without reg_covar)."""
    joint = mixture_log_joint(X, weights, means, covariances)
    trace = np.trace(np.linalg.inv(covariances), axis1=1, axis2=2)
    penalty = 0.5 * reg_covar * trace
    return sample_weight @ np.sum(resp * (joint - penalty), axis=1)


def unpack_mixture(theta, covariance_type, K, d):
    """Unconstrained parameters -> (weights, means, (K, d, d) covariances)."""
    weights = softmax(np.concatenate([[0.0], theta[: K - 1]]))
    means = theta[K - 1 : K - 1 + K * d].reshape(K, d)
    rest = theta[K - 1 + K * d :]
    if covariance_type in ("full", "tied"):
        n_factors = K if covariance_type == "full" else 1
        L = np.zeros((n_factors, d, d))
        rows, cols = np.tril_indices(d)
        L[:, rows, cols] = rest.reshape(n_factors, -1)
        diagonal = np.arange(d)
        L[:, diagonal, diagonal] = np.exp(L[:, diagonal, diagonal])
        covariances = L @ np.swapaxes(L, 1, 2)
        return weights, means, np.broadcast_to(covariances, (K, d, d))
    variances = np.exp(rest).reshape(K, -1)
    return weights, means, variances[:, :, None] * np.eye(d)


def pack_mixture(weights, means, covariances, covariance_type):
    logits = np.log(weights[1:]) - np.log(weights[0])
    if covariance_type in ("full", "tied"):
        factors = covariances if covariance_type == "full" else covariances[:1]
        L = np.linalg.cholesky(factors)
        d = L.shape[1]
        diagonal = np.arange(d)
        L[:, diagonal, diagonal] = np.log(L[:, diagonal, diagonal])
        rows, cols = np.tril_indices(d)
        rest = L[:, rows, cols].ravel()
    elif covariance_type == "diag":
        rest = np.log(np.diagonal(covariances, axis1=1, axis2=2)).ravel()
    else:
        rest = np.log(covariances[:, 0, 0])
    return np.concatenate([logits, means.ravel(), rest])


def mixture_start(covariance_type):
    """Data and a starting theta0 that is far from a fixed point of EM."""
    rng = np.random.RandomState(0)
    X = np.vstack(
        [
            rng.normal(size=(25, 2)) @ [[1.0, 0.4], [0.0, 0.7]],
            rng.normal(size=(15, 2)) * [0.5, 1.5] + [3.0, 1.0],
        ]
    )
    sample_weight = rng.uniform(0.5, 2.0, len(X))
    weights = np.array([0.3, 0.7])
    means = np.array([[0.5, 0.5], [2.0, 0.0]])
    full = np.array([[[1.0, 0.3], [0.3, 2.0]], [[0.5, -0.1], [-0.1, 0.8]]])
    precisions = {
        "full": np.linalg.inv(full),
        "tied": np.linalg.inv(full[0]),
        "diag": 1 / np.array([[1.0, 2.0], [0.5, 0.8]]),
        "spherical": np.array([1.0, 2.0]),
    }[covariance_type]
    return X, sample_weight, weights, means, precisions


def em_step(
    covariance_type, reg_covar, X, sample_weight, weights, means, precisions, max_iter=1
):
    """The library's EMGaussianMixture after max_iter iterations from theta0."""
    gm = EMGaussianMixture(
        2,
        covariance_type=covariance_type,
        reg_covar=reg_covar,
        max_iter=max_iter,
        tol=0,
        weights_init=weights,
        means_init=means,
        precisions_init=precisions,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return gm.fit(X, sample_weight=sample_weight)


def gm_parameters(gm):
    d = gm.means_.shape[1]
    covariances = full_covariances(gm.covariance_type, gm.covariances_, 2, d)
    return gm.weights_, gm.means_, covariances


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
@pytest.mark.parametrize("reg_covar", [0.0, 0.1])
def test_gmm_m_step_maximises_the_expected_complete_log_likelihood(
    covariance_type, reg_covar
):
    # With reg_covar > 0 the M-step maximises Q minus the penalty
    # reg_covar/2 sum_n E[tr Sigma_z^-1]: Sigma_k = S_k / n_k + reg_covar I.
    X, sample_weight, *theta0 = mixture_start(covariance_type)
    before = em_step(covariance_type, reg_covar, X, sample_weight, *theta0, max_iter=0)
    after = em_step(covariance_type, reg_covar, X, sample_weight, *theta0)
    weights0, means0, covariances0 = gm_parameters(before)
    # The E-step under theta0, from scratch.
    joint = mixture_log_joint(X, weights0, means0, covariances0)
    resp = np.exp(joint - logsumexp(joint, axis=1, keepdims=True))

    def negative_q(theta):
        params = unpack_mixture(theta, covariance_type, 2, 2)
        return -mixture_q(X, sample_weight, resp, *params, reg_covar)

    start = pack_mixture(weights0, means0, covariances0, covariance_type)
    found = optimize.minimize(
        negative_q, start, method="BFGS", options={"gtol": 1e-9, "maxiter": 10000}
    )
    theta1 = gm_parameters(after)
    q1 = mixture_q(X, sample_weight, resp, *theta1, reg_covar)
    assert q1 >= -found.fun - 1e-9
    assert q1 == pytest.approx(-found.fun, rel=1e-9)
    assert -negative_q(start) < q1 - 1.0  # theta0 was far from the maximum
    for ours, optimum in zip(
        theta1, unpack_mixture(found.x, covariance_type, 2, 2), strict=True
    ):
        assert_allclose(ours, optimum, rtol=0, atol=1e-4)


def test_gmm_em_step_follows_the_proof():
    # log p(X; theta0) = ELBO(r0, theta0) <= ELBO(r0, theta1)
    #                  = log p(X; theta1) - sum_n KL[r0_n || p(z|x_n; theta1)]
    X, sample_weight, *theta0 = mixture_start("full")
    before = em_step("full", 0.0, X, None, *theta0, max_iter=0)
    after = em_step("full", 0.0, X, None, *theta0)
    r0 = before.predict_proba(X)  # the library's E-step at theta0

    def elbo(resp, gm):
        joint = mixture_log_joint(X, *gm_parameters(gm))
        return np.sum(resp * (joint - np.log(resp)), axis=1)

    assert_allclose(elbo(r0, before), before.score_samples(X), rtol=0, atol=1e-8)
    assert elbo(r0, after).sum() > elbo(r0, before).sum() + 1.0
    r1 = after.predict_proba(X)
    kl = np.sum(r0 * (np.log(r0) - np.log(r1)), axis=1)
    assert_allclose(after.score_samples(X) - elbo(r0, after), kl, rtol=0, atol=1e-8)
    assert np.all(kl >= 0) and kl.sum() > 1e-2


@pytest.mark.parametrize("reg_covar", [1e-2, 1e-4, 1e-6])
def test_reg_covar_bounds_the_mixture_likelihood(reg_covar):
    # Four points, each repeated ten times, and four components: with
    # reg_covar=0 each component collapses onto a point and the likelihood is
    # unbounded (an error, see test_ill_conditioned_covariance_says_what_to_do).
    # Sigma_k >= reg_covar I bounds every log-density by
    # -d/2 log(2 pi reg_covar); here each component sits on its point with
    # Sigma_k = reg_covar I, and the bound is reached up to log 4.
    X = np.repeat(np.random.RandomState(0).normal(size=(4, 3)) * 10, 10, axis=0)
    gm = EMGaussianMixture(
        4, reg_covar=reg_covar, init_params="k-means++", random_state=0
    ).fit(X)
    bound = -1.5 * np.log(2 * np.pi * reg_covar)
    assert max(gm.lower_bounds_) <= bound
    assert gm.score(X) == pytest.approx(bound - np.log(4), abs=1e-6)


def test_reg_covar_can_lower_the_likelihood():
    # One Gaussian started at its maximum-likelihood parameters: the M-step
    # with reg_covar moves Sigma from S to S + reg_covar I, and log p(X) falls.
    X = np.random.RandomState(0).normal(size=(50, 2)) @ [[1.0, 0.5], [0.0, 1.0]]
    mean = X.mean(axis=0)
    S = (X - mean).T @ (X - mean) / len(X)
    gm = EMGaussianMixture(
        1,
        reg_covar=0.1,
        max_iter=2,
        tol=0,
        weights_init=[1.0],
        means_init=[mean],
        precisions_init=[np.linalg.inv(S)],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm.fit(X)
    first, second = gm.lower_bounds_
    assert first == pytest.approx(multivariate_normal(mean, S).logpdf(X).mean())
    assert second < first - 1e-3


def test_tied_em_never_lowers_the_penalised_likelihood():
    # With a tied covariance the penalty reg_covar/2 tr Sigma^-1 is the same
    # for every component, so the plain posterior is also the posterior of the
    # penalised model: EM is exact EM on log p(X) - n reg_covar/2 tr Sigma^-1.
    X, _, weights, means, _ = mixture_start("tied")
    reg_covar = 0.5
    gm = EMGaussianMixture(
        2,
        covariance_type="tied",
        reg_covar=reg_covar,
        max_iter=0,
        tol=0,
        warm_start=True,
        weights_init=weights,
        means_init=means[::-1],
        precisions_init=np.eye(2),
    )
    penalised = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for _ in range(30):
            gm.fit(X)  # theta0 first, then one EM iteration a call
            penalty = 0.5 * reg_covar * np.trace(gm.precisions_)
            penalised.append(gm.score(X) - penalty)
            gm.max_iter = 1
    gains = np.diff(penalised)
    assert np.all(gains >= -1e-12 * np.abs(penalised[1:]))
    assert penalised[-1] > penalised[0] + 0.1
