"""Numerical kernels of factor analysis and probabilistic PCA.

Pure functions on arrays; the estimator lives in ``_factor_analysis.py``.

Notation: ``components`` W has shape (n_components, n_features),
``noise_variance`` psi has shape (n_features,), ``scatter`` S is the weighted
covariance (n_features, n_features) of the data about its weighted mean. The
model covariance is C = W^T W + diag(psi). With A = W diag(psi)^-1/2 and
M = I + A A^T (n_components, n_components), the matrix determinant lemma and
Woodbury's identity give log det C and C^-1 without factorising any
(n_features, n_features) matrix.

EM needs S only through its diagonal, products S B with thin B
(n_features, n_components), the top eigenpairs of D S D for a diagonal D and
the diagonal of (D S D + ridge I)^-1. :class:`_DenseScatter` holds S itself
(many samples: O(n_features^2) memory, products in O(n_features^2
n_components)); :class:`_ThinScatter` holds the centred, weight-scaled rows Y
with S = Y^T Y (few samples: O(n_samples n_features) memory, products in
O(n_samples n_features n_components)). The kernels below take either.
"""

from dataclasses import dataclass

import numpy as np
from scipy import linalg, optimize
from sklearn.utils.extmath import randomized_svd

from ._utils import column_reduce

LOG_2PI = np.log(2 * np.pi)
# The thin scatter's top eigenpairs come exactly from its Gram matrix, in
# O(n_rows^2 n_features), where n_rows <= EXACT_GRAM_ROWS (n_components + 10):
# below that, measured, it costs less than randomized_svd's sketch, whose
# products with thin matrices run at memory speed.
EXACT_GRAM_ROWS = 30
# Likewise the dense scatter's top eigenpairs come from LAPACK's exact eigh,
# for "randomized" too, up to EXACT_EIGEN_FEATURES (n_components + 10)
# features: there a whole eigh costs less than randomized_svd's products
# and Python overhead (about 5 ms a start at 25 features).
EXACT_EIGEN_FEATURES = 10
# The profile likelihood's exact Hessian costs O(n_features^2 |D| |K|) (see
# _profile_derivatives) and up to this many features of a dense scatter
# Newton steps with it cost less than L-BFGS-B's tens of evaluations.
NEWTON_MAX_FEATURES = 64
# With fewer rows per feature the profile has many local maxima, and
# L-BFGS-B's short steps found higher ones more often than Newton's long
# ones (measured: at 1 to 1.2 rows per feature Newton ended lower on 24 of
# 144 fits, higher on 17; at 2, lower on 5 of 72, higher on 14).
NEWTON_ROWS_PER_FEATURE = 2
# A scatter whose iterations read at most SMALL_SCATTER^2 numbers (a dense
# one of at most SMALL_SCATTER features) is "small": its iterations are many
# factorisations too small to share between BLAS threads, and waking the
# threads for each costs more than the work (1000 x 50, k=35 on 2 cores:
# 0.85 s a fit with two BLAS threads, 0.06 s with one). Up to 100 features
# an eigendecomposition gains nothing from a second thread even when they
# are awake; beyond a few hundred, threads pay on machines that wake them
# fast, hence the bound in between.
SMALL_SCATTER = 128


# ------------------------------------------------------- data statistics
def _moment_sums(X, sample_weight, shift):
    """Weighted sums of one chunk of rows about a fixed ``shift``.

    Summing about a point near the mean, rather than about zero, keeps the
    scatter accurate when the mean is large compared with the spread.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    sample_weight : ndarray of shape (n_samples,) or None
    shift : ndarray of shape (n_features,)

    Returns
    -------
    total_weight : float
    first : ndarray of shape (n_features,)
        Sum of w (x - shift).
    second : ndarray of shape (n_features, n_features)
        Sum of w (x - shift) (x - shift)^T.
    """
    shifted = X - shift
    if sample_weight is None:
        return float(X.shape[0]), column_reduce(np.add, shifted), shifted.T @ shifted
    weight = sample_weight.astype(np.float64)
    # `a.T @ a` on one array runs as a symmetric rank-k update (half a product).
    rooted = shifted * np.sqrt(weight)[:, np.newaxis]
    return weight.sum(), weight @ shifted, rooted.T @ rooted


def _centred_rows(X, sample_weight, shift):
    """Rows Y whose scatter is S = Y^T Y: the thin summary of few samples.

    Y = (x - mean) sqrt(weight / total weight) row by row, centred in two
    steps (about ``shift``, then about the mean of what is left), so that a
    mean large compared with the spread costs no precision.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    sample_weight : ndarray of shape (n_samples,) or None
    shift : ndarray of shape (n_features,), float64

    Returns
    -------
    total_weight : float
    mean : ndarray of shape (n_features,)
    rows : ndarray of shape (n_samples, n_features), float64
    """
    rows = X - shift
    if sample_weight is None:
        total_weight = float(len(X))
        root = np.full(len(X), np.sqrt(1.0 / total_weight))
    else:
        weight = sample_weight.astype(np.float64)
        total_weight = weight.sum()
        root = np.sqrt(weight / total_weight)
    offset = root**2 @ rows
    rows -= offset
    rows *= root[:, np.newaxis]
    return total_weight, shift + offset, rows


@dataclass(frozen=True)
class _CentredMoments:
    """Total weight, weighted mean and centred sum of squares
    sum w (x - mean)(x - mean)^T of some rows, and how many rows have
    positive weight: a value that adds.

    Two parts add by Chan et al.'s pairwise update, each centred on its own
    mean, so that merging batches or dask blocks keeps the precision of each
    part however far the data lie from the origin or drift between batches.
    """

    total_weight: float
    mean: np.ndarray
    sum_of_squares: np.ndarray
    n_rows: int

    @classmethod
    def from_sums(cls, total_weight, first, second, shift, n_rows):
        """From the sums of :func:`_moment_sums` about ``shift``."""
        if total_weight == 0:
            return cls(0.0, shift, np.zeros_like(second), 0)
        offset = first / total_weight
        return cls(
            total_weight, shift + offset, second - np.outer(first, offset), n_rows
        )

    def __add__(self, other):
        if other.total_weight == 0:
            return self
        if self.total_weight == 0:
            return other
        total = self.total_weight + other.total_weight
        delta = other.mean - self.mean
        share = other.total_weight / total
        return _CentredMoments(
            total,
            self.mean + share * delta,
            self.sum_of_squares
            + other.sum_of_squares
            + np.outer(delta, delta * (self.total_weight * share)),
            self.n_rows + other.n_rows,
        )

    @property
    def scatter(self):
        """The weighted covariance, sum of squares / total weight."""
        return self.sum_of_squares / self.total_weight


