"""The VAE's objectives: the ELBO (its two terms apart) and the IWAE bound.

Noise ``eps`` is either one fresh draw per row, shape (n, k), as in training,
or a leading axis of draws shared by every row, shape (n_draws, 1, k) (common
random numbers: a row's estimate then does not depend on the other rows). The
latent draws are z = mean + exp(log_var / 2) * eps (the reparameterisation
trick).

With missing values (MIWAE, Mattei & Frellsen 2019) x holds 0 where an entry
is missing and ``mask`` (bool, x's shape) marks the observed entries; the
likelihood then covers the observed entries only, so every objective here
bounds or estimates log p(x_o). ``mask=None`` means all observed and runs
exactly the complete-data computation.
"""

import math

import torch


def observed(x):
    """x with NaN replaced by 0, and the mask of its observed entries."""
    mask = ~torch.isnan(x)
    return x.masked_fill(~mask, 0.0), mask


def reconstruction_log_likelihood(module, x, out, mask=None):
    """log p(x_o|z) summed over the observed features; ``out`` is ``module.decode(z)``.

    x, mask: (n, d); out: (..., n, d); returns (..., n).
    """
    distribution = module.likelihood_distribution(out)
    if mask is None:
        return distribution.log_prob(x)
    # A missing entry contributes log 1 = 0: p(x_o|z) marginalises it out.
    per_feature = distribution.base_dist.log_prob(x)
    return torch.where(mask, per_feature, 0.0).sum(-1)


def kl_to_standard_normal(mean, log_var):
    """KL[N(mean, diag(exp(log_var))) || N(0, I)] in closed form; (n, k) -> (n,)."""
    return 0.5 * (torch.exp(log_var) + mean**2 - 1 - log_var).sum(-1)


def elbo_terms(module, x, eps, mask=None):
    """Per-row ELBO terms: (E_q log p(x_o|z), KL[q(z|x_o) || p(z)]), each of shape (n,).

    The expectation is the average over the draws in ``eps`` (see module doc);
    ELBO = reconstruction - KL.
    """
    mean, log_var = module.encode(x, mask)
    z = mean + torch.exp(0.5 * log_var) * eps
    reconstruction = reconstruction_log_likelihood(module, x, module.decode(z), mask)
    if eps.dim() == 3:
        reconstruction = reconstruction.mean(0)
    return reconstruction, kl_to_standard_normal(mean, log_var)


def log_weights(module, x, eps, mask=None):
    """Draws z_k ~ q(z|x_o), (K, n, k), and log p(x_o, z_k) / q(z_k|x_o), (K, n).

    ``eps`` has shape (K, 1, k) or (K, n, k).
    """
    mean, log_var = module.encode(x, mask)
    z = mean + torch.exp(0.5 * log_var) * eps
    # log p(z) - log q(z|x); the log(2 pi) terms cancel.
    log_prior_ratio = -0.5 * (z**2 - eps**2 - log_var).sum(-1)
    reconstruction = reconstruction_log_likelihood(module, x, module.decode(z), mask)
    return z, reconstruction + log_prior_ratio


def iwae(module, x, eps, mask=None):
    """Importance-weighted bound log (1/K) sum_k p(x_o, z_k) / q(z_k|x_o), shape (n,).

    With K draws the bound is >= the ELBO in expectation and tends to
    log p(x_o) as K grows (Burda et al., 2016).
    """
    _, log_w = log_weights(module, x, eps, mask)
    return torch.logsumexp(log_w, dim=0) - math.log(eps.shape[0])
