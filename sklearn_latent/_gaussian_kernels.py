"""Pure numerical kernels of the Gaussian mixture, batched over components.

A Gaussian log-density is linear in the sufficient statistics of x::

    log N(x | mu_k, P_k^-1) = -1/2 <P_k, x x^T> + x^T P_k mu_k
                              - 1/2 mu_k^T P_k mu_k + log det U_k - d/2 log 2 pi

(P_k = U_k U_k^T the precision, U_k its upper-triangular Cholesky factor). So
for a chunk of rows we build one feature matrix ``F = [second(x), x]`` — the
second-order statistics each covariance type needs, then x — and one matrix
product ``F @ A`` gives every component's log-density at once, while
``resp.T @ F`` gives every sufficient statistic the M-step needs. scikit-learn
loops over components in Python instead; this halves the arithmetic of the
``full`` case and removes it almost entirely for ``tied``, whose shared
quadratic term x^T P x does not depend on the component: responsibilities never
need it, and the total log-likelihood gets it as tr(P S) from the scatter
matrix S computed once before iterating.

Second-order statistics per covariance type (columns of ``second(x)``):

=========  =========================  ====================
full       x_i x_j, i <= j            d (d + 1) / 2
tied       none                       0
diag       x_j ** 2                   d
spherical  ||x|| ** 2                 1
=========  =========================  ====================

Shapes: n rows, d features, K components, p second-order columns.
"""

import math
from typing import NamedTuple

import numpy as np
import scipy.linalg

ILL_DEFINED_COVARIANCE = (
    "Fitting the mixture model failed because some components have "
    "ill-defined empirical covariance (for instance caused by singleton "
    "or collapsed samples). Try to decrease the number of components, "
    "increase reg_covar, or scale the input data."
)
FLOAT32_HINT = (
    " The numerical accuracy can also be improved by passing float64"
    " data instead of float32."
)


def _ill_defined(dtype):
    return ValueError(
        ILL_DEFINED_COVARIANCE + (FLOAT32_HINT if dtype == np.float32 else "")
    )


# ------------------------------------------------------- second-order features
# Chunks are laid out with samples as columns, (d, n): each second-order row is
# then a product of two contiguous rows, and the matrix products that follow
# read long contiguous rows.
def _second_full(XT, out):
    """x_i x_j for i <= j, in np.triu_indices order: (d, n) -> out (p, n)."""
    d = len(XT)
    start = 0
    for i in range(d):
        np.multiply(XT[i], XT[i:], out=out[start : start + d - i])
        start += d - i


def _second_tied(XT, out):
    """No component-specific second-order term: out is (0, n)."""


def _second_diag(XT, out):
    """x_j ** 2: (d, n) -> out (d, n)."""
    np.square(XT, out=out)


def _second_spherical(XT, out):
    """||x|| ** 2: (d, n) -> out (1, n)."""
    np.einsum("ij,ij->j", XT, XT, out=out[0])


def features(X, shift, kern):
    """Features [second(x - s); x - s] of a chunk, samples as columns.

    (n, d) rows, (d,) shift -> (p + d, n).
    """
    n_samples, n_features = X.shape
    n_second = kern.n_second(n_features)
    out = np.empty((n_second + n_features, n_samples), dtype=X.dtype)
    np.subtract(X.T, shift[:, np.newaxis], out=out[n_second:])
    kern.second(out[n_second:], out[:n_second])
    return out


# -------------------------------------------- precision Cholesky and log-dets
def _precision_cholesky_full(covariances):
    """(K, d, d) covariances -> (K, d, d) upper factors U with U U^T = inverse."""
    try:
        cov_chol = scipy.linalg.cholesky(covariances, lower=True)
    except np.linalg.LinAlgError:
        raise _ill_defined(covariances.dtype) from None
    identity = np.broadcast_to(
        np.eye(covariances.shape[-1], dtype=covariances.dtype), covariances.shape
    )
    return np.swapaxes(
        scipy.linalg.solve_triangular(cov_chol, identity, lower=True), -1, -2
    )


def _precision_cholesky_tied(covariance):
    """(d, d) covariance -> (d, d) upper factor U with U U^T = its inverse."""
    return _precision_cholesky_full(covariance[np.newaxis])[0]


def _precision_cholesky_vector(covariances):
    """Diagonal or spherical variances -> 1 / sqrt(variances), same shape."""
    if np.any(covariances <= 0.0):
        raise _ill_defined(covariances.dtype)
    return 1.0 / np.sqrt(covariances)