@dataclass(frozen=True)
class _Extremes:
    """Per factor, the projection of largest magnitude among some rows (see
    :func:`_extreme_projections`): a value that combines like a sum. On a tie
    the left part wins, so that combined in row order the first row does."""

    values: np.ndarray

    def __add__(self, other):
        larger = np.abs(other.values) > np.abs(self.values)
        return _Extremes(np.where(larger, other.values, self.values))


# ---------------------------------------------- solves with zero factors too
# SciPy before 1.11 or so refuses the empty systems of a model with no factors
# (n_components=0), which are well defined: their solutions are empty.
# The matrices here are small (n_components or n_rows square) and factorised
# several times per EM iteration: LAPACK is called directly, since SciPy's
# wrappers' checks cost more than the factorisations themselves.
def _cholesky(a):
    """The lower Cholesky factor of a symmetric positive-definite float64 a."""
    chol, info = linalg.lapack.dpotrf(a, lower=1, clean=1)
    if info:
        raise np.linalg.LinAlgError(
            f"{info}-th leading minor of the array is not positive definite"
        )
    return chol


def _cho_solve(chol, b):
    """C^-1 b for the lower Cholesky factor of C."""
    return linalg.lapack.dpotrs(chol, b, lower=1)[0] if len(chol) else np.zeros_like(b)


def _inverse_positive(a):
    """a^-1 for a small symmetric positive-definite a (n_components,
    n_components). Multiplying by it is a matrix product: with as many
    right-hand sides as features, LAPACK's triangular solves run ~6x slower."""
    return _cho_solve(_cholesky(a), np.eye(len(a))) if len(a) else a


def _solve_lower(chol, b):
    """L^-1 b for a lower-triangular L."""
    if not len(chol):
        return np.zeros_like(b)
    return linalg.lapack.dtrtrs(chol, b, lower=1)[0]


# ---------------------------------------------------------------- scatter
# Two ways to hold S, one protocol: ``diagonal`` (n_features,), ``S @ B`` for
# B (n_features, m), ``top_eigen`` and ``ridge_inverse_diagonal``.
class _DenseScatter:
    """The scatter S as a (n_features, n_features) matrix."""

    def __init__(self, matrix):
        self.matrix = matrix
        self.diagonal = np.diag(matrix).copy()
        self.small = len(matrix) <= SMALL_SCATTER

    def __matmul__(self, other):
        return self.matrix @ other

    def top_eigen(self, scale, n_components, svd_method="lapack", *args):
        """Top eigenpairs of diag(scale)^-1 S diag(scale)^-1 (of S if
        ``scale`` is None): values (n_components,), decreasing, and vectors
        (n_features, n_components). ``args``: iterated_power and random_state
        of "randomized"."""
        scaled = self.matrix if scale is None else self.matrix / np.outer(scale, scale)
        if len(scaled) <= EXACT_EIGEN_FEATURES * (n_components + 10):
            svd_method = "lapack"
        return _top_eigen(scaled, n_components, svd_method, *args)

    def ridge_inverse_diagonal(self, scale, ridge):
        """diag((diag(scale)^-1 S diag(scale)^-1 + ridge I)^-1), (n_features,)."""
        scaled = self.matrix / np.outer(scale, scale)
        scaled.flat[:: len(scaled) + 1] += ridge
        identity = np.eye(len(scaled))
        return np.diag(linalg.cho_solve(linalg.cho_factor(scaled), identity))


class _ThinScatter:
    """The scatter S = Y^T Y of rows Y (n_rows, n_features), never formed.

    Y holds the rows centred on the weighted mean, each times
    sqrt(weight / total weight). No method builds anything of size
    n_features^2.
    """

    def __init__(self, rows):
        self.rows = rows
        self.diagonal = np.einsum("ij,ij->j", rows, rows)
        self.small = rows.size <= SMALL_SCATTER**2

    def __matmul__(self, other):
        return self.rows.T @ (self.rows @ other)

    def top_eigen(self, scale, n_components, svd_method="lapack", *args):
        """Top eigenpairs of diag(scale)^-1 S diag(scale)^-1 (of S if
        ``scale`` is None): the squared singular values and right singular
        vectors of Y diag(scale)^-1.

        "lapack" finds them exactly from the (n_rows, n_rows) Gram matrix, in
        O(n_rows^2 n_features); so does "randomized" where that costs less
        (see ``EXACT_GRAM_ROWS``). Eigenvalues beyond the rank of Y are
        zero, with zero vectors.
        """
        scaled = self.rows if scale is None else self.rows / scale
        n_rows, n_features = scaled.shape
        n_found = min(n_components, n_rows)
        values = np.zeros(n_components)
        vectors = np.zeros((n_features, n_components))
        if n_found == 0:
            return values, vectors
        if svd_method == "randomized" and n_rows > EXACT_GRAM_ROWS * (n_found + 10):
            iterated_power, random_state = args
            _, singular, vectors_t = randomized_svd(
                scaled, n_found, n_iter=iterated_power, random_state=random_state
            )
            values[:n_found], vectors[:, :n_found] = singular**2, vectors_t.T
            return values, vectors
        found, sample_side = _top_eigen(scaled @ scaled.T, n_found)
        # Right singular vectors Y^T u / |Y^T u|: where the singular value is
        # at the rounding level that division amplifies noise; such
        # directions are left zero (the data do not span them).
        spanned = found > n_rows * np.finfo(np.float64).eps * found[0]
        found_vectors = scaled.T @ sample_side[:, spanned]
        values[:n_found][spanned] = found[spanned]
        vectors[:, :n_found][:, spanned] = found_vectors / np.linalg.norm(
            found_vectors, axis=0
        )
        return values, vectors

    def ridge_inverse_diagonal(self, scale, ridge):
        """diag((Z^T Z + ridge I)^-1) with Z = Y diag(scale)^-1, (n_features,):
        by Woodbury, (1 - diag(Z^T (ridge I + Z Z^T)^-1 Z)) / ridge, which
        factorises only an (n_rows, n_rows) matrix."""
        scaled = self.rows / scale
        gram = scaled @ scaled.T
        gram.flat[:: len(gram) + 1] += ridge
        solved = _cho_solve(_cholesky(gram), scaled)
        return (1.0 - np.einsum("ij,ij->j", scaled, solved)) / ridge


