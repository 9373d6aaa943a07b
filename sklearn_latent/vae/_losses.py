"""The VAE's objectives: the ELBO (its two terms apart) and the IWAE bound.

Noise ``eps`` is either one fresh draw per row, shape (n, k), as in training,
or a leading axis of draws shared by every row, shape (n_draws, 1, k) (common
random numbers: a row's estimate then does not depend on the other rows). The
latent draws are z = mean + exp(log_var / 2) * eps (the reparameterisation
trick).
"""

import math

import torch


def reconstruction_log_likelihood(module, x, out):
    """log p(x|z) summed over features; ``out`` is ``module.decode(z)``.

    x: (n, d); out: (..., n, d); returns (..., n).
    """
    return module.likelihood_distribution(out).log_prob(x)


def kl_to_standard_normal(mean, log_var):
    """KL[N(mean, diag(exp(log_var))) || N(0, I)] in closed form; (n, k) -> (n,)."""
    return 0.5 * (torch.exp(log_var) + mean**2 - 1 - log_var).sum(-1)


def elbo_terms(module, x, eps):
    """Per-row ELBO terms: (E_q log p(x|z), KL[q(z|x) || p(z)]), each of shape (n,).

    The expectation is the average over the draws in ``eps`` (see module doc);
    ELBO = reconstruction - KL.
    """
    mean, log_var = module.encode(x)
    z = mean + torch.exp(0.5 * log_var) * eps
    reconstruction = reconstruction_log_likelihood(module, x, module.decode(z))
    if eps.dim() == 3:
        reconstruction = reconstruction.mean(0)
    return reconstruction, kl_to_standard_normal(mean, log_var)


def iwae(module, x, eps):
    """Importance-weighted bound log (1/K) sum_k p(x, z_k) / q(z_k|x), shape (n,).

    ``eps`` has shape (K, 1, k) or (K, n, k). With K draws the bound is >= the
    ELBO in expectation and tends to log p(x) as K grows (Burda et al., 2016).
    """
    mean, log_var = module.encode(x)
    z = mean + torch.exp(0.5 * log_var) * eps
    # log p(z) - log q(z|x); the log(2 pi) terms cancel.
    log_prior_ratio = -0.5 * (z**2 - eps**2 - log_var).sum(-1)
    log_w = reconstruction_log_likelihood(module, x, module.decode(z)) + log_prior_ratio
    return torch.logsumexp(log_w, dim=0) - math.log(eps.shape[0])