def precision_cholesky_from_precisions(precisions, covariance_type):
    """Upper Cholesky factor U of given precisions, with U U^T = precision.

    A flipped lower Cholesky factorisation of the flipped matrix gives the
    upper factor directly (as scikit-learn, see its issue #26415).
    """
    if covariance_type in ("diag", "spherical"):
        return np.sqrt(precisions)
    flipped = np.flip(precisions, axis=(-2, -1))
    return np.flip(scipy.linalg.cholesky(flipped, lower=True), axis=(-2, -1))


def _log_det_full(precisions_chol, n_features):
    """(K, d, d) -> (K,): log det U_k."""
    return np.sum(np.log(np.diagonal(precisions_chol, axis1=-2, axis2=-1)), axis=-1)


def _log_det_tied(precision_chol, n_features):
    """(d, d) -> scalar."""
    return np.sum(np.log(np.diagonal(precision_chol)))


def _log_det_diag(precisions_chol, n_features):
    """(K, d) -> (K,)."""
    return np.sum(np.log(precisions_chol), axis=1)


def _log_det_spherical(precisions_chol, n_features):
    """(K,) -> (K,)."""
    return n_features * np.log(precisions_chol)


# ------------------------------------------------------------ precisions P
def _precisions_full(precisions_chol):
    """(K, d, d) upper factors -> (K, d, d) precisions U U^T."""
    return precisions_chol @ np.swapaxes(precisions_chol, -1, -2)


def _precisions_vector(precisions_chol):
    """Diagonal or spherical factors -> precisions, same shape."""
    return precisions_chol**2


# ------------------------------------------------------- natural parameters
def _second_natural_full(precisions):
    """(K, d, d) precisions -> (K, p): coefficients of x_i x_j, i <= j."""
    rows, cols = np.triu_indices(precisions.shape[-1])
    # Off-diagonal products appear once in the upper triangle but twice in x^T P x.
    multiplicity = np.where(rows == cols, 1, 2).astype(precisions.dtype)
    return precisions[:, rows, cols] * multiplicity


def _second_natural_tied(precision):
    """No second-order coefficients: (0,)."""
    return np.empty(0, dtype=precision.dtype)


def _second_natural_diag(precisions):
    """(K, d) -> (K, d)."""
    return precisions


def _second_natural_spherical(precisions):
    """(K,) -> (K,), one coefficient per component."""
    return precisions


def _precision_times_means_full(precisions, means):
    """(K, d, d), (K, d) -> (K, d): P_k mu_k."""
    return np.einsum("kij,kj->ki", precisions, means)


def _precision_times_means_tied(precision, means):
    """(d, d), (K, d) -> (K, d)."""
    return means @ precision


def _precision_times_means_vector(precisions, means):
    """(K, d) or (K,), (K, d) -> (K, d)."""
    return precisions.reshape(len(means), -1) * means


# --------------------------------------------------------------- M-step
def _unpack_second(second_sums, nk, d):
    """(K, p) sums of x_i x_j (i <= j) -> (K, d, d) symmetric second moments / nk."""
    rows, cols = np.triu_indices(d)
    moments = np.empty((len(nk), d, d), dtype=second_sums.dtype)
    moments[:, rows, cols] = second_sums
    moments[:, cols, rows] = second_sums
    return moments / nk[:, np.newaxis, np.newaxis]


def _covariances_full(nk, means, second_sums, reg_covar, **_):
    """Covariances from second moments about the shift: (K, d, d).

    ``means`` and ``second_sums`` are taken about the shift.
    """
    d = means.shape[1]
    covariances = _unpack_second(second_sums, nk, d)
    covariances -= means[:, :, np.newaxis] * means[:, np.newaxis, :]
    covariances[:, np.arange(d), np.arange(d)] += reg_covar
    return covariances


def _covariances_tied(
    nk, means, second_sums, reg_covar, *, scatter, shift, total_weight
):
    """Shared covariance (d, d): (X^T X - sum_k nk mu_k mu_k^T) / sum_k nk.

    As scikit-learn, X^T X is the whole data's, whatever the responsibilities
    (at initialisation they need not sum to one per row). About the shift s,
    with ``scatter`` the data's and ``means`` d_k = mu_k - s, that is
    S - sum nk d d^T - f s^T - s f^T + (W - sum nk) s s^T, f = sum nk d_k:
    the last three terms vanish when each row's responsibilities sum to one.
    """
    total_nk = np.sum(nk)
    first_total = nk @ means
    covariance = (
        scatter
        - (nk * means.T) @ means
        - np.outer(first_total, shift)
        - np.outer(shift, first_total)
        + (total_weight - total_nk) * np.outer(shift, shift)
    ) / total_nk
    covariance.flat[:: len(covariance) + 1] += reg_covar
    return covariance


def _covariances_diag(nk, means, second_sums, reg_covar, **_):
    """(K, d)."""
    return second_sums / nk[:, np.newaxis] - means**2 + reg_covar


