"""Pure numerical kernels of the Gaussian mixture, batched over components.

Every computation runs in float64, whatever the input dtype, on rows taken
about a *reference point*: x = r + y. The log-density of component k is then

    log N(x | mu_k, P_k^-1) = -1/2 <P_k, y y^T> + y^T P_k delta - 1/2 delta^T P_k delta
                              + log det U_k - d/2 log 2 pi,     delta = mu_k - r

(P_k = U_k U_k^T, U_k upper triangular). The first term is linear in the
second-order features of y, so one matrix product ``A2 @ second(y)`` gives it
for every component at once; the rest is one small product per reference.
The statistics the M-step needs are sums over rows about the same references,
which add up across chunks, and turn into moments centred on each component's
new mean at the end (:meth:`Covariance.centred_scatter`).

Which reference? Rounding errors grow with |y|^2 ||P_k||. For ordinary data a
single reference, the data mean, keeps them far below anything that matters
(:func:`needs_nearest_reference` bounds them): the fast path. When a
component lies far from the data mean compared with its spread, each row is
taken about the component mean nearest to it instead, so y is of the order
of the row's own component spread and the error grows at most linearly in the
distance between components, as in scikit-learn, which centres every
component on its own mean but pays for it with one pass per component.

Shapes: n rows, d features, K components, R references, p second-order
columns of one covariance type. A chunk's features are (p, n) and (d, n):
samples as columns (their memory layout is the covariance type's, see
:func:`rows_about_shift`).
"""

import math
from dataclasses import dataclass
from functools import cache
from typing import NamedTuple

import numpy as np
from numpy.lib.stride_tricks import as_strided
from scipy.linalg.lapack import dtrtri

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
# exp(x) is exactly 0 in float64 below this (below log of half the smallest
# subnormal, -745.13).
EXP_UNDERFLOW = -746.0
# The fast path is taken while its rounding error bound stays below this, in
# nats per sample: far below any tolerance, and below scikit-learn's own error.
FAST_PATH_ERROR = 1e-9


def collapse_floor(extent):
    """Variances at most this are rounding residue of a collapsed component.

    Rows that collapsed onto one point differ, about their mean, by rounding
    of order eps * extent (the data's largest magnitude): the data themselves
    cannot resolve a smaller spread.
    """
    return (10 * np.finfo(np.float64).eps * extent) ** 2


def ill_defined(dtype):
    return ValueError(
        ILL_DEFINED_COVARIANCE + (FLOAT32_HINT if dtype == np.float32 else "")
    )


def _cholesky_lower(matrices, dtype, floor):
    """Lower Cholesky factors of a (..., d, d) stack.

    Ill-defined error if a matrix is not positive definite, or if a variance
    left after the earlier features are explained is at most ``floor``: the
    rounding level of a collapsed component.
    """
    try:
        lower = np.linalg.cholesky(matrices)
    except np.linalg.LinAlgError:
        raise ill_defined(dtype) from None
    if np.any(np.diagonal(lower, axis1=-2, axis2=-1) ** 2 <= floor):
        raise ill_defined(dtype)
    return lower


def _inverse_transposed(lower):
    """(K, d, d) lower factors L -> upper U = L^-T, so U U^T = (L L^T)^-1.

    LAPACK's triangular inverse, one call per component: scipy's
    solve_triangular costs milliseconds a call in its checks and dispatch,
    which K calls an iteration would add to every fit.
    """
    return np.stack([dtrtri(L, lower=1)[0].T for L in lower])