# -------------------------------------------------------------- the model
def _noise_whitened(components, noise_variance):
    """A = W diag(psi)^-1/2, shape (n_components, n_features), and the lower
    Cholesky factor of M = I + A A^T, shape (n_components, n_components)."""
    whitened = components / np.sqrt(noise_variance)
    gram = whitened @ whitened.T
    gram.flat[:: len(gram) + 1] += 1.0
    if not len(gram):  # no factors: old SciPy's LAPACK aborts on an empty matrix
        return whitened, gram
    return whitened, _cholesky(gram)


def _log_det_covariance(noise_variance, chol):
    """log det C = log det diag(psi) + log det M (matrix determinant lemma)."""
    # (Array methods: np.sum's dispatch costs 2 us a call, here many a fit.)
    return np.log(noise_variance).sum() + 2 * np.log(chol.diagonal()).sum()


def _posterior_statistics(components, noise_variance, scatter):
    """E-step from the scatter alone: one product S B, B (n_features, n_components).

    The posterior of z given x is N(beta (x - mean), M^-1) with
    beta = M^-1 W diag(psi)^-1, shape (n_components, n_features).

    Returns
    -------
    ezz : ndarray of shape (n_components, n_components)
        E[z z^T] averaged over the samples: M^-1 + beta S beta^T.
    beta_scatter : ndarray of shape (n_components, n_features)
        E[z] (x - mean)^T averaged over the samples: beta S.
    mean_log_likelihood : float
        -1/2 [d log 2 pi + log det C + tr(C^-1 S)] under the given parameters.
    """
    n_components, n_features = components.shape
    whitened, chol = _noise_whitened(components, noise_variance)
    scaled = whitened / np.sqrt(noise_variance)  # W diag(psi)^-1
    product = (scatter @ scaled.T).T  # W diag(psi)^-1 S
    gram = product @ scaled.T  # W diag(psi)^-1 S diag(psi)^-1 W^T
    inverse = _cho_solve(chol, np.eye(n_components))  # M^-1
    beta_scatter = inverse @ product
    ezz = inverse + inverse @ gram @ inverse
    # tr(C^-1 S) = tr(diag(psi)^-1 S) - tr(M^-1 gram)  (Woodbury)
    trace = (scatter.diagonal / noise_variance).sum() - (inverse * gram).sum()
    log_det = _log_det_covariance(noise_variance, chol)
    return ezz, beta_scatter, -0.5 * (n_features * LOG_2PI + log_det + trace)


def _maximize(ezz, beta_scatter, scatter_diagonal, isotropic, floor):
    """M-step: the parameters that maximise the expected complete log-likelihood.

    W = E[z z^T]^-1 beta S and psi = diag(S - W^T beta S) (Rubin & Thayer 1982;
    Bishop 2006, 12.69-12.70); for probabilistic PCA psi is the mean of that
    diagonal. Noise variances are floored at ``floor``, which is the maximum
    of the expected log-likelihood over psi >= floor, so the step stays
    monotone.

    Parameters
    ----------
    ezz : ndarray of shape (n_components, n_components)
    beta_scatter : ndarray of shape (n_components, n_features)
    scatter_diagonal : ndarray of shape (n_features,)
    isotropic : bool
    floor : ndarray of shape (n_features,)

    Returns
    -------
    components : ndarray of shape (n_components, n_features)
    noise_variance : ndarray of shape (n_features,)
    """
    components = _inverse_positive(ezz) @ beta_scatter
    noise_variance = scatter_diagonal - (components * beta_scatter).sum(axis=0)
    if isotropic:
        noise_variance = np.full_like(noise_variance, noise_variance.mean())
    return components, np.maximum(noise_variance, floor)


def _squarem_extrapolate(theta0, theta1, theta2, noise_lower, noise_upper):
    """SQUAREM extrapolation from two EM steps theta0 -> theta1 -> theta2.

    Varadhan & Roland (2008), scheme S3: with r = theta1 - theta0 and
    v = theta2 - theta1 - r, returns theta0 - 2 a r + a^2 v with
    a = -|r| / |v|, never shorter than the plain double step (a = -1, which
    gives theta2). Each theta is (components, noise_variance); noise variances
    are extrapolated in log space and clipped to [noise_lower, noise_upper].
    Loadings are measured in units of sqrt(noise_upper) (the features' standard
    deviations), so that the step, like EM, does not depend on the units of
    the features.

    Returns
    -------
    components : ndarray of shape (n_components, n_features)
    noise_variance : ndarray of shape (n_features,)
    """
    unit = np.sqrt(noise_upper)
    # Loadings and log noise apart, each step as one vector would be.
    (w0, w1, w2), (l0, l1, l2) = (
        [w / unit for w, _ in (theta0, theta1, theta2)],
        [np.log(psi) for _, psi in (theta0, theta1, theta2)],
    )
    r_w, r_l = w1 - w0, l1 - l0
    v_w, v_l = w2 - w1 - r_w, l2 - l1 - r_l
    norm_v = np.sqrt(np.vdot(v_w, v_w) + np.vdot(v_l, v_l))
    norm_r = np.sqrt(np.vdot(r_w, r_w) + np.vdot(r_l, r_l))
    alpha = min(-norm_r / norm_v, -1.0) if norm_v > 0 else -1.0
    components = (w0 - 2 * alpha * r_w + alpha**2 * v_w) * unit
    log_noise = l0 - 2 * alpha * r_l + alpha**2 * v_l
    log_noise = np.clip(log_noise, np.log(noise_lower), np.log(noise_upper))
    return components, np.exp(log_noise)