def _covariances_spherical(nk, means, second_sums, reg_covar, **_):
    """(K,): the mean of the diagonal variances."""
    d = means.shape[1]
    return (second_sums[:, 0] / nk - np.sum(means**2, axis=1)) / d + reg_covar


# --------------------------------------------------------------- sampling
def _cholesky_factors_full(covariances):
    """(K, d, d) -> (K, d, d) lower factors L with L L^T = covariance."""
    return scipy.linalg.cholesky(covariances, lower=True)


def _cholesky_factors_tied(covariance):
    return scipy.linalg.cholesky(covariance, lower=True)[np.newaxis]


def _std_diag(covariances):
    return np.sqrt(covariances)


def _std_spherical(covariances):
    return np.sqrt(covariances)[:, np.newaxis]


class CovarianceKernels(NamedTuple):
    """The kernels of one covariance type."""

    second: object  # chunk (d, n), out (p, n): fills out
    n_second: object  # d -> p
    precision_cholesky: object  # covariances -> upper factors U
    precisions: object  # U -> P
    log_det: object  # U, d -> (K,) log det U_k
    second_natural: object  # P -> (K, p)
    precision_times_means: object  # P, means -> (K, d)
    covariances: object  # nk, means, second sums, reg, **data -> covariances
    covariance_factors: object  # covariances -> L (K, d, d) or std (K, d) / (K, 1)
    n_covariance_parameters: object  # K, d -> int


KERNELS = {
    "full": CovarianceKernels(
        _second_full,
        lambda d: d * (d + 1) // 2,
        _precision_cholesky_full,
        _precisions_full,
        _log_det_full,
        _second_natural_full,
        _precision_times_means_full,
        _covariances_full,
        _cholesky_factors_full,
        lambda k, d: k * d * (d + 1) // 2,
    ),
    "tied": CovarianceKernels(
        _second_tied,
        lambda d: 0,
        _precision_cholesky_tied,
        _precisions_full,
        _log_det_tied,
        _second_natural_tied,
        _precision_times_means_tied,
        _covariances_tied,
        _cholesky_factors_tied,
        lambda k, d: d * (d + 1) // 2,
    ),
    "diag": CovarianceKernels(
        _second_diag,
        lambda d: d,
        _precision_cholesky_vector,
        _precisions_vector,
        _log_det_diag,
        _second_natural_diag,
        _precision_times_means_vector,
        _covariances_diag,
        _std_diag,
        lambda k, d: k * d,
    ),
    "spherical": CovarianceKernels(
        _second_spherical,
        lambda d: 1,
        _precision_cholesky_vector,
        _precisions_vector,
        _log_det_spherical,
        _second_natural_spherical,
        _precision_times_means_vector,
        _covariances_spherical,
        _std_spherical,
        lambda k, d: k,
    ),
}


def natural_parameters(kern, means, precisions_chol, log_weights):
    """Coefficients of the chunk features and the per-component constants.

    ``coef @ features + const[:, None]`` is log(weight_k N(x | mu_k, Sigma_k))
    for every covariance type except ``tied``, where the component-free term
    -1/2 x^T P x is left out (see :func:`tied_quadratic`). ``means`` are
    taken about the same shift as the features.

    Returns coef (K, p + d) and const (K,).
    """
    precisions = kern.precisions(precisions_chol)
    p_mu = kern.precision_times_means(precisions, means)
    # reshape: the tied model has no second-order coefficients, (K, 0).
    second_coef = kern.second_natural(precisions).reshape(len(means), -1)
    coef = np.hstack([-0.5 * second_coef, p_mu])
    const = (
        -0.5 * np.einsum("kd,kd->k", p_mu, means)
        + kern.log_det(precisions_chol, means.shape[1])
        + log_weights
        - 0.5 * means.shape[1] * math.log(2 * math.pi)
    )
    return coef, const


def tied_quadratic(XT, precision_chol):
    """-1/2 x^T P x of each sample for the tied model: (d, n), (d, d) -> (n,)."""
    y = precision_chol.T @ XT
    return -0.5 * np.einsum("ij,ij->j", y, y)


def log_normalize(weighted_log_prob):
    """Responsibilities and log-normaliser over components, in place.

    (K, n) -> (K, n), (n,). Overwrites ``weighted_log_prob`` with
    exp(wlp - logsumexp(wlp)), the normalisation taken over axis 0.
    """
    col_max = np.max(weighted_log_prob, axis=0)
    weighted_log_prob -= col_max
    resp = np.exp(weighted_log_prob, out=weighted_log_prob)
    total = np.sum(resp, axis=0)
    resp /= total
    return resp, np.log(total) + col_max