class Covariance:
    """The protocol of one covariance structure; the classes below fill it in.

    Precision factors ``U`` and precisions ``P`` have the shape of the
    covariances: (K, d, d) full, (d, d) tied, (K, d) diag, (K,) spherical.
    """

    # The layout of a chunk's features (see rows_about_shift).
    feature_layout = "rows"

    @staticmethod
    def n_second(d):
        """Number of second-order feature rows p."""
        raise NotImplementedError

    @staticmethod
    def second(YT, out):
        """Second-order features of a (d, n) chunk into out (p, n)."""

    @staticmethod
    def precision_cholesky(covariances, dtype, floor=0.0):
        """Covariances -> upper factors U of their inverses.

        A variance at most ``floor`` (the rounding level of a collapsed
        component) is an error, as a non-positive one.
        """
        raise NotImplementedError

    @staticmethod
    def precisions(U):
        """U -> U U^T (elementwise square for diag and spherical)."""
        return U**2

    @staticmethod
    def log_det(U, d):
        """(K,) log det U_k."""
        raise NotImplementedError

    @staticmethod
    def second_coef(P, K):
        """(K, p) coefficients of the second-order features in <P_k, y y^T>."""
        raise NotImplementedError

    @staticmethod
    def times(P, V):
        """(K, d) rows P_k v_k for V (K, d)."""
        raise NotImplementedError

    @staticmethod
    def squared_norm(U, Y):
        """||U^T y||^2 of each column of Y (d, n), for the tied model only."""
        raise NotImplementedError

    @staticmethod
    def centred_scatter(second, first, counts, offsets):
        """Scatter of each component about its own mean, in the covariance shape.

        ``second`` (K, p): sums of r second(y); ``first`` (R, K, d): sums of
        r y per reference; ``counts`` (R, K): sums of r per reference;
        ``offsets`` (R, K, d): reference minus the component's mean. Since
        x - mean = y + offset, the scatter is the sum over references of
        second + first (x) offset + offset (x) first + count offset (x) offset.
        """
        raise NotImplementedError

    @staticmethod
    def outer(c, V):
        """Sum of c_k v_k v_k^T per component, in the covariance shape: (K,), (K, d)."""
        raise NotImplementedError

    @staticmethod
    def factors(covariances):
        """Covariances -> lower factors L (K or 1, d, d), or std (K, d) / (K, 1)."""
        raise NotImplementedError

    @staticmethod
    def n_parameters(K, d):
        raise NotImplementedError