def _profile(noise_variance, scatter, n_components):
    """The best loadings for fixed noise, and the log-likelihood they give.

    With S* = diag(psi)^-1/2 S diag(psi)^-1/2 and its top eigenpairs
    (lambda_i, u_i), the loadings that maximise the likelihood for the noise
    psi are W = diag(max(lambda - 1, 0))^1/2 U^T diag(psi)^1/2 (Joreskog 1967;
    R's ``factanal``), and the mean log-likelihood they reach is

        -1/2 [d log 2 pi + sum log psi + tr S* + sum_i (log m_i + 1 - m_i)]

    with m_i = max(lambda_i, 1). Its gradient with respect to log psi_j is
    -1/2 [1 + sum_i u_ij^2 (m_i - 1) - S*_jj]. One exact eigensolve:
    O(n_features^3) on a dense scatter, O(n_rows^2 n_features) on a thin one.

    Parameters
    ----------
    noise_variance : ndarray of shape (n_features,)
    scatter : _DenseScatter or _ThinScatter
    n_components : int

    Returns
    -------
    mean_log_likelihood : float
    gradient : ndarray of shape (n_features,)
        With respect to log psi.
    components : ndarray of shape (n_components, n_features)
    """
    n_features = len(noise_variance)
    root = np.sqrt(noise_variance)
    values, vectors = scatter.top_eigen(root, n_components)
    scaled_diagonal = scatter.diagonal / noise_variance
    excess = np.maximum(values, 1.0) - 1.0
    log_likelihood = -0.5 * (
        n_features * LOG_2PI
        + np.sum(np.log(noise_variance))
        + np.sum(scaled_diagonal)
        + np.sum(np.log1p(excess) - excess)
    )
    gradient = -0.5 * (1.0 + vectors**2 @ excess - scaled_diagonal)
    return log_likelihood, gradient, _profiled_loadings(values, vectors, root)


def _profiled_loadings(values, vectors, root):
    """W = diag(max(lambda - 1, 0))^1/2 U^T diag(psi)^1/2 from the top
    eigenpairs (values, vectors) of diag(psi)^-1/2 S diag(psi)^-1/2 and
    root = psi^1/2: the best loadings for that noise (see :func:`_profile`)."""
    excess = np.maximum(values, 1.0) - 1.0
    return np.sqrt(excess)[:, np.newaxis] * vectors.T * root


def _profile_point(uniqueness, matrix, upper, n_components):
    """The profile at noise psi = uniqueness * upper, from one whole
    eigendecomposition of S* = diag(psi)^-1/2 S diag(psi)^-1/2 (``matrix`` is
    S, dense): (minus the mean log-likelihood, eigenvalues in decreasing
    order, their eigenvectors, which of them the loadings keep)."""
    noise = uniqueness * upper
    root = np.sqrt(noise)
    values, vectors, info = linalg.lapack.dsyevd(matrix / np.outer(root, root))
    if info:
        raise np.linalg.LinAlgError("the eigendecomposition did not converge")
    values, vectors = values[::-1], vectors[:, ::-1]
    kept = np.zeros(len(values), dtype=bool)
    kept[:n_components] = values[:n_components] > 1.0
    excess = values[kept] - 1.0
    minus_log_likelihood = 0.5 * (
        len(values) * LOG_2PI
        + np.log(noise).sum()
        + (matrix.diagonal() / noise).sum()
        + (np.log1p(excess) - excess).sum()
    )
    return minus_log_likelihood, values, vectors, kept


