"""EMGaussianMixture: a faster drop-in for scikit-learn's GaussianMixture."""

from functools import partial
from numbers import Integral, Real
from typing import NamedTuple

import numpy as np
from scipy.special import logsumexp
from sklearn.base import ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.cluster import KMeans, kmeans_plusplus
from sklearn.utils import check_array, gen_batches
from sklearn.utils.validation import check_is_fitted, validate_data

from . import _gaussian_kernels as gk
from ._em import MAX_CHUNK_ROWS, BaseEM
from ._utils import Interval, StrOptions


def _check_shape(param, shape, name):
    if param.shape != shape:
        raise ValueError(
            f"The parameter '{name}' should have the shape of {shape}, "
            f"but got {param.shape}"
        )


def _check_weights(weights, n_components):
    weights = check_array(weights, dtype=[np.float64, np.float32], ensure_2d=False)
    _check_shape(weights, (n_components,), "weights")
    if np.any(weights < 0.0) or np.any(weights > 1.0):
        raise ValueError(
            "The parameter 'weights' should be in the range [0, 1], but got "
            f"max value {np.max(weights):.5f}, min value {np.min(weights):.5f}"
        )
    atol = 1e-6 if weights.dtype == np.float32 else 1e-8
    if not np.isclose(np.sum(weights), 1.0, rtol=0.0, atol=atol):
        raise ValueError(
            "The parameter 'weights' should be normalized, but got "
            f"sum(weights) = {np.sum(weights):.5f}"
        )
    return weights


def _check_means(means, n_components, n_features):
    means = check_array(means, dtype=[np.float64, np.float32], ensure_2d=False)
    _check_shape(means, (n_components, n_features), "means")
    return means


def _check_precisions(precisions, covariance_type, n_components, n_features):
    precisions = check_array(
        precisions,
        dtype=[np.float64, np.float32],
        ensure_2d=False,
        allow_nd=covariance_type == "full",
    )
    shape = {
        "full": (n_components, n_features, n_features),
        "tied": (n_features, n_features),
        "diag": (n_components, n_features),
        "spherical": (n_components,),
    }[covariance_type]
    _check_shape(precisions, shape, f"{covariance_type} precision")
    if covariance_type in ("diag", "spherical"):
        if np.any(precisions <= 0.0):
            raise ValueError(f"'{covariance_type} precision' should be positive")
    else:
        matrices = precisions.reshape(-1, n_features, n_features)
        symmetric = np.allclose(matrices, np.swapaxes(matrices, -1, -2))
        if not (symmetric and np.all(np.linalg.eigvalsh(matrices) > 0.0)):
            raise ValueError(
                f"'{covariance_type} precision' should be symmetric, positive-definite"
            )
    return precisions