@cache
def feature_pairs(d):
    """(rows, cols): the pairs (i, j) of the full model's second-order features.

    Every unordered pair once: (i, i + o mod d) for the offsets o < (d + 1) // 2
    and every i, then, for even d, (i, i + d/2) for i < d/2.
    """
    blocks = (d + 1) // 2
    rows = np.tile(np.arange(d), blocks)
    cols = (rows + np.repeat(np.arange(blocks), d)) % d
    if d % 2 == 0:
        rows = np.r_[rows, np.arange(d // 2)]
        cols = np.r_[cols, np.arange(d // 2, d)]
    rows.flags.writeable = cols.flags.writeable = False  # shared by the cache
    return rows, cols


class Full(Covariance):
    feature_layout = "columns"

    @staticmethod
    def n_second(d):
        return d * (d + 1) // 2

    @staticmethod
    def second(YT, out):
        """y_i y_j over the pairs of :func:`feature_pairs`, in that order.

        Block o holds y_i y_(i+o mod d) for every i: one product of Y with a
        strided view of Y shifted by o rows, for every block at once. One
        numpy call instead of one per row keeps the GIL free for the other
        threads' chunks, and runs faster (2.6 against 3.5 ms at d=50 and 2048
        rows).
        """
        d, n = YT.shape
        blocks = (d + 1) // 2
        doubled = np.concatenate([YT, YT[: blocks - 1]])
        row, column = doubled.strides
        shifted = as_strided(
            doubled, (blocks, d, n), (row, row, column), writeable=False
        )
        out_row, out_column = out.strides
        out_blocks = as_strided(out, (blocks, d, n), (d * out_row, out_row, out_column))
        np.multiply(YT, shifted, out=out_blocks)
        if d % 2 == 0:
            np.multiply(YT[: d // 2], YT[d // 2 :], out=out[blocks * d :])

    @staticmethod
    def precision_cholesky(covariances, dtype, floor=0.0):
        return _inverse_transposed(_cholesky_lower(covariances, dtype, floor))

    @staticmethod
    def precisions(U):
        return U @ np.swapaxes(U, -1, -2)

    @staticmethod
    def log_det(U, d):
        return np.sum(np.log(np.diagonal(U, axis1=-2, axis2=-1)), axis=-1)

    @staticmethod
    def second_coef(P, K):
        rows, cols = feature_pairs(P.shape[-1])
        # Each off-diagonal pair is one feature, but appears twice in y^T P y.
        return P[:, rows, cols] * np.where(rows == cols, 1.0, 2.0)

    @staticmethod
    def times(P, V):
        return np.einsum("kij,kj->ki", P, V)

    @staticmethod
    def centred_scatter(second, first, counts, offsets):
        K, d = first.shape[1:]
        rows, cols = feature_pairs(d)
        scatter = np.empty((K, d, d))
        scatter[:, rows, cols] = second
        scatter[:, cols, rows] = second
        cross = np.einsum("rkd,rke->kde", first, offsets)
        scatter += cross + np.swapaxes(cross, 1, 2)
        scatter += np.einsum("rk,rkd,rke->kde", counts, offsets, offsets)
        return scatter

    @staticmethod
    def outer(c, V):
        return c[:, None, None] * V[:, :, None] * V[:, None, :]

    @staticmethod
    def factors(covariances):
        return np.linalg.cholesky(covariances)

    @staticmethod
    def n_parameters(K, d):
        return K * d * (d + 1) // 2


class Tied(Full):
    """One shared covariance: no component-specific second-order term.

    The shared -1/2 y^T P y changes no responsibility; the log-likelihood
    gets it from the scatter of the rows about their references.
    """

    feature_layout = "rows"

    @staticmethod
    def n_second(d):
        return 0

    @staticmethod
    def second(YT, out):
        pass

    @staticmethod
    def precision_cholesky(covariance, dtype, floor=0.0):
        return Full.precision_cholesky(covariance[np.newaxis], dtype, floor)[0]

    @staticmethod
    def log_det(U, d):
        return np.sum(np.log(np.diagonal(U)))

    @staticmethod
    def second_coef(P, K):
        return np.empty((K, 0))

    @staticmethod
    def times(P, V):
        return V @ P

    @staticmethod
    def squared_norm(U, Y):
        Z = U.T @ Y
        return np.einsum("ij,ij->j", Z, Z)

    @staticmethod
    def centred_scatter(second, first, counts, offsets):
        """The pooled cross and offset terms of every component, (d, d).

        The rows' own scatter about their references is added by the caller.
        """
        cross = np.einsum("rkd,rke->de", first, offsets)
        return cross + cross.T + np.einsum("rk,rkd,rke->de", counts, offsets, offsets)

    @staticmethod
    def outer(c, V):
        return (c * V.T) @ V  # pooled over components

    @staticmethod
    def factors(covariance):
        return np.linalg.cholesky(covariance)[np.newaxis]

    @staticmethod
    def n_parameters(K, d):
        return d * (d + 1) // 2


class Diag(Covariance):
    feature_layout = "separate"

    @staticmethod
    def n_second(d):
        return d

    @staticmethod
    def second(YT, out):
        np.square(YT, out=out)

    @staticmethod
    def precision_cholesky(covariances, dtype, floor=0.0):
        if np.any(covariances <= max(floor, 0.0)):
            raise ill_defined(dtype)
        return 1.0 / np.sqrt(covariances)

    @staticmethod
    def log_det(U, d):
        return np.sum(np.log(U), axis=1)

    @staticmethod
    def second_coef(P, K):
        return P

    @staticmethod
    def times(P, V):
        return P * V

    @staticmethod
    def centred_scatter(second, first, counts, offsets):
        return (
            second
            + 2 * np.einsum("rkd,rkd->kd", first, offsets)
            + np.einsum("rk,rkd->kd", counts, offsets**2)
        )

    @staticmethod
    def outer(c, V):
        return c[:, None] * V**2

    @staticmethod
    def factors(covariances):
        return np.sqrt(covariances)

    @staticmethod
    def n_parameters(K, d):
        return K * d


class Spherical(Diag):
    feature_layout = "rows"

    @staticmethod
    def n_second(d):
        return 1

    @staticmethod
    def second(YT, out):
        np.einsum("ij,ij->j", YT, YT, out=out[0])

    @staticmethod
    def log_det(U, d):
        return d * np.log(U)

    @staticmethod
    def second_coef(P, K):
        return P[:, np.newaxis]

    @staticmethod
    def times(P, V):
        return P[:, np.newaxis] * V

    @staticmethod
    def centred_scatter(second, first, counts, offsets):
        """The trace of each component's scatter: (K,)."""
        return (
            second[:, 0]
            + 2 * np.einsum("rkd,rkd->k", first, offsets)
            + np.einsum("rk,rkd->k", counts, offsets**2)
        )

    @staticmethod
    def outer(c, V):
        return c * np.sum(V**2, axis=1)

    @staticmethod
    def factors(covariances):
        return np.sqrt(covariances)[:, np.newaxis]

    @staticmethod
    def n_parameters(K, d):
        return K


COVARIANCES = {"full": Full, "tied": Tied, "diag": Diag, "spherical": Spherical}


def precision_cholesky_from_precisions(precisions, covariance_type):
    """Upper Cholesky factor U of given precisions, with U U^T = precision.

    A flipped lower Cholesky factorisation of the flipped matrix gives the
    upper factor directly (as scikit-learn, see its issue #26415).
    """
    if covariance_type in ("diag", "spherical"):
        return np.sqrt(precisions)
    flipped = np.flip(precisions, axis=(-2, -1))
    try:
        lower = np.linalg.cholesky(flipped)
    except np.linalg.LinAlgError:
        raise ValueError(
            f"'{covariance_type} precision' should be symmetric, positive-definite"
        ) from None
    return np.flip(lower, axis=(-2, -1))


# -------------------------------------------------------------- references
def needs_nearest_reference(cov, U, means, shift, radius):
    """Whether rows must be taken about their nearest component mean.

    About the single shift, the features' rounding error is at most about
    eps d ||P_k||_F (radius + |mu_k - s|)^2 nats, ``radius`` the largest
    distance of a row from the shift; the fast path is kept while that bound
    is below FAST_PATH_ERROR.
    """
    P = cov.precisions(U)
    d = means.shape[1]
    if cov is Spherical:
        size = P * math.sqrt(d)
    elif cov is Tied:
        size = np.linalg.norm(P)
    else:
        size = np.sqrt(np.sum(P.reshape(len(P), -1) ** 2, axis=1))
    reach = radius + np.linalg.norm(means - shift, axis=1)
    bound = np.finfo(np.float64).eps * d * np.max(size * reach**2)
    return not bound < FAST_PATH_ERROR  # a NaN bound takes the careful path


class Model:
    """What the E-step needs of the current parameters, all in float64.

    ``refs`` (R, d) are the references about the shift: the shift itself (R
    = 1) on the fast path, else the component means. ``A2`` (K, p) holds the
    second-order coefficients, ``lin`` (R, K, d) the linear ones P_k delta and
    ``const`` (R, K) the constants of each reference.
    """

    def __init__(self, cov, weights, means, U, shift, nearest):
        self.cov, self.U, self.shift = cov, U, shift
        K, d = means.shape
        P = cov.precisions(U)
        self.refs = means - shift if nearest else np.zeros((1, d))
        delta = (means - shift)[np.newaxis] - self.refs[:, np.newaxis]
        self.lin = np.stack([cov.times(P, dk) for dk in delta])
        self.A2 = -0.5 * cov.second_coef(P, K)
        self.coef = np.hstack([self.A2, self.lin[0]])  # the fast path's, (K, p + d)
        self.const = (
            -0.5 * np.einsum("rkd,rkd->rk", self.lin, delta)
            + cov.log_det(U, d)
            + np.log(weights)
            - 0.5 * d * math.log(2 * math.pi)
        )


class Features(NamedTuple):
    """A chunk's features, samples as columns: ``second`` (p, n), the
    second-order features of ``y`` (d, n), the rows about their references;
    ``stacked`` (p + d, n) is both in one matrix where they share a buffer,
    so that one product covers both (None where they do not)."""

    second: np.ndarray
    y: np.ndarray
    stacked: np.ndarray | None


def rows_about_shift(cov, X, shift):
    """:class:`Features` of a chunk of rows X (n, d), with y = x - shift, to
    be completed by :func:`chunk_features`.

    The layout is the covariance type's ``feature_layout``:

    - "columns" (full): one C-ordered (p + d, n) buffer, so that the products
      of feature pairs read contiguous rows.
    - "rows" (tied, spherical): the transpose of one C-ordered (n, p + d)
      buffer, which takes x - shift without a transposing copy (3-13% faster
      fits than "columns").
    - "separate" (diag): the transposes of two C-ordered arrays, (n, p) and
      (n, d), so that x - shift and its squares are taken on contiguous rows
      (2 products instead of one, yet fits 2-13% faster than "rows").
    """
    n_samples, n_features = X.shape
    p = cov.n_second(n_features)
    if cov.feature_layout == "separate":
        buffer = np.empty(n_samples * (p + n_features))
        y = buffer[n_samples * p :].reshape(n_samples, n_features)
        np.subtract(X, shift, out=y)
        second = buffer[: n_samples * p].reshape(n_samples, p)
        return Features(second.T, y.T, None)
    if cov.feature_layout == "columns":
        F = np.empty((p + n_features, n_samples))
        np.subtract(X.T, shift[:, np.newaxis], out=F[p:])
    else:
        F = np.empty((n_samples, p + n_features)).T
        np.subtract(X, shift, out=F[p:].T)
    return Features(F[:p], F[p:], F)


def chunk_features(cov, features, refs):
    """A chunk's features about its references, grouped by reference.

    ``features`` from :func:`rows_about_shift` are completed in place, with
    y = x - shift - ref, in a new column order. Returns them; ``order`` (n,),
    which maps the new columns to the rows (None: the identity, with one
    reference); and the column slices of each reference.
    """
    Y = features.y
    n_samples = Y.shape[1]
    order, groups = None, [slice(0, n_samples)]
    if len(refs) > 1:
        # The nearest reference in Euclidean distance: any near one keeps y small.
        nearest = np.argmax(refs @ Y - 0.5 * np.sum(refs**2, axis=1)[:, None], axis=0)
        order = np.argsort(nearest, kind="stable")
        Y[:] = Y[:, order] - refs.T[:, nearest[order]]
        ends = np.cumsum(np.bincount(nearest, minlength=len(refs)))
        groups = [slice(a, b) for a, b in zip(np.r_[0, ends[:-1]], ends, strict=True)]
    elif np.any(refs[0]):
        Y -= refs[0][:, np.newaxis]
    cov.second(Y, features.second)
    return features, order, groups


def log_prob(model, features, groups):
    """log(weight_k N(x | mu_k, Sigma_k)) of every column of the features: (K, n).

    For the tied model the component-free -1/2 y^T P y is left out.
    """
    if len(groups) == 1 and features.stacked is not None:
        return model.coef @ features.stacked + model.const[0][:, np.newaxis]
    out = model.A2 @ features.second
    for r, cols in enumerate(groups):
        block = out[:, cols]
        block += model.lin[r] @ features.y[:, cols]
        block += model.const[r][:, np.newaxis]
    return out


def _exp_in_place(values):
    """exp of a (K, n) array, in place.

    Components far from their rows: exp is exactly 0 there, but libm takes
    a slow path to say so (about 32 against 12 ns a value), and a masked
    exp costs about 12% more a value: skip them where more than a tenth
    underflow, judged from every 16th sample (the result is the same either
    way).
    """
    sample = values[:, ::16]
    if 10 * np.count_nonzero(sample < EXP_UNDERFLOW) > sample.size:
        keep = values >= EXP_UNDERFLOW
        np.exp(values, out=values, where=keep)
        np.copyto(values, 0.0, where=np.logical_not(keep, out=keep))
        return values
    return np.exp(values, out=values)


def log_normalize(weighted_log_prob):
    """Responsibilities and log-normaliser over components, in place.

    (K, n) -> (K, n), (n,). Overwrites ``weighted_log_prob`` with
    exp(wlp - logsumexp(wlp)), the normalisation taken over axis 0.
    """
    col_max = np.max(weighted_log_prob, axis=0)
    weighted_log_prob -= col_max
    resp = _exp_in_place(weighted_log_prob)
    total = np.sum(resp, axis=0)
    resp /= total
    return resp, np.log(total) + col_max


def log_sum_exp(weighted_log_prob):
    """log sum_k exp(wlp) over axis 0 of (K, n), overwriting ``wlp``: (n,).

    As scipy's logsumexp, at a third of its cost a chunk (its general
    checks), with the same exp as :func:`log_normalize`. A column of -inf (a
    row too far from every component) gives -inf.
    """
    col_max = np.max(weighted_log_prob, axis=0)
    col_max[~np.isfinite(col_max)] = 0.0
    weighted_log_prob -= col_max
    total = np.sum(_exp_in_place(weighted_log_prob), axis=0)
    with np.errstate(divide="ignore"):
        return np.log(total) + col_max


def resp_statistics(features, groups, resp):
    """Sums of a chunk's features for weighted responsibilities ``resp`` (K, n).

    Returns counts (R, K), first (R, K, d) and second (K, p) about the
    references; see :meth:`Covariance.centred_scatter`.
    """
    second, Y = features.second, features.y
    if len(groups) == 1 and features.stacked is not None:
        sums = resp @ features.stacked.T
        p = len(second)
        return resp.sum(axis=1)[np.newaxis], sums[np.newaxis, :, p:], sums[:, :p]
    counts = np.stack([resp[:, cols].sum(axis=1) for cols in groups])
    first = np.stack([resp[:, cols] @ Y[:, cols].T for cols in groups])
    return counts, first, resp @ second.T


@dataclass(frozen=True)
class MixtureStatistics:
    """The weighted sufficient statistics of a mixture: a small value that adds.

    ``weight`` (K,) sums w r; ``means`` (K, d) are the weighted means of the
    components (0 where the weight is 0); ``scatter`` is the weighted scatter
    of each component about its own mean, in the covariance type's shape
    ((K, d, d) full, (d, d) pooled over components for tied, (K, d) diag, (K,)
    the trace for spherical); ``log_likelihood`` sums w log p(x) (0 when the
    responsibilities were given); ``total_weight`` sums w; ``extent`` is the
    largest |x|. Centred moments of two blocks combine exactly by the pairwise
    update of Chan et al., so adding blocks never loses precision, and scaling
    by a positive number scales the weights (online EM's running averages).
    """

    cov: type  # the Covariance class: the shape of the scatter
    weight: np.ndarray
    means: np.ndarray
    scatter: np.ndarray
    log_likelihood: float
    total_weight: float
    extent: float

    def __add__(self, other):
        weight = self.weight + other.weight
        share = np.divide(
            other.weight, weight, out=np.zeros_like(weight), where=weight > 0
        )
        delta = other.means - self.means
        # Chan et al.: the scatter of the union gains w_a w_b / w delta delta^T.
        between = self.cov.outer(self.weight * share, delta)
        return MixtureStatistics(
            self.cov,
            weight,
            self.means + share[:, None] * delta,
            self.scatter + other.scatter + between,
            self.log_likelihood + other.log_likelihood,
            self.total_weight + other.total_weight,
            max(self.extent, other.extent),
        )

    def __mul__(self, factor):
        return MixtureStatistics(
            self.cov,
            self.weight * factor,
            self.means,
            self.scatter * factor,
            self.log_likelihood * factor,
            self.total_weight * factor,
            self.extent,
        )

    __rmul__ = __mul__


def mixture_statistics(
    cov,
    shift,
    refs,
    counts,
    first,
    second,
    rows_scatter,
    log_likelihood,
    total_weight,
    extent,
):
    """:class:`MixtureStatistics` from sums about references (gk.resp_statistics).

    ``rows_scatter`` is the tied model's sum of rho y y^T about the references.
    """
    weight = counts.sum(axis=0)
    first_about_shift = np.sum(first + counts[..., None] * refs[:, None], axis=0)
    centre = np.divide(
        first_about_shift,
        weight[:, None],
        out=np.zeros_like(first_about_shift),
        where=weight[:, None] > 0,
    )
    scatter = cov.centred_scatter(second, first, counts, refs[:, None] - centre)
    if cov is Tied:
        scatter = scatter + rows_scatter
    return MixtureStatistics(
        cov,
        weight,
        shift + centre,
        scatter,
        float(log_likelihood),
        float(total_weight),
        float(extent),
    )


# ---------------------------------------------------------- missing entries
# With NaN as missing entries (Ghahramani and Jordan, 1994), component k's
# density of a row is its marginal on the observed entries o. In precision
# form (P = Sigma^-1, y = x - mu_k with the m missing entries set to 0, so
# that v = (P y)_m = P_mo y_o):
#
#     y_o^T Sigma_oo^-1 y_o = y^T P y - v^T P_mm^-1 v
#     log det Sigma_oo     = log det P_mm - log det P
#     E[x_m | x_o, k]      = mu_m - P_mm^-1 v,   Cov[x_m | x_o, k] = P_mm^-1
#
# so a row needs one m x m inverse per component, m the number it misses.
# Deviations are taken about each component's own mean: the rounding error
# then grows with a row's distance from the components that explain it only.


def spd_inverse(A, overwrite=False):
    """Inverses and log-determinants of symmetric positive-definite matrices.

    A (m, m, *batch) -> (m, m, *batch), (*batch): the batch is last, so that
    every step below is one vectorised operation over contiguous memory.
    With ``overwrite``, a float64 C-contiguous A is overwritten, not copied.
    Gauss-Jordan elimination in place, without pivoting (stable for SPD
    matrices): a Python loop over m only. Under MCAR nearly every row has a
    pattern of its own, so the batch is the rows (times the components).

    Only the upper triangle is updated: midway, entry (k, i) is entry (i, k)
    negated where exactly one of i, k is already eliminated, which halves
    the work (measured 2-3x faster for m >= 4 than updating whole matrices).
    """
    A = (np.asarray if overwrite else np.array)(A, dtype=np.float64, order="C")
    m = A.shape[0]
    log_det = np.zeros(A.shape[2:])
    for j in range(m):
        # Column j of the current matrix, from the upper triangle.
        column = np.concatenate([A[:j, j], A[j, j:]])
        inverse_pivot = 1.0 / column[j]
        log_det -= np.log(inverse_pivot)
        row = column * inverse_pivot
        row[:j] *= -1.0  # row j left of the diagonal, from the signs above
        for i in range(m):
            A[i, i:] -= column[i] * row[i:]
        A[j, j + 1 :] = row[j + 1 :]
        A[:j, j] = -column[:j] * inverse_pivot
        A[j, j] = inverse_pivot
    for i in range(m - 1):  # the inverse is symmetric (slices: no fancy indexing)
        A[i + 1 :, i] = A[i, i + 1 :]
    return A, log_det


def missing_groups(missing, min_shared=256):
    """Rows with missing entries grouped for the batched kernels.

    ``missing`` (n, d) bool -> a list of (rows, idx): ``rows`` (n_g,) row
    indices and ``idx`` (G, m) the missing columns of each row, in order.
    Rows whose pattern at least ``min_shared`` rows share form a group of
    their own with G = 1: one factorisation serves them all (whole columns
    missing in blocks of rows). The others are grouped by their number of
    missing entries m, G = n_g.
    """
    n_rows, n_features = missing.shape
    packed = np.packbits(missing, axis=1)
    _, inverse, sizes = np.unique(
        packed, axis=0, return_inverse=True, return_counts=True
    )
    inverse = inverse.ravel()
    shared = sizes[inverse] >= min_shared
    groups = []
    if np.any(shared):
        rows = np.flatnonzero(shared)
        rows = rows[np.argsort(inverse[rows], kind="stable")]
        starts = np.flatnonzero(np.diff(inverse[rows], prepend=-1))
        for block in np.split(rows, starts[1:]):
            groups.append((block, np.flatnonzero(missing[block[0]])[np.newaxis]))
    rows = np.flatnonzero(~shared)
    if not rows.size:
        return groups
    n_missing = np.count_nonzero(missing[rows], axis=1)
    order = np.argsort(n_missing, kind="stable")
    rows, n_missing = rows[order], n_missing[order]
    starts = np.flatnonzero(np.diff(n_missing, prepend=-1))
    for block, m in zip(np.split(rows, starts[1:]), n_missing[starts], strict=True):
        idx = np.nonzero(missing[block])[1].reshape(len(block), m)
        groups.append((block, idx))
    return groups


class MissingModel:
    """What the kernels of missing entries need of the current parameters.

    Dense structures (full, tied) keep their precisions ``P`` (K or 1, d, d);
    diagonal ones (diag, spherical) their per-feature precisions (K, d).
    ``log_det`` (K,) is log det U_k = 1/2 log det P_k.
    """

    def __init__(self, cov, weights, means, U):
        K, d = means.shape
        self.cov, self.means, self.log_weights = cov, means, np.log(weights)
        self.dense = cov in (Full, Tied)
        P = cov.precisions(U)
        if self.dense:
            self.P = P.reshape(-1, d, d)
            self.P_flat = np.ascontiguousarray(self.P.reshape(-1, d * d).T)  # (d*d, K)
            self.log_det = np.broadcast_to(cov.log_det(U, d), (K,))
        else:
            self.P = np.broadcast_to(P.reshape(K, -1), (K, d))
            self.log_det = None


class MissingRows(NamedTuple):
    """Rows with NaN as every E-step reads them, prepared once per fit.

    ``X`` (n, d) float64 with NaN where missing, ``missing`` its mask,
    ``cells`` the flat indices of the missing entries (row-major: each
    row's in order) and ``n_observed`` (n,) each row's count of the others.
    """

    X: np.ndarray
    missing: np.ndarray
    cells: np.ndarray
    n_observed: np.ndarray


def missing_rows(X):
    """:class:`MissingRows` of the rows X (n, d)."""
    X = np.asarray(X, dtype=np.float64)
    missing = np.isnan(X)
    n_observed = X.shape[1] - np.count_nonzero(missing, axis=1)
    return MissingRows(X, missing, np.flatnonzero(missing), n_observed)


def missing_log_prob(model, rows, idx):
    """log(weight_k p(x_o | k)) of rows with missing entries, and the
    conditional moments of their missing entries.

    ``rows`` the :class:`MissingRows` of the rows; ``idx`` (G, m) the missing
    columns of each row (G = n) or of every row (G = 1), as
    :func:`missing_groups` gives them (ignored for diagonal structures).
    Returns ``log_prob`` (K, n); ``Y`` (K, n, d): x - mu_k with the missing
    entries set to their conditional means about mu_k; and the conditional
    covariances: (m, m, G, K or 1) for dense structures, (K, d) variances
    for diagonal ones. A row with nothing observed gets log weight_k.
    """
    K, (n, d) = len(model.means), rows.X.shape
    missing, cells, n_observed = rows.missing, rows.cells, rows.n_observed
    Y = rows.X - model.means[:, np.newaxis]
    Y.reshape(K, n * d)[:, cells] = 0.0
    if model.dense:
        Z = Y @ model.P
        quad = np.einsum("knd,knd->kn", Y, Z)
        m = idx.shape[1]
        C, log_det_mm = np.zeros((0, 0, 1, 1)), 0.0
        if m:
            G = len(idx)
            # np.take, many times faster than fancy indexing here. The batch
            # axes are (rows, components), components last.
            v = np.take(Z.reshape(K, n * d), cells, axis=1)
            v = v.reshape(K, n, m).transpose(2, 1, 0)  # (m, n, K)
            at = idx[:, :, np.newaxis] * d + idx[:, np.newaxis, :]
            P_mm = np.take(model.P_flat, at.reshape(G, m * m).T, axis=0)
            C, log_det_mm = spd_inverse(P_mm.reshape(m, m, G, -1), overwrite=True)
            # b = P_mm^-1 v; C (m, m, n or 1, K or 1) broadcasts over rows and K.
            b = C[:, 0] * v[0]
            for j in range(1, m):
                b += C[:, j] * v[j]
            quad -= np.einsum("ink,ink->kn", b, v)
            Y.reshape(K, n * d)[:, cells] = -b.transpose(2, 1, 0).reshape(K, n * m)
            log_det_mm = log_det_mm.T
        log_det = model.log_det[:, np.newaxis] - 0.5 * log_det_mm
    else:
        quad = np.einsum("knd,kd->kn", Y * Y, model.P)
        log_det = 0.5 * np.log(model.P) @ ~missing.T
        C = 1.0 / model.P
    log_prob = (
        -0.5 * quad
        + log_det
        - 0.5 * math.log(2 * math.pi) * n_observed
        + model.log_weights[:, np.newaxis]
    )
    # The marginal of nothing is 1, exactly (not 1 up to a d x d inverse).
    log_prob[:, n_observed == 0] = model.log_weights[:, np.newaxis]
    return log_prob, Y, C


def missing_statistics(model, Y, C, idx, resp, missing):
    """Sums of a group for the M-step, for weighted responsibilities ``resp``
    (K, n): counts (K,), first (K, d) sums of r y and second sums of r (y
    y^T + Cov[x | x_o, k]) about each component's mean: (K, d, d) for dense
    structures, (K, d) diagonals for diagonal ones. ``missing`` (n, d)."""
    K, n, d = Y.shape
    counts = resp.sum(axis=1)
    first = (resp[:, np.newaxis] @ Y)[:, 0]
    if not model.dense:
        second = np.einsum("kn,knd->kd", resp, Y * Y) + (resp @ missing) * C
        return counts, first, second
    # As V^T V, which numpy hands to BLAS's syrk: several times faster than
    # the product of two different operands (Y r)^T Y.
    V = Y * np.sqrt(resp)[:, :, np.newaxis]
    second = V.transpose(0, 2, 1) @ V
    m = idx.shape[1]
    if m and len(idx) == 1:
        second[:, idx[0][:, np.newaxis], idx[0]] += (C[:, :, 0] * counts).transpose(
            2, 0, 1
        )
    elif m:
        # Each row's m x m covariance added at its own (idx, idx) places.
        at = (idx.T[:, np.newaxis] * d + idx.T[np.newaxis]).reshape(-1)
        for k in range(K):
            weights = C[:, :, :, min(k, C.shape[3] - 1)] * resp[k]
            second[k] += np.bincount(at, weights.reshape(-1), d * d).reshape(d, d)
    return counts, first, second


def missing_mixture_statistics(
    cov, means, counts, first, second, log_likelihood, total_weight, extent
):
    """:class:`MixtureStatistics` from sums about the component means
    (:func:`missing_statistics`)."""
    centre = np.divide(
        first, counts[:, None], out=np.zeros_like(first), where=counts[:, None] > 0
    )
    if second.ndim == 3:
        scatter = second - first[:, :, None] * centre[:, None, :]
        scatter = 0.5 * (scatter + scatter.transpose(0, 2, 1))
        if cov is Tied:
            scatter = scatter.sum(axis=0)
    else:
        scatter = second - first * centre
        if cov is Spherical:
            scatter = scatter.sum(axis=1)
    return MixtureStatistics(
        cov,
        counts,
        np.where(counts[:, None] > 0, means + centre, 0.0),
        scatter,
        float(log_likelihood),
        float(total_weight),
        float(extent),
    )