def _profile_derivatives(uniqueness, values, vectors, kept):
    """Gradient and Hessian of minus the profile log-likelihood with respect
    to the uniqueness u (psi = u * upper), from :func:`_profile_point`.

    With D the eigenpairs the loadings drop (lambda_i <= 1 or beyond
    n_components) and K those they keep, minus the log-likelihood is
    1/2 sum_D (lambda_i - log lambda_i - 1) up to a constant (Joreskog 1967).
    In theta = log psi, d lambda_i / d theta_j = -lambda_i u_ij^2 and the
    eigenvectors move by first-order perturbation, which gives

        gradient_j = 1/2 sum_D (1 - lambda_i) u_ij^2
        Hessian = 1/2 [(U_D Lambda_D U_D^T) o (U_D U_D^T)
                       - sum_{i in D, m in K} w_im (u_i o u_m)(u_i o u_m)^T]

    with w_im = (1 - lambda_i)(lambda_i + lambda_m) / (lambda_i - lambda_m)
    (o: the elementwise product; pairs within D cancel to the first term),
    then the chain rule to u. The cross term costs O(n_features^2 |D| |K|),
    summed in blocks of D.
    """
    dropped, kept_values = ~kept, values[kept]
    u_dropped, dropped_values = vectors[:, dropped], values[dropped]
    u_kept = vectors[:, kept]
    gradient = 0.5 * (u_dropped**2 @ (1.0 - dropped_values))
    hessian = ((u_dropped * dropped_values) @ u_dropped.T) * (u_dropped @ u_dropped.T)
    if len(kept_values):
        # lambda_i <= lambda_m for i in D, m in K; a tie has no derivative.
        gap = np.minimum(
            dropped_values[:, None] - kept_values,
            -np.finfo(np.float64).eps * kept_values[0],
        )
        weights = (
            (1.0 - dropped_values)[:, None]
            * (dropped_values[:, None] + kept_values)
            / gap
        )
        n_features, n_kept = u_kept.shape
        block = max(1, 2**18 // (n_features * n_kept))
        for start in range(0, len(dropped_values), block):
            rows = slice(start, start + block)
            pairs = (u_dropped[:, rows, None] * u_kept[:, None, :]).reshape(
                n_features, -1
            )
            hessian -= (pairs * weights[rows].ravel()) @ pairs.T
    hessian *= 0.5 / np.outer(uniqueness, uniqueness)
    hessian.flat[:: len(uniqueness) + 1] -= gradient / uniqueness**2
    return gradient / uniqueness, hessian


def _newton_direction(gradient, hessian, free):
    """Projected Newton direction: -H_FF^-1 g_F on the free variables (with
    |eigenvalues| where H_FF is not positive definite), the diagonally scaled
    gradient on the others (Bertsekas 1982); and whether H_FF is positive
    definite."""
    diagonal = hessian.diagonal()
    direction = -gradient / np.where(diagonal > 0, diagonal, 1.0)
    if free.any():
        sub = hessian[np.ix_(free, free)]
        chol, info = linalg.lapack.dpotrf(sub, lower=1, clean=1)
        if info == 0:
            direction[free] = -linalg.lapack.dpotrs(chol, gradient[free], lower=1)[0]
            return direction, True
        values, vectors = np.linalg.eigh(sub)
        floor = 1e-8 * np.abs(values).max()
        # Curvature down by more than rounding: not a maximum's neighbourhood
        # (a flat direction, as where loadings are not identified, is).
        convex = values[0] >= -floor
        values = np.abs(values)
        # No curvature at all (a flat profile): gradient steps.
        values = np.maximum(values, floor) if floor > 0 else np.ones_like(values)
        direction[free] = -vectors @ ((vectors.T @ gradient[free]) / values)
        return direction, convex
    return direction, True


def _maximize_profile(
    noise_variance, scatter, n_components, lower, upper, tol, max_iter, n_rows
):
    """Maximise the profile log-likelihood of :func:`_profile` over the noise.

    On the uniquenesses psi_j / scale_j within [lower, upper]: unlike log psi,
    this parametrisation keeps a finite gradient at a Heywood boundary, so
    the bound becomes active instead of being approached ever more slowly.
    On a dense scatter of at most ``NEWTON_MAX_FEATURES`` features and at
    least ``NEWTON_ROWS_PER_FEATURE`` times as many rows (``n_rows``, those
    of positive weight), projected Newton steps (:func:`_newton_profile`);
    otherwise L-BFGS-B, as R's ``factanal``. It stops when an iteration
    gains less than ``tol`` (mean log-likelihood per sample) or after
    ``max_iter`` iterations.

    Parameters
    ----------
    noise_variance : ndarray of shape (n_features,)
        The start.
    scatter : _DenseScatter or _ThinScatter
    n_components : int
    lower, upper : ndarray of shape (n_features,)
        Bounds of the noise variances; ``upper`` is also the scale.
    tol : float
    max_iter : int
    n_rows : int

    Returns
    -------
    noise_variance : ndarray of shape (n_features,)
    components : ndarray of shape (n_components, n_features)
        The best loadings for that noise (as :func:`_profile`'s).
    converged : bool
        Whether it met its tolerances (rather than ``max_iter``).
    """
    n_features = len(noise_variance)
    if (
        isinstance(scatter, _DenseScatter)
        and n_features <= NEWTON_MAX_FEATURES
        and n_rows >= NEWTON_ROWS_PER_FEATURE * n_features
    ):
        return _newton_profile(
            noise_variance, scatter, n_components, lower, upper, tol, max_iter
        )

    def negative(uniqueness):
        noise = np.clip(uniqueness * upper, lower, upper)
        log_likelihood, gradient, _ = _profile(noise, scatter, n_components)
        return -log_likelihood, -gradient / uniqueness

    start = np.clip(noise_variance, lower, upper) / upper
    value = _profile(start * upper, scatter, n_components)[0]
    result = optimize.minimize(
        negative,
        start,
        jac=True,
        method="L-BFGS-B",
        bounds=optimize.Bounds(lower / upper, 1.0),
        # L-BFGS-B's ftol is relative to |f|; tol is absolute.
        options={"ftol": tol / max(abs(value), 1.0), "gtol": tol, "maxiter": max_iter},
    )
    noise = np.clip(result.x * upper, lower, upper)
    return noise, _profile(noise, scatter, n_components)[2], bool(result.success)


def _newton_profile(noise_variance, scatter, n_components, lower, upper, tol, max_iter):
    """:func:`_maximize_profile` by projected Newton steps (Bertsekas 1982)
    with the exact Hessian (:func:`_profile_derivatives`) on the
    uniquenesses u = psi / upper, where L-BFGS-B needs tens of evaluations.

    Variables within a projected gradient's length of a bound that pushes
    them out are held there (a diagonally scaled gradient step); the others
    take the Newton step; an Armijo search along the projection arc makes
    every step raise the likelihood. It stops when a step gains less than
    ``tol`` where the free Hessian is positive definite (near a saddle small
    steps go on), or after ``max_iter`` steps.

    Parameters and returns are :func:`_maximize_profile`'s (``scatter`` a
    _DenseScatter; the loadings come from the last eigendecomposition).
    ``converged`` says whether it stopped at a maximum (a step gained less
    than ``tol``, or none gained, where the free Hessian is positive
    definite) rather than after ``max_iter`` steps or near a saddle.
    """
    matrix = scatter.matrix
    low = lower / upper
    uniqueness = np.clip(noise_variance, lower, upper) / upper
    value, *eigen = _profile_point(uniqueness, matrix, upper, n_components)
    converged = False
    for _ in range(max_iter):
        gradient, hessian = _profile_derivatives(uniqueness, *eigen)
        projected = uniqueness - np.clip(uniqueness - gradient, low, 1.0)
        margin = min(np.linalg.norm(projected), 1e-2)
        held = ((uniqueness <= low + margin) & (gradient > 0)) | (
            (uniqueness >= 1.0 - margin) & (gradient < 0)
        )
        direction, convex = _newton_direction(gradient, hessian, ~held)
        step = 1.0
        while step > 1e-8:
            trial = np.clip(uniqueness + step * direction, low, 1.0)
            trial_value, *trial_eigen = _profile_point(
                trial, matrix, upper, n_components
            )
            # Armijo: a fraction of the first-order decrease along the arc.
            change = trial - uniqueness
            expected = -gradient @ np.where(held, change, step * direction)
            if value - trial_value >= 1e-4 * expected:
                break
            step /= 2
        gain = value - trial_value
        if not gain > 0:  # no step raises it: a maximum, up to rounding
            converged = convex
            break
        uniqueness, value, eigen = trial, trial_value, trial_eigen
        # A small gain where the profile curves down in some direction is
        # a saddle's neighbourhood, not a maximum: the steps go on.
        if gain < tol and convex:
            converged = True
            break
    values, vectors, _ = eigen
    noise = uniqueness * upper
    components = _profiled_loadings(
        values[:n_components], vectors[:, :n_components], np.sqrt(noise)
    )
    return np.clip(noise, lower, upper), components, converged


def _whitened_rows(X, mean, noise_variance):
    """(x - mean) diag(psi)^-1/2 / s per row, and the scale s (n_samples,).

    s is 1 for ordinary rows; a row whose squares would overflow is first
    divided by its largest entry (or the mean's), so that it stays finite.
    """
    root = np.sqrt(noise_variance)
    scale = np.ones(len(X))
    with np.errstate(over="ignore", invalid="ignore"):
        centered = (X - mean) / root
        far = ~np.isfinite(np.einsum("ij,ij->i", centered, centered))
    if np.any(far):
        scale[far] = np.maximum(np.abs(X[far]).max(axis=1), np.abs(mean).max())
        rows = scale[far, np.newaxis]
        centered[far] = (X[far] / rows - mean / rows) / root
    return centered, scale


def _log_likelihood_samples(X, mean, components, noise_variance):
    """Log p(x) of each row of X (n_samples, n_features); shape (n_samples,).

    A row so far from the mean that its Mahalanobis distance overflows gets
    -inf, never NaN.
    """
    whitened, chol = _noise_whitened(components, noise_variance)
    centered, scale = _whitened_rows(X, mean, noise_variance)
    projected = _solve_lower(chol, whitened @ centered.T)
    # (x - mean)^T C^-1 (x - mean) by Woodbury, in the noise-whitened space.
    mahalanobis = np.sum(centered**2, axis=1) - np.sum(projected**2, axis=0)
    with np.errstate(over="ignore"):
        mahalanobis *= scale**2
    log_det = _log_det_covariance(noise_variance, chol)
    return -0.5 * (X.shape[1] * LOG_2PI + log_det + mahalanobis)


def _posterior_mean(X, mean, components, noise_variance):
    """E[z | x] = M^-1 W diag(psi)^-1 (x - mean), shape (n_samples, n_components).

    Rows too large for the intermediate products are rescaled, so that a
    finite row gives finite factors, or +-inf where they exceed the float
    range, never NaN.
    """
    whitened, chol = _noise_whitened(components, noise_variance)
    centered, scale = _whitened_rows(X, mean, noise_variance)
    factors = _cho_solve(chol, whitened @ centered.T).T
    with np.errstate(over="ignore"):
        return factors * scale[:, np.newaxis]


def _covariance(components, noise_variance):
    """C = W^T W + diag(psi), shape (n_features, n_features)."""
    covariance = components.T @ components
    covariance.flat[:: len(covariance) + 1] += noise_variance
    return covariance


def _precision(components, noise_variance):
    """C^-1 by the matrix inversion lemma, shape (n_features, n_features).

    C^-1 = diag(psi)^-1/2 (I - B^T B) diag(psi)^-1/2 with B = L^-1 A, L the
    Cholesky factor of M: only an (n_components, n_components) matrix is
    factorised.
    """
    whitened, chol = _noise_whitened(components, noise_variance)
    projected = _solve_lower(chol, whitened)
    precision = -(projected.T @ projected)
    precision.flat[:: len(precision) + 1] += 1.0
    inverse_root = 1.0 / np.sqrt(noise_variance)
    return precision * np.outer(inverse_root, inverse_root)


# ---------------------------------------------------------- start, finish
def _top_eigen(
    matrix, n_components, svd_method="lapack", iterated_power=0, random_state=None
):
    """Largest eigenvalues (n_components,), decreasing, and their eigenvectors
    (n_features, n_components) of a symmetric positive semi-definite matrix."""
    n_features = matrix.shape[0]
    if n_components == 0:
        return np.zeros(0), np.zeros((n_features, 0))
    if svd_method == "lapack":
        first = n_features - n_components
        if 5 * n_components < n_features:
            # A few eigenpairs: LAPACK's syevr finds just those, faster.
            values, vectors = linalg.eigh(
                matrix, subset_by_index=[first, n_features - 1]
            )
        else:
            # Many: the whole spectrum (syevd) costs less. (SciPy 1.9's syevr,
            # asked for every eigenvalue as a subset, writes past its buffers.)
            values, vectors = np.linalg.eigh(matrix)
            values, vectors = values[first:], vectors[:, first:]
        return values[::-1], vectors[:, ::-1]
    _, values, vectors_t = randomized_svd(
        matrix, n_components, n_iter=iterated_power, random_state=random_state
    )
    return values, vectors_t.T


def _principal_start(
    scatter,
    n_components,
    noise_variance,
    svd_method,
    iterated_power,
    random_state,
    floor,
):
    """Initial (components, noise_variance) from the scatter's top eigenvectors.

    With ``noise_variance`` None this is the probabilistic PCA maximum
    likelihood solution (Tipping & Bishop 1999): sigma^2 is the mean of the
    discarded eigenvalues of S (the smallest one when n_components equals
    n_features) and W = (L - sigma^2)^1/2 U^T. Otherwise the noise is
    ``noise_variance`` and W is the maximum for that noise: the same formula
    on diag(psi)^-1/2 S diag(psi)^-1/2 with sigma^2 = 1.

    Directions the data do not span get exactly zero loadings (EM keeps them
    at zero); spanned ones get at least a small loading, so that EM can grow
    them where the noise changes.

    ``scatter`` is a _DenseScatter or _ThinScatter; ``floor`` (n_features,)
    bounds the noise from below.

    Returns
    -------
    components : ndarray of shape (n_components, n_features)
    noise_variance : ndarray of shape (n_features,)
    """
    n_features = len(scatter.diagonal)
    scale = None if noise_variance is None else np.sqrt(noise_variance)
    values, vectors = scatter.top_eigen(
        scale, n_components, svd_method, iterated_power, random_state
    )
    if noise_variance is not None:
        noise = 1.0  # the given noise, in the scaled space
    else:
        scale = np.ones(n_features)
        if n_components < n_features:
            trace = np.sum(scatter.diagonal)
            noise = (trace - values.sum()) / (n_features - n_components)
        else:
            noise = values[-1]
        noise = max(noise, floor.max())
    rank_tol = n_features * np.finfo(np.float64).eps * max(values.max(initial=0), 0)
    squared = np.where(values > rank_tol, np.maximum(values - noise, 1e-6 * values), 0)
    components = np.sqrt(squared)[:, np.newaxis] * vectors.T * scale
    return components, np.maximum(noise * scale**2, floor)


def _smc_noise_variance(scatter, n_components, ridge=1e-6):
    """Classic starting noise of factor analysis, shape (n_features,).

    psi_j = (1 - k / 2d) (1 - R_j^2) var_j, with R_j^2 the squared multiple
    correlation of feature j with the others, read off the inverse
    correlation matrix: 1 - R_j^2 = 1 / (R^-1)_jj (Joreskog 1963; R's
    ``factanal``). It depends only on the correlations, so the fit does not
    depend on the units of the features, and it leads EM to better optima
    than an isotropic start on data with heterogeneous features. ``ridge`` is
    added to the correlation matrix's diagonal, so that collinear or
    constant features are handled (they get a near-zero noise). ``scatter``
    is a _DenseScatter or _ThinScatter.
    """
    variance = scatter.diagonal
    n_features = len(variance)
    std = np.where(variance > 0, np.sqrt(variance), 1.0)
    inverse_diagonal = scatter.ridge_inverse_diagonal(std, ridge)
    return (1 - n_components / (2 * n_features)) * variance / inverse_diagonal


def _canonical_orientation(components, noise_variance):
    """Rotate the loadings (an equivalent solution) to a reproducible form.

    Rows become orthogonal under diag(psi)^-1, ordered by decreasing norm
    there, as scikit-learn's FactorAnalysis reports them; their signs are
    left to :func:`_extreme_projections`. Rows the data do not need
    (numerically zero) become exactly zero.

    Returns
    -------
    components : ndarray of shape (n_components, n_features)
    """
    if not len(components):  # no factors (old SciPy refuses the empty SVD)
        return components
    root = np.sqrt(noise_variance)
    _, values, vectors_t = linalg.svd(components / root, full_matrices=False)
    values[values <= len(values) * np.finfo(np.float64).eps * values.max(initial=0)] = 0
    return values[:, np.newaxis] * vectors_t * root


def _extreme_projections(X, mean, directions, sample_weight):
    """Per direction, the projection of largest magnitude among the rows.

    Factor j's sample-side singular vector is proportional to
    (X - mean) diag(psi)^-1 w_j: scikit-learn's FactorAnalysis (randomized
    SVD, ``svd_flip`` on the sample side) makes its entry of largest
    magnitude positive. Rows of zero weight take no part, so that integer
    weights give the signs of repeated rows. Ties go to the first row, as
    ``svd_flip``'s argmax.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    mean : ndarray of shape (n_features,)
    directions : ndarray of shape (n_features, n_components)
        diag(psi)^-1 W^T.
    sample_weight : ndarray of shape (n_samples,) or None

    Returns
    -------
    extremes : ndarray of shape (n_components,)
    """
    projections = (X - mean) @ directions
    if sample_weight is not None:
        projections[sample_weight == 0] = 0.0
    rows = np.argmax(np.abs(projections), axis=0)
    return projections[rows, np.arange(projections.shape[1])]


def _orthogonal_rotation(components, method, tol=1e-6, max_iter=100):
    """Varimax or quartimax rotation of the loadings (Kaiser 1958).

    Maximises sum_j [sum_i l_ij^4 - gamma/p (sum_i l_ij^2)^2] over rotations,
    gamma = 1 for varimax and 0 for quartimax, by the classic SVD iteration.

    Parameters
    ----------
    components : ndarray of shape (n_components, n_features)
    method : {"varimax", "quartimax"}

    Returns
    -------
    rotated : ndarray of shape (n_components, n_features)
    """
    loadings = components.T
    n_features, n_components = loadings.shape
    gamma = 1.0 if method == "varimax" else 0.0
    rotation = np.eye(n_components)
    criterion = 0.0
    for _ in range(max_iter):
        rotated = loadings @ rotation
        column_power = np.sum(rotated**2, axis=0) / n_features
        u, s, vt = linalg.svd(
            loadings.T @ (rotated**3 - gamma * rotated * column_power)
        )
        rotation = u @ vt
        previous, criterion = criterion, np.sum(s)
        if previous != 0 and criterion < previous * (1 + tol):
            break
    return (loadings @ rotation).T


# -------------------------------------------------------- missing entries
# With NaN in X the missing entries are latent like z. A row's observed
# entries o have the marginal N(mean_o, W_o^T W_o + diag(psi_o)); its
# posterior of z needs only M_i = I + W_o diag(psi_o)^-1 W_o^T, a k x k
# matrix: O(d k^2) a row, and all rows at once are one matrix product.
def _zero_filled(values, missing):
    """``values`` with the ``missing`` entries set to 0, in place (np.where
    costs ~3x more)."""
    np.copyto(values, 0.0, where=missing)
    return values


def _sweep(matrices, n_pivots):
    """Gauss-Jordan sweeps of the first ``n_pivots`` pivots of symmetric
    matrices stacked last, (m, m, n), every matrix at once.

    With A the leading (n_pivots, n_pivots) block, positive definite, and
    [[A, B], [B^T, D]] the matrix, the result is [[-A^-1, A^-1 B],
    [B^T A^-1, D - B^T A^-1 B]], and the second value is log det A, (n,):
    the pivots are those of A's LDL^T factorisation. Without pivoting this
    is stable for positive-definite A; solving for A^-1 B by the sweep, not
    by multiplying with A^-1, keeps it accurate where B is large and A
    ill-conditioned. k steps of array operations over contiguous (m, n)
    slices: NumPy's batched LAPACK calls, one per matrix, cost more for
    k ~ 10.
    """
    swept = matrices.copy()
    log_det = np.zeros(matrices.shape[-1])
    for j in range(n_pivots):
        pivot = swept[j, j].copy()
        log_det += np.log(pivot)
        row = swept[j] / pivot
        column = swept[:, j].copy()
        swept -= column[:, np.newaxis, :] * row[np.newaxis, :, :]
        swept[j] = row
        swept[:, j] = column / pivot
        swept[j, j] = -1.0 / pivot
    return swept, log_det


def _observed_posterior(X, mean, components, noise_variance):
    """Posterior of z given each row's observed (non-NaN) entries.

    With o_i the observed entries of row i and
    M_i = I + sum_{j in o_i} w_j w_j^T / psi_j, the posterior is
    N(M_i^-1 b_i, M_i^-1), b_i = sum_{j in o_i} w_j (x_ij - mean_j) / psi_j.
    log p(x_o) follows from the determinant lemma and Woodbury's identity on
    the observed block. A row with nothing observed has the prior as
    posterior and log-likelihood 0.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), NaN where missing
    mean : ndarray of shape (n_features,)
    components : ndarray of shape (n_components, n_features)
    noise_variance : ndarray of shape (n_features,)

    Returns
    -------
    posterior_mean : ndarray of shape (n_samples, n_components)
    posterior_covariance : ndarray of shape (n_samples, n_components, n_components)
    log_likelihood : ndarray of shape (n_samples,)
        log p(x_o) of each row.
    """
    n_components, n_features = components.shape
    missing = np.isnan(X)
    centred = _zero_filled(X - mean, missing)
    weighted = ~missing / noise_variance  # 1/psi_j where observed, else 0
    # M_i for every row, rows last: one (k(k+1)/2, d) x (d, n) product for
    # the upper triangles (M is symmetric: half the flops of all k^2 entries).
    upper = np.triu_indices(n_components)
    outer = components[upper[0]] * components[upper[1]]
    # [[M_i, b_i], [b_i^T, 0]] for every row, rows last: sweeping M_i gives
    # M_i^-1, the posterior mean M_i^-1 b_i and b_i^T M_i^-1 b_i at once.
    k = n_components
    system = np.zeros((k + 1, k + 1, len(X)))
    system[upper] = outer @ weighted.T
    system[upper[::-1]] = system[upper]
    system[np.arange(k), np.arange(k)] += 1.0
    scaled = centred * weighted
    projected = components @ scaled.T  # b_i, (k, n)
    system[:k, k] = system[k, :k] = projected
    with np.errstate(over="ignore", invalid="ignore"):
        swept, log_det_m = _sweep(system, k)
        # (x_o - mean_o)^T C_oo^-1 (x_o - mean_o) by Woodbury: at most the
        # first term, so a row where that overflows is infinitely far (as
        # in _log_likelihood_samples: -inf, never NaN).
        first = np.einsum("ij,ij->i", scaled, centred)
        mahalanobis = first + swept[k, k]
    mahalanobis[np.isinf(first)] = np.inf
    covariance = -np.moveaxis(swept[:k, :k], -1, 0)  # (n, k, k)
    posterior_mean = swept[:k, k].T
    log_det = ~missing @ np.log(noise_variance) + log_det_m
    n_observed = n_features - missing.sum(axis=1)
    log_likelihood = -0.5 * (n_observed * LOG_2PI + log_det + mahalanobis)
    return posterior_mean, covariance, log_likelihood


def _symmetric_sums(coefficients, matrices):
    """coefficients^T @ matrices for symmetric matrices (n, m, m): shape
    (n_features, m * m), from their upper triangles only (half the flops).

    ``coefficients`` has shape (n, n_features).
    """
    size = matrices.shape[1]
    upper = np.triu_indices(size)
    sums = np.empty((coefficients.shape[1], size, size))
    sums[:, upper[0], upper[1]] = coefficients.T @ matrices[:, upper[0], upper[1]]
    sums[:, upper[1], upper[0]] = sums[:, upper[0], upper[1]]
    return sums.reshape(len(sums), -1)


def _missing_statistics(X, sample_weight, shift, components, offset, noise_variance):
    """Expected complete-data sums of one chunk of rows with NaN entries.

    The mean is a loading on a constant factor: with z~ = (z, 1) and
    W~ = [W; offset] (offset = mean - shift), feature j is regressed on z~.
    For observed x_ij, E[z~ x_ij] = E[z~] x_ij; for missing x_ij,
    E[z~ x_ij] = E[z~ z~^T] w~_j and E[x_ij^2] = w~_j^T E[z~ z~^T] w~_j + psi_j
    (x_ij given z and x_o is w~_j^T z~ plus independent noise), all under the
    current parameters. The sums of E[z~ z~^T] over the rows where feature j
    is missing, ``missing_second``, give both terms of the M-step.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), NaN where missing
    sample_weight : ndarray of shape (n_samples,) or None
    shift : ndarray of shape (n_features,)
        Fixed point the data are taken about (for precision).
    components : ndarray of shape (n_components, n_features)
    offset : ndarray of shape (n_features,)
        The current mean minus ``shift``.
    noise_variance : ndarray of shape (n_features,)

    Returns
    -------
    total_weight : float
    second : ndarray of shape (k + 1, k + 1)
        Sum of w E[z~ z~^T].
    observed_first : ndarray of shape (n_features, k + 1)
        Sum over observed entries of w (x_ij - shift_j) E[z~].
    missing_second : ndarray of shape (n_features, (k + 1)^2)
        Sum over the rows where feature j is missing of w E[z~ z~^T], flat.
    observed_squares : ndarray of shape (n_features,)
        Sum over observed entries of w (x_ij - shift_j)^2.
    log_likelihood : float
        Sum of w log p(x_o).
    """
    n_samples = len(X)
    shifted = X - shift
    weight = (
        np.ones(n_samples)
        if sample_weight is None
        else sample_weight.astype(np.float64)
    )
    factor_mean, factor_covariance, log_likelihood = _observed_posterior(
        shifted, offset, components, noise_variance
    )
    augmented = np.hstack([factor_mean, np.ones((n_samples, 1))])  # E[z~]
    second_rows = augmented[:, :, np.newaxis] * augmented[:, np.newaxis, :]
    second_rows[:, :-1, :-1] += factor_covariance  # E[z~ z~^T] per row
    missing = np.isnan(shifted)
    values = _zero_filled(shifted, missing)
    weighted_values = values * weight[:, np.newaxis]
    return (
        weight.sum(),
        np.einsum("n,nab->ab", weight, second_rows),
        weighted_values.T @ augmented,
        _symmetric_sums(missing * weight[:, np.newaxis], second_rows),
        np.einsum("ij,ij->j", weighted_values, values),
        weight @ log_likelihood,
    )


def _maximize_missing(statistics, components, offset, noise_variance, isotropic, floor):
    """M-step from the sums of :func:`_missing_statistics`.

    W~ = [W; offset] is the regression of the features on z~ = (z, 1):
    W~ = (sum E[z~ z~^T])^-1 B with B_j = sum E[z~ x_ij], and
    psi_j = (sum E[x_ij^2] - w~_j^T B_j) / total weight, floored (as in
    :func:`_maximize`). ``components``, ``offset`` and ``noise_variance`` are
    the parameters the statistics were computed under.

    Returns
    -------
    components : ndarray of shape (n_components, n_features)
    offset : ndarray of shape (n_features,)
    noise_variance : ndarray of shape (n_features,)
    """
    total_weight, second, observed_first, missing_second, observed_squares, _ = (
        statistics
    )
    n_features = len(noise_variance)
    size = len(second)
    missing_second = missing_second.reshape(n_features, size, size)
    old = np.vstack([components, offset])  # W~, (k + 1, n_features)
    cross = observed_first + np.einsum("jab,bj->ja", missing_second, old)  # B
    new = _inverse_positive(second) @ cross.T
    squares = (
        observed_squares
        + np.einsum("aj,jab,bj->j", old, missing_second, old)
        + noise_variance * missing_second[:, -1, -1]  # weight missing in j
    )
    noise = (squares - np.sum(new * cross.T, axis=0)) / total_weight
    if isotropic:
        noise = np.full_like(noise, noise.mean())
    return new[:-1], new[-1], np.maximum(noise, floor)


def _observed_mean(X, sample_weight):
    """Weighted mean of each column's observed entries, shape (n_features,)."""
    observed = ~np.isnan(X)
    weight = (
        observed
        if sample_weight is None
        else observed * sample_weight.astype(np.float64)[:, np.newaxis]
    )
    return np.sum(np.where(observed, X, 0.0) * weight, axis=0) / weight.sum(axis=0)