class EMGaussianMixture(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEM):
    """Gaussian mixture fitted by Expectation-Maximisation.

    A drop-in for :class:`sklearn.mixture.GaussianMixture`: the same
    parameters, defaults, attributes, methods and, from the same
    initialisation, the same numbers. It adds :meth:`transform` (the
    responsibilities p(z | x)), ``sample_weight`` in :meth:`fit`, and speed:
    every component is handled in one batched matrix product over chunks of
    rows instead of a Python loop over components.

    Parameters
    ----------
    n_components : int, default=1
        The number of mixture components.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}, default='full'
        'full': each component has its own covariance matrix; 'tied': all
        components share one; 'diag': each has its own diagonal covariance;
        'spherical': each has its own single variance.
    tol : float, default=1e-3
        EM stops when the gain in mean log-likelihood per sample is below it.
    reg_covar : float, default=1e-6
        Non-negative regularisation added to the diagonal of the covariances.
    max_iter : int, default=100
        The number of EM iterations to perform.
    n_init : int, default=1
        The number of initialisations to perform; the best fit is kept.
    init_params : {'kmeans', 'k-means++', 'random', 'random_from_data'}, \
            default='kmeans'
        How the responsibilities, and through them the parameters, start.
    weights_init : array-like of shape (n_components,), default=None
        Initial weights; None uses ``init_params``.
    means_init : array-like of shape (n_components, n_features), default=None
        Initial means; None uses ``init_params``.
    precisions_init : array-like, default=None
        Initial precisions (inverse covariances), of shape (n_components,)
        for 'spherical', (n_features, n_features) for 'tied', (n_components,
        n_features) for 'diag', (n_components, n_features, n_features) for
        'full'; None uses ``init_params``.
    random_state : int, RandomState instance or None, default=None
        Seeds the initialisation and :meth:`sample`.
    warm_start : bool, default=False
        If True, each call to :meth:`fit` starts from the previous solution
        (and ``n_init`` is ignored after the first call).
    verbose : int, default=0
        1 prints each initialisation and iteration; 2 adds times and the
        change of the log-likelihood.
    verbose_interval : int, default=10
        Iterations between two prints.

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
        The weights of the components.
    means_ : ndarray of shape (n_components, n_features)
        The means of the components.
    covariances_ : ndarray
        The covariances; shape as ``precisions_init``.
    precisions_ : ndarray
        The precisions (inverse covariances); shape as ``precisions_init``.
    precisions_cholesky_ : ndarray
        Upper Cholesky factors U of the precisions, U U^T = precision.
    converged_ : bool
        Whether the best fit converged.
    n_iter_ : int
        Iterations of the best fit.
    lower_bound_ : float
        Mean log-likelihood per sample of the best fit at its last E-step.
    lower_bounds_ : list of float
        Mean log-likelihood per sample at each E-step of the best fit; it
        never decreases.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during fit, when they are all strings.

    See Also
    --------
    sklearn.mixture.GaussianMixture : The scikit-learn estimator this replaces.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_latent import EMGaussianMixture
    >>> X = np.array([[1, 2], [1, 4], [1, 0], [10, 2], [10, 4], [10, 0]])
    >>> gm = EMGaussianMixture(n_components=2, random_state=0).fit(X)
    >>> gm.means_
    array([[10.,  2.],
           [ 1.,  2.]])
    >>> gm.predict([[0, 0], [12, 3]])
    array([1, 0])
    >>> gm.transform([[0, 0]]).round(3)
    array([[0., 1.]])
    """

    _parameter_constraints: dict = {
        **BaseEM._parameter_constraints,
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "covariance_type": [StrOptions({"full", "tied", "diag", "spherical"})],
        "reg_covar": [Interval(Real, 0.0, None, closed="left")],
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "init_params": [
            StrOptions({"kmeans", "random", "random_from_data", "k-means++"})
        ],
        "weights_init": ["array-like", None],
        "means_init": ["array-like", None],
        "precisions_init": ["array-like", None],
    }

    _structure_names = ("n_components", "covariance_type")

    def __init__(
        self,
        n_components=1,
        *,
        covariance_type="full",
        tol=1e-3,
        reg_covar=1e-6,
        max_iter=100,
        n_init=1,
        init_params="kmeans",
        weights_init=None,
        means_init=None,
        precisions_init=None,
        random_state=None,
        warm_start=False,
        verbose=0,
        verbose_interval=10,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval

    # ------------------------------------------------------------ EM hooks
    def _check_parameters(self, X, sample_weight):
        n_samples, n_features = X.shape
        if sample_weight is not None:
            n_samples = np.count_nonzero(sample_weight)
        if n_samples < self.n_components:
            raise ValueError(
                "Expected n_samples >= n_components but got n_components = "
                f"{self.n_components}, n_samples = {n_samples}"
            )
        # Validated copies: the constructor arguments stay as the user gave them.
        self._weights_init = self._means_init = self._precisions_init = None
        if self.weights_init is not None:
            self._weights_init = _check_weights(self.weights_init, self.n_components)
        if self.means_init is not None:
            self._means_init = _check_means(
                self.means_init, self.n_components, n_features
            )
        if self.precisions_init is not None:
            self._precisions_init = _check_precisions(
                self.precisions_init,
                self.covariance_type,
                self.n_components,
                n_features,
            )

    def _prepare(self, X, sample_weight):
        # Statistics are taken about the weighted data mean: a shift that keeps
        # the second moments well conditioned for data far from the origin.
        shift = np.average(X, axis=0, weights=sample_weight).astype(X.dtype)
        total_weight = X.shape[0] if sample_weight is None else sample_weight.sum()
        scatter = None
        if self.covariance_type == "tied":
            # The tied M-step needs sum w x x^T, which no iteration changes.
            (scatter,) = self._sum_over_chunks(
                lambda Xc, wc: (_weighted_scatter(Xc - shift, wc),),
                X,
                sample_weight,
                X.itemsize * X.shape[1],
            )
        return _Data(X, sample_weight, shift, total_weight, scatter)

    @property
    def _kernels(self):
        return gk.KERNELS[self.covariance_type]

    def _row_bytes(self, X):
        """Bytes of temporaries per row of a chunk: features, and (K, n) twice."""
        n_features = X.shape[1]
        n_columns = self._kernels.n_second(n_features) + 2 * n_features
        return X.itemsize * (n_columns + 2 * self.n_components)

    def _initialize(self, data, random_state):
        X, sample_weight = data.X, data.sample_weight
        weights = means = covariances = None
        if (
            self._weights_init is None
            or self._means_init is None
            or self._precisions_init is None
        ):
            resp = self._initial_responsibilities(X, sample_weight, random_state)
            chunk_statistics = partial(
                _resp_statistics, kern=self._kernels, shift=data.shift
            )
            statistics = self._sum_over_chunks(
                chunk_statistics, X, sample_weight, self._row_bytes(X), resp
            )
            nk, means, covariances = self._parameters_from_statistics(data, *statistics)
            weights = nk / data.total_weight
        self.weights_ = weights if self._weights_init is None else self._weights_init
        self.means_ = means if self._means_init is None else self._means_init
        if self._precisions_init is None:
            self.covariances_ = covariances
            self.precisions_cholesky_ = self._kernels.precision_cholesky(covariances)
        else:
            self.precisions_cholesky_ = gk.precision_cholesky_from_precisions(
                self._precisions_init, self.covariance_type
            )
            self.covariances_ = _invert(self._precisions_init, self.covariance_type)

    def _initial_responsibilities(self, X, sample_weight, random_state):
        n_samples, n_components = X.shape[0], self.n_components
        resp = np.zeros((n_samples, n_components), dtype=X.dtype)
        if self.init_params == "kmeans":
            labels = (
                KMeans(n_clusters=n_components, n_init=1, random_state=random_state)
                .fit(X, sample_weight=sample_weight)
                .labels_
            )
            resp[np.arange(n_samples), labels] = 1
        elif self.init_params == "random":
            resp = random_state.uniform(size=(n_samples, n_components)).astype(X.dtype)
            resp /= resp.sum(axis=1)[:, np.newaxis]
        elif self.init_params == "random_from_data":
            # A zero-weight row is not in the data: never a starting mean.
            rows = n_samples if sample_weight is None else np.flatnonzero(sample_weight)
            indices = random_state.choice(rows, size=n_components, replace=False)
            resp[indices, np.arange(n_components)] = 1
        else:  # k-means++
            _, indices = kmeans_plusplus(
                X, n_components, sample_weight=sample_weight, random_state=random_state
            )
            resp[indices, np.arange(n_components)] = 1
        return resp

    def _e_step(self, data):
        coef, const = gk.natural_parameters(
            self._kernels,
            self.means_ - data.shift,
            self.precisions_cholesky_,
            np.log(self.weights_),
        )
        chunk_statistics = partial(
            _expected_statistics,
            kern=self._kernels,
            shift=data.shift,
            coef=coef,
            const=const,
        )
        resp_sum, feature_sums, log_likelihood = self._sum_over_chunks(
            chunk_statistics, data.X, data.sample_weight, self._row_bytes(data.X)
        )
        if self.covariance_type == "tied":
            # The component-free -1/2 x^T P x summed over the data: -1/2 tr(P S).
            precision = self._kernels.precisions(self.precisions_cholesky_)
            log_likelihood -= 0.5 * np.sum(precision * data.scatter)
        return (data, resp_sum, feature_sums), log_likelihood / data.total_weight

    def _m_step(self, statistics):
        nk, self.means_, self.covariances_ = self._parameters_from_statistics(
            *statistics
        )
        self.weights_ = nk / nk.sum()
        self.precisions_cholesky_ = self._kernels.precision_cholesky(self.covariances_)

    def _parameters_from_statistics(self, data, resp_sum, feature_sums):
        """Closed-form maximisation: (nk, means, covariances).

        ``feature_sums`` (p + d, K): sums of the chunk features weighted by
        the responsibilities.
        """
        n_features = data.X.shape[1]
        feature_sums = feature_sums.T
        # As scikit-learn: 10 eps keeps empty components finite.
        nk = resp_sum + 10 * np.finfo(resp_sum.dtype).eps
        first = feature_sums[:, -n_features:]
        shifted_means = first / nk[:, np.newaxis]
        means = (first + resp_sum[:, np.newaxis] * data.shift) / nk[:, np.newaxis]
        covariances = self._kernels.covariances(
            nk,
            shifted_means,
            feature_sums[:, :-n_features],
            self.reg_covar,
            scatter=data.scatter,
            shift=data.shift,
            total_weight=data.total_weight,
        )
        return nk, means, covariances

    def _get_parameters(self):
        return (
            self.weights_,
            self.means_,
            self.covariances_,
            self.precisions_cholesky_,
        )

    def _set_parameters(self, params):
        self.weights_, self.means_, self.covariances_, self.precisions_cholesky_ = (
            params
        )
        self.precisions_ = self._kernels.precisions(self.precisions_cholesky_)

    def _n_parameters(self):
        n_features = self.means_.shape[1]
        cov_params = self._kernels.n_covariance_parameters(
            self.n_components, n_features
        )
        return int(cov_params + n_features * self.n_components + self.n_components - 1)

    # ------------------------------------------------------------ inference
    def _weighted_log_prob(self, X):
        """log(weight_k p(x | k)) of validated X: (n, K), computed in chunks."""
        kern = self._kernels
        # Features about the mixture's mean keep the quadratic forms accurate.
        shift = self.weights_ @ self.means_
        coef, const = gk.natural_parameters(
            kern, self.means_ - shift, self.precisions_cholesky_, np.log(self.weights_)
        )
        out = np.empty((X.shape[0], self.n_components), dtype=coef.dtype)
        for rows in gen_batches(X.shape[0], MAX_CHUNK_ROWS):
            features = gk.features(X[rows], shift, kern)
            log_prob = coef @ features + const[:, np.newaxis]
            if self.covariance_type == "tied":
                n_features = X.shape[1]
                log_prob += gk.tied_quadratic(
                    features[-n_features:], self.precisions_cholesky_
                )
            out[rows] = log_prob.T
        return out

    def _score_samples(self, X):
        return logsumexp(self._weighted_log_prob(X), axis=1)

    def predict(self, X):
        """Most probable component of each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            Component labels.
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        return np.argmax(self._weighted_log_prob(X), axis=1)

    def predict_proba(self, X):
        """Posterior probability p(z = k | x) of each component for each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        resp : ndarray of shape (n_samples, n_components)
            Responsibilities; each row sums to one.
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        resp, _ = gk.log_normalize(self._weighted_log_prob(X).T)
        return resp.T

    def transform(self, X):
        """The posterior p(z | x): responsibilities, as :meth:`predict_proba`.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        resp : ndarray of shape (n_samples, n_components)
            Responsibilities; each row sums to one.
        """
        return self.predict_proba(X)

    def fit_predict(self, X, y=None, sample_weight=None):
        """Fit the model and return the most probable component of each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.
        y : Ignored
            Not used, present for API consistency by convention.
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the samples, as in :meth:`fit`.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            Component labels.
        """
        return self.fit(X, sample_weight=sample_weight).predict(X)

    @property
    def _n_features_out(self):
        return self.n_components

    def _sample(self, n_samples, random_state):
        counts = random_state.multinomial(n_samples, self.weights_)
        factors = self._kernels.covariance_factors(self.covariances_)
        n_features = self.means_.shape[1]
        X = np.empty((n_samples, n_features), dtype=self.means_.dtype)
        start = 0
        for k, count in enumerate(counts):
            noise = random_state.standard_normal((count, n_features))
            factor = factors[min(k, len(factors) - 1)]  # tied: one shared factor
            # A (d, d) Cholesky factor multiplies; a vector of std scales.
            scaled = noise @ factor.T if factor.ndim == 2 else noise * factor
            X[start : start + count] = self.means_[k] + scaled
            start += count
        return X, np.repeat(np.arange(self.n_components), counts)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


class _Data(NamedTuple):
    """The training data and what EM precomputes from it once."""

    X: np.ndarray
    sample_weight: np.ndarray | None
    shift: np.ndarray  # (d,) weighted data mean: statistics are about it
    total_weight: float
    scatter: np.ndarray | None  # (d, d) sum w x x^T about the shift; tied only


def _weighted_scatter(X, weight):
    """sum_i w_i x_i x_i^T: (n, d), (n,) or None -> (d, d)."""
    return X.T @ (X if weight is None else X * weight[:, np.newaxis])


def _resp_statistics(X, weight, resp, *, kern, shift):
    """Sufficient statistics of a chunk for given responsibilities (n, K)."""
    resp = resp.T if weight is None else resp.T * weight
    return resp.sum(axis=1), gk.features(X, shift, kern) @ resp.T


def _expected_statistics(X, weight, *, kern, shift, coef, const):
    """E-step on a chunk: responsibility sums, feature sums, log-likelihood."""
    features = gk.features(X, shift, kern)
    resp, log_norm = gk.log_normalize(coef @ features + const[:, np.newaxis])
    if weight is None:
        log_likelihood = log_norm.sum()
    else:
        resp *= weight
        log_likelihood = log_norm @ weight
    return resp.sum(axis=1), features @ resp.T, log_likelihood


def _invert(precisions, covariance_type):
    """Covariances from user-given precisions."""
    if covariance_type in ("diag", "spherical"):
        return 1.0 / precisions
    return np.linalg.inv(precisions)
