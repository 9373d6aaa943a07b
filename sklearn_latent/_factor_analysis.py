"""Factor analysis and probabilistic PCA fitted by EM from sufficient statistics."""

import warnings
from functools import partial
from numbers import Integral
from typing import NamedTuple

import numpy as np
import scipy
from sklearn.base import ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils import check_random_state, gen_batches
from sklearn.utils.validation import check_array, check_is_fitted

from ._dask import (
    checked_block,
    checked_weight,
    is_dask_array,
    sum_over_blocks,
)
from ._em import BaseEM, rows_per_chunk
from ._factor_kernels import (
    _canonical_orientation,
    _centred_rows,
    _CentredMoments,
    _covariance,
    _DenseScatter,
    _extreme_projections,
    _Extremes,
    _log_likelihood_samples,
    _maximize,
    _maximize_missing,
    _maximize_profile,
    _missing_statistics,
    _moment_sums,
    _observed_mean,
    _observed_posterior,
    _orthogonal_rotation,
    _posterior_mean,
    _posterior_statistics,
    _precision,
    _principal_start,
    _smc_noise_variance,
    _squarem_extrapolate,
    _ThinScatter,
)
from ._utils import Interval, StrOptions, one_blas_thread, restored_on_error

# Smallest noise variance of a feature, relative to its variance: a feature
# that reaches it is explained without noise (a Heywood case). Bounding
# variance / noise also bounds the rounding error of the log-likelihood.
RELATIVE_NOISE_FLOOR = 1e-6
# Noise variance of a constant feature, scikit-learn FactorAnalysis's SMALL.
CONSTANT_FEATURE_NOISE = 1e-12
# A start whose noise is below this fraction of a feature's variance says the
# feature is (nearly) a combination of the others.
DEGENERATE_UNIQUENESS = 1e-4
# EM (SQUAREM) cycles before quasi-Newton steps join: well-conditioned fits
# converge within them at O(d^2 k) a cycle.
SQUAREM_FIRST = 5
# SQUAREM cycles after a quasi-Newton run that converged, before another
# run: there the parameters are at the maximum up to the run's tolerance,
# and cheap cycles finish, where each run would cost as much as the first.
SQUAREM_AFTER = 1
# Quasi-Newton steps on the noise cost a full eigendecomposition, O(d^3), against
# an EM step's O(d^2 k): beyond this many features EM (SQUAREM) works alone.
QUASI_NEWTON_MAX_FEATURES = 500
# On the oldest supported stack (numpy 1.23, SciPy 1.9, with SciPy's Fortran
# L-BFGS-B) the quasi-Newton steps crashed the process now and then in the
# test suite; the cause is not pinned down. There, fits use SQUAREM alone:
# the same optimum, more slowly near Heywood boundaries.
QUASI_NEWTON_SCIPY = tuple(map(int, scipy.__version__.split(".")[:2])) >= (1, 15)
# Rows that fix the shift the statistics are summed about (see _moment_sums).
SHIFT_ROWS = 1000


class _Moments(NamedTuple):
    """What EM needs of the data: total weight, weighted mean, scatter (a
    _DenseScatter or _ThinScatter) and the number of rows of positive
    weight; and the data, read once more at the end for the factors' signs."""

    total_weight: float
    mean: np.ndarray
    scatter: object
    n_rows: int
    X: np.ndarray
    sample_weight: np.ndarray


class _Missing(NamedTuple):
    """Data with NaN entries: EM passes over X every iteration (see
    :meth:`EMFactorAnalysis._e_step_missing`). The other fields are those of
    the mean-imputed data, for the start; ``shift``, the observed mean, is
    the fixed point the statistics are summed about."""

    total_weight: float
    mean: np.ndarray
    scatter: object
    n_rows: int
    X: np.ndarray
    sample_weight: np.ndarray
    shift: np.ndarray
    variance: np.ndarray


def _has_nan(X):
    # One reduction, no mask: NaN propagates through min (a sum could
    # overflow to inf - inf).
    return X.size > 0 and bool(np.isnan(np.min(X)))


class EMFactorAnalysis(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEM):
    """Factor analysis and probabilistic PCA fitted by true EM.

    The model is x = W z + mean + e with z ~ N(0, I) and e ~ N(0, Psi): factor
    analysis when Psi is diagonal, probabilistic PCA when Psi = sigma^2 I.
    One pass over the data gives the weighted mean and scatter matrix; after
    it each EM iteration costs O(n_features^2 n_components), whatever the
    number of samples. With fewer samples than features, where that matrix
    would cost more than the data, EM works on the centred data instead:
    O(n_samples n_features n_components) per iteration and
    O(n_samples n_features) memory; nothing of size n_features^2 is built
    (but by :meth:`get_covariance` and :meth:`get_precision`). A last pass
    over the data gives the factors scikit-learn's signs.

    Iterations are accelerated by SQUAREM, with a fall back to plain EM
    steps, so the log-likelihood never decreases. Where EM
    crawls (noise variances near zero: Heywood cases), factor analysis
    switches to runs of (quasi-)Newton steps on the noise with the loadings
    profiled out, as R's ``factanal``, each kept only if it raises the
    likelihood: Newton steps with the exact Hessian with at most 64
    features and at least twice as many rows, L-BFGS-B elsewhere.

    NaN in X marks a missing entry: ``fit``, ``score_samples``, ``score``
    and ``transform`` then work with each row's observed entries x_o, whose
    model is N(mean_o, W_o^T W_o + Psi_o). EM treats the missing entries as
    latent, like z, and stays exact: the observed-data log-likelihood never
    decreases. A row's posterior needs only the k x k matrix
    I + W_o Psi_o^-1 W_o^T, so a row costs O(n_features n_components^2),
    never a factorisation of its observed block; all rows are handled at
    once, with no loop over rows. With NaN the scatter no longer summarises
    the data, so each iteration is a SQUAREM cycle of EM steps that passes
    over X three times (in row chunks, on every core; no quasi-Newton
    steps), whatever the shape of X; the start is that of the data with each
    NaN replaced by its column's observed mean. ``score_samples`` gives
    log p(x_o), 0 for a row with nothing observed; ``transform`` gives
    E[z | x_o]. In ``fit``, a row or column with nothing observed is an
    error, and so is inf anywhere.
    Without NaN nothing of this runs: results are those of complete data.

    It accepts the parameters and gives the attributes of scikit-learn's
    :class:`~sklearn.decomposition.FactorAnalysis`, except ``copy`` (the data
    are only read), and adds ``sample_weight``, :meth:`sample`,
    :meth:`inverse_transform`, :meth:`aic` and :meth:`bic`.

    Parameters
    ----------
    n_components : int, default=None
        Number of latent factors. If None, the number of features.

    noise : {"diagonal", "isotropic"}, default="diagonal"
        "diagonal": one noise variance per feature (factor analysis);
        "isotropic": one shared noise variance (probabilistic PCA).

    tol : float, default=1e-6
        Convergence threshold on the gain of the mean log-likelihood per
        sample between iterations. Unlike FactorAnalysis's ``tol``, which is
        on the total log-likelihood, it does not depend on the number of
        samples.

    max_iter : int, default=1000
        Maximum number of iterations. One iteration is one SQUAREM cycle:
        three EM steps, or two when the extrapolation is rejected; for factor
        analysis with at most 500 features, iterations after the fifth are
        one run of at most ``max_iter`` (quasi-)Newton steps on the noise.

    noise_variance_init : array-like of shape (n_features,), default=None
        Initial noise variances (their mean with ``noise="isotropic"``); the
        initial loadings are then the best ones for that noise. If None,
        factor analysis starts from the classic squared-multiple-correlation
        noise (as R's ``factanal``), which does not depend on the units of
        the features, and probabilistic PCA from its closed-form solution.
        With no more samples (of positive weight) than features every
        feature is a combination of the others, which puts that noise at its
        floor: factor analysis then starts from the probabilistic PCA
        solution, or, with at most 500 features, from whichever of the two
        leads higher after quasi-Newton steps, and makes a second whole run
        from noise at each feature's variance, keeping the better run.

    svd_method : {"randomized", "lapack"}, default="randomized"
        How the start finds the top eigenvectors of the (noise-scaled)
        scatter matrix: scikit-learn's
        :func:`~sklearn.utils.extmath.randomized_svd` or LAPACK's exact
        ``eigh``. With fewer samples than features they are the top right
        singular vectors of the centred data, found exactly from its
        (n_samples, n_samples) Gram matrix with "lapack", and with
        "randomized" too where that costs less (up to
        30 (n_components + 10) samples).

    iterated_power : int, default=3
        Number of power iterations of the randomized start.

    rotation : {"varimax", "quartimax"}, default=None
        If not None, rotate the fitted loadings by this criterion.

    random_state : int, RandomState instance or None, default=0
        Seeds the randomized start and :meth:`sample`.

    warm_start : bool, default=False
        If True, a new fit starts from the previous solution.

    verbose : int, default=0
        0 is silent. 1 shows a live progress line on stderr (through tqdm
        when installed): the iteration out of ``max_iter``, the lower bound,
        its last change against ``tol``, the elapsed time and the time left;
        its last state says whether the fit converged. 2 prints a line every
        ``verbose_interval`` iterations instead, with times and gains, on
        stdout.

    verbose_interval : int, default=10
        Iterations between two printed lines with ``verbose=2``.

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_features)
        Loadings W, rows orthogonal under the noise precision, ordered by
        decreasing variance they explain, with scikit-learn's signs: of each
        factor's scores on the training data, (x - mean) Psi^-1 w, the one of
        largest magnitude is positive (FactorAnalysis's randomized SVD flips
        its sample-side singular vectors so). A rotation, if any, is applied
        after that.

    noise_variance_ : ndarray of shape (n_features,)
        Noise variance of each feature (all equal when isotropic).

    mean_ : ndarray of shape (n_features,)
        Weighted mean of the training data (with NaN, the model's mean,
        estimated jointly with the loadings).

    loglike_ : list of float
        Total (weighted) log-likelihood of the training data after each
        iteration; the last one is that of the returned parameters,
        ``score_samples(X) @ sample_weight``.

    lower_bound_ : float
        Mean log-likelihood per sample of the training data under the
        returned parameters (the log-likelihood is exact, not a bound).

    lower_bounds_ : list of float
        Mean log-likelihood per sample after each iteration (``loglike_``
        divided by the total sample weight); it never decreases.

    n_iter_ : int
        Number of iterations (SQUAREM cycles or quasi-Newton runs) run.

    converged_ : bool
        Whether the gain fell below ``tol``.

    n_features_in_ : int
        Number of features seen during :meth:`fit`.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during :meth:`fit`, where X has string names.

    See Also
    --------
    sklearn.decomposition.FactorAnalysis : The same model, fitted by an SVD
        of the whole data at every iteration.
    sklearn.decomposition.PCA : Its ``score`` is the probabilistic PCA
        log-likelihood.

    Notes
    -----
    A noise variance cannot fall below 1e-6 times its feature's variance (1e-12
    for a constant feature, as in FactorAnalysis); a feature that reaches that
    floor (a Heywood case) raises a warning after the fit. The floor is
    relative so that the fit does not depend on the units of the features,
    and so that the log-likelihood keeps its precision.

    References
    ----------
    - D. B. Rubin and D. T. Thayer, "EM algorithms for ML factor analysis",
      Psychometrika 47, 1982.
    - M. E. Tipping and C. M. Bishop, "Probabilistic principal component
      analysis", JRSS B 61, 1999.
    - K. G. Joreskog, "Some contributions to maximum likelihood factor
      analysis", Psychometrika 32, 1967 (the profile likelihood).
    - D. B. Rubin and D. T. Thayer (above); Z. Ghahramani and M. I. Jordan,
      "Supervised learning from incomplete data via an EM approach", NIPS
      1994 (the missing entries as latent variables).
    - R. Varadhan and C. Roland, "Simple and globally convergent methods for
      accelerating the convergence of any EM algorithm", Scand. J. Stat. 35,
      2008.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_latent import EMFactorAnalysis
    >>> rng = np.random.RandomState(0)
    >>> X = rng.normal(size=(500, 2)) @ rng.normal(size=(2, 6))
    >>> X += 0.1 * rng.normal(size=(500, 6))
    >>> fa = EMFactorAnalysis(n_components=2).fit(X)
    >>> fa.transform(X).shape
    (500, 2)
    >>> fa.converged_
    True
    >>> X_new, Z_new = fa.sample(3)
    >>> X_new.shape, Z_new.shape
    ((3, 6), (3, 2))

    Missing entries are NaN:

    >>> X_missing = X.copy()
    >>> X_missing[rng.rand(*X.shape) < 0.2] = np.nan
    >>> fa_missing = EMFactorAnalysis(n_components=2).fit(X_missing)
    >>> bool(np.isfinite(fa_missing.score(X_missing)))
    True
    """

    _parameter_constraints: dict = {
        **BaseEM._parameter_constraints,
        "n_components": [Interval(Integral, 0, None, closed="left"), None],
        "noise": [StrOptions({"diagonal", "isotropic"})],
        "noise_variance_init": ["array-like", None],
        "svd_method": [StrOptions({"randomized", "lapack"})],
        "iterated_power": [Interval(Integral, 0, None, closed="left")],
        "rotation": [StrOptions({"varimax", "quartimax"}), None],
    }

    _structure_names = ("n_components", "noise")

    # NaN in X marks missing entries (see _prepare_missing).
    _allow_nan = True

    # How EM holds the data: the (n_features, n_features) scatter (True) or the
    # centred (n_samples, n_features) rows (False). None: whichever is
    # smaller. Tests set it to compare the two on the same data.
    _dense_scatter = None

    def __init__(
        self,
        n_components=None,
        *,
        noise="diagonal",
        tol=1e-6,
        max_iter=1000,
        noise_variance_init=None,
        svd_method="randomized",
        iterated_power=3,
        rotation=None,
        random_state=0,
        warm_start=False,
        verbose=0,
        verbose_interval=10,
    ):
        self.n_components = n_components
        self.noise = noise
        self.tol = tol
        self.max_iter = max_iter
        self.noise_variance_init = noise_variance_init
        self.svd_method = svd_method
        self.iterated_power = iterated_power
        self.rotation = rotation
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval

    # ------------------------------------------------------------ fitting
    def partial_fit(self, X, y=None, sample_weight=None):
        """Add a batch of rows: the model becomes the fit of every row seen.

        Factor analysis needs of its data only the weighted mean and scatter,
        and these accumulate exactly (Chan et al.'s pairwise update), so
        partial_fit does not approximate with stepwise EM as
        :meth:`EMGaussianMixture.partial_fit` must: it adds the batch's
        moments to those of all the rows given to :meth:`fit` and
        partial_fit so far, then runs EM from the current parameters to
        convergence. The result is the fit of all those rows, for
        O(batch · n_features^2) per batch plus O(n_features^2 n_components)
        per EM iteration, in O(n_features^2) memory however many rows.

        The first call (on an unfitted model) starts as :meth:`fit` does and
        gives the factors scikit-learn's signs on its batch; later calls keep
        each factor's orientation. Every batch must have the first one's
        features, without NaN. A fit with fewer samples than features keeps
        no scatter matrix, so partial_fit cannot continue it.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            A batch of samples, in memory (pass the blocks of a dask array
            one at a time, or fit it).
        y : Ignored
            Not used, present for API consistency by convention.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights of the batch's samples.

        Returns
        -------
        self : object
            The updated estimator.
        """
        with restored_on_error(self):
            return self._partial_fit(X, sample_weight)

    def _partial_fit(self, X, sample_weight):
        first, X, sample_weight, missing = self._validated_batch(X, sample_weight)
        if missing is not None:
            raise ValueError(
                "EMFactorAnalysis.partial_fit accumulates the mean and scatter "
                "of complete rows; X holds NaN. Fit data with missing values "
                "with fit."
            )
        if not first and self._moments_seen is None:
            raise ValueError(
                "This EMFactorAnalysis was fitted on fewer samples than "
                "features, or on data with NaN, which keeps no scatter matrix "
                "for partial_fit to add to. Fit all the data at once, or start "
                "partial_fit on an unfitted estimator."
            )
        self._check_parameters(X, sample_weight)
        with np.errstate(over="ignore", invalid="ignore"):
            batch = self._batch_moments(X, sample_weight)
            seen = batch if first else self._moments_seen + batch
            scatter = _DenseScatter(seen.scatter)
        self._check_moments(X, seen.total_weight, seen.mean, scatter)
        self._moments_seen, self._squarem_left = seen, SQUAREM_FIRST
        # The first batch gives the factors their signs, later ones none.
        moments = _Moments(
            seen.total_weight,
            seen.mean,
            scatter,
            seen.n_rows,
            X if first else None,
            sample_weight,
        )
        if not first:
            self.lower_bound_ = -np.inf  # that of other data: no yardstick
        self._run(moments, do_init=first)
        self.n_batch_iter_ = getattr(self, "n_batch_iter_", 0) + 1
        return self

    def _finalize(self, moments):
        del self._squarem_left
        if isinstance(moments, _Missing):
            return self._finalize_missing(moments)
        components = _canonical_orientation(self.components_, self.noise_variance_)
        if moments.X is None:
            # A later batch of partial_fit: the factors keep the orientation
            # of the previous call, so that they do not flip between batches.
            aligned = np.sum(components * self._oriented_components, axis=1)
            signs = np.where(aligned < 0, -1.0, 1.0)
        else:
            # scikit-learn's signs: one more pass over the data, to find each
            # factor's score of largest magnitude.
            extremes = self._extremes(moments, (components / self.noise_variance_).T)
            signs = np.where(extremes.values < 0, -1.0, 1.0)
        self.components_ = self._oriented_components = signs[:, None] * components
        if self.rotation is not None:
            self.components_ = _orthogonal_rotation(self.components_, self.rotation)
        # Each E-step scores the parameters before its M-step: shift the
        # history by one and score the returned parameters, so that every
        # entry, and the last one above all, describes parameters reached.
        final = _posterior_statistics(
            self.components_, self.noise_variance_, moments.scatter
        )[2]
        if self.lower_bounds_:
            self.lower_bounds_ = [*self.lower_bounds_[1:], final]
        self.lower_bound_ = final
        self.loglike_ = [bound * moments.total_weight for bound in self.lower_bounds_]
        self._warn_heywood(self._noise_bounds(moments.scatter)[0])

    def _extremes(self, moments, directions):
        """:class:`_Extremes` of the data's projections on ``directions``."""
        X, weight, mean = moments.X, moments.sample_weight, self.mean_
        if is_dask_array(X):
            return sum_over_blocks(_block_extremes, X, weight, mean, directions)

        def extremes(X, weight):
            return (_Extremes(_extreme_projections(X, mean, directions, weight)),)

        return self._sum_over_chunks(extremes, X, weight, 8 * X.shape[1])[0]

    def _noise_bounds(self, scatter):
        """Lower and upper bounds of the noise variances, each (n_features,).

        The maximum likelihood noise never exceeds the feature's variance (the
        mean variance when isotropic); the lower bound is the Heywood floor.
        """
        variance = scatter.diagonal
        if self.noise == "isotropic":
            lower = RELATIVE_NOISE_FLOOR * variance.max()
            lower = np.full_like(
                variance, lower if lower > 0 else CONSTANT_FEATURE_NOISE
            )
            upper = np.full_like(variance, variance.mean())
        else:
            lower = np.where(
                variance > 0, RELATIVE_NOISE_FLOOR * variance, CONSTANT_FEATURE_NOISE
            )
            upper = variance
        return lower, np.maximum(upper, lower)

    def _warn_heywood(self, floor, stacklevel=6):
        floored = np.flatnonzero(self.noise_variance_ <= floor)
        if floored.size:
            warnings.warn(
                f"The noise variance of {floored.size} feature(s) (indices "
                f"{floored[:10].tolist()}{'...' if floored.size > 10 else ''}) "
                f"reached its floor, {RELATIVE_NOISE_FLOOR:g} times the feature's "
                f"variance ({CONSTANT_FEATURE_NOISE:g} for a constant feature): a "
                "Heywood case, where the model explains a feature without noise. "
                "Constant features always do this; otherwise reduce n_components, "
                "check for features that are (nearly) combinations of others, or "
                "use noise='isotropic'.",
                UserWarning,
                stacklevel=stacklevel,  # the caller of fit
            )

    def _n_components(self, n_features):
        return n_features if self.n_components is None else self.n_components

    def _check_parameters(self, X, sample_weight):
        n_features = X.shape[1]
        if self._n_components(n_features) > n_features:
            raise ValueError(
                f"n_components={self.n_components} must be at most the number "
                f"of features, {n_features}: reduce n_components."
            )
        if self.noise_variance_init is not None:
            init = check_array(
                self.noise_variance_init,
                ensure_2d=False,
                input_name="noise_variance_init",
            )
            if init.shape != (n_features,) or not np.all(init > 0):
                raise ValueError(
                    "noise_variance_init must hold one positive variance per "
                    f"feature ({n_features}); got shape {init.shape}."
                )

    def _prepare(self, X, sample_weight, missing=None):
        self._squarem_left = SQUAREM_FIRST  # cycles before quasi-Newton runs
        self.n_batch_iter_ = 0
        if missing is not None:
            self._moments_seen = None  # no scatter for partial_fit to add to
            return self._prepare_missing(X, sample_weight, missing)
        n_samples, n_features = X.shape
        dense = self._dense_scatter
        if dense is None:
            dense = n_samples >= n_features or is_dask_array(X)
        # One pass over the data; EM then needs only these moments.
        # Sums that overflow are caught below, with a clearer message.
        with np.errstate(over="ignore", invalid="ignore"):
            if is_dask_array(X):
                seen = self._dask_moments(X, sample_weight)
            elif dense:
                seen = self._batch_moments(X, sample_weight)
            else:
                shift = X[:SHIFT_ROWS].mean(axis=0, dtype=np.float64)
                total_weight, mean, rows = _centred_rows(X, sample_weight, shift)
                scatter = _ThinScatter(rows)
        # What partial_fit adds its batches to: kept on the dense path only,
        # where the (n_features, n_features) scatter exists anyway.
        self._moments_seen = seen if dense else None
        if dense:
            total_weight, mean, n_rows = seen.total_weight, seen.mean, seen.n_rows
            with np.errstate(over="ignore", invalid="ignore"):
                scatter = _DenseScatter(seen.scatter)
        else:
            n_rows = (
                n_samples if sample_weight is None else np.count_nonzero(sample_weight)
            )
        self._check_moments(X, total_weight, mean, scatter)
        return _Moments(total_weight, mean, scatter, n_rows, X, sample_weight)

    def _batch_moments(self, X, sample_weight):
        """The :class:`_CentredMoments` of in-memory rows: one chunked pass."""
        shift = X[:SHIFT_ROWS].mean(axis=0, dtype=np.float64)
        total_weight, first, second = self._sum_over_chunks(
            partial(_moment_sums, shift=shift),
            X,
            sample_weight,
            row_bytes=2 * 8 * X.shape[1],
        )
        n_rows = (
            X.shape[0] if sample_weight is None else np.count_nonzero(sample_weight)
        )
        return _CentredMoments.from_sums(total_weight, first, second, shift, n_rows)

    @staticmethod
    def _dask_moments(X, sample_weight):
        """The :class:`_CentredMoments` of a dask X: a pass over its blocks on
        the active scheduler, which also checks their values."""
        shift = checked_block(X[:SHIFT_ROWS].compute()).mean(axis=0, dtype=np.float64)
        seen = sum_over_blocks(_block_moments, X, sample_weight, shift)
        if seen.total_weight == 0:
            raise ValueError(
                "Sample weights must contain at least one non-zero number."
            )
        return seen

    @staticmethod
    def _check_moments(X, total_weight, mean, scatter):
        finite = np.all(np.isfinite(scatter.diagonal)) and np.all(np.isfinite(mean))
        if not (np.isfinite(total_weight) and finite):
            largest = np.abs(X).max()
            largest = float(largest.compute() if is_dask_array(X) else largest)
            raise ValueError(
                "EMFactorAnalysis: the weighted sums of squares of the data "
                f"overflow float64 (data up to {largest:.3g}, total sample "
                f"weight {total_weight:.3g}). Scale the data, e.g. with "
                "sklearn.preprocessing.StandardScaler, and keep sample weights "
                "to a moderate range (their scale does not matter)."
            )

    def _initialize(self, moments, random_state, start=0):
        n_features = len(moments.mean)
        n_components = self._n_components(n_features)
        floor, ceiling = self._noise_bounds(moments.scatter)
        quasi_newton = self._quasi_newton(n_features)
        self._squarem_left = SQUAREM_FIRST
        if start == 1:
            # Thin data's second run (see _n_starts): noise at each
            # feature's variance (at least the floor, for constant features),
            # as far from every Heywood case as can be.
            noise = ceiling
        elif self.noise_variance_init is not None:
            noise = np.asarray(self.noise_variance_init, dtype=np.float64)
            if self.noise == "isotropic":
                noise = np.full_like(noise, noise.mean())
        elif self.noise == "diagonal" and (moments.n_rows > n_features or quasi_newton):
            noise = _smc_noise_variance(moments.scatter, n_components)
            noise = np.maximum(noise, floor)
            variance = moments.scatter.diagonal
            if np.any(noise < DEGENERATE_UNIQUENESS * variance) and quasi_newton:
                # A feature (every one when n_samples <= n_features) is
                # nearly a combination of the others: the SMC start sits at
                # the floor. The probabilistic PCA start may lead higher;
                # keep whichever of the two maximises the likelihood.
                ppca = _principal_start(
                    moments.scatter, n_components, None, "lapack", 0, None, floor
                )[1]
                ends = [
                    self._maximize_noise(moments, n_components, start)[:2]
                    for start in (noise, ppca)
                ]
                noise = max(
                    ends,
                    key=lambda end: _posterior_statistics(
                        end[1], end[0], moments.scatter
                    )[2],
                )[0]
        else:
            # The probabilistic PCA solution itself; also for factor analysis
            # when the correlation matrix is singular (no more rows than
            # features) and no quasi-Newton steps would leave the SMC start,
            # which then puts every feature at its floor.
            noise = None
        self.mean_ = moments.mean
        self.components_, self.noise_variance_ = _principal_start(
            moments.scatter,
            n_components,
            noise,
            self.svd_method,
            self.iterated_power,
            random_state,
            floor,
        )

    def _n_starts(self, data):
        # With no more rows than features the profile likelihood has many
        # local maxima and no one start finds the highest every time: a
        # second whole run, from noise at each feature's variance, and the
        # better kept. On 184 small random fits, 16 ended below scikit-learn's
        # score with one run, 6 with two, for 26-42% more time.
        thin = (
            not isinstance(data, _Missing)
            and self.noise == "diagonal"
            and self.noise_variance_init is None
            and data.n_rows <= len(data.mean)
            and self._quasi_newton(len(data.mean))
        )
        return 2 if thin else 1

    def _quasi_newton(self, n_features):
        return (
            QUASI_NEWTON_SCIPY
            and self.noise == "diagonal"
            and n_features <= QUASI_NEWTON_MAX_FEATURES
        )

    def _maximize_noise(self, moments, n_components, noise_variance):
        lower, upper = self._noise_bounds(moments.scatter)
        return _maximize_profile(
            noise_variance,
            moments.scatter,
            n_components,
            lower,
            upper,
            self.tol,
            self.max_iter,
            moments.n_rows,
        )

    def _warm_start_bound(self):
        # lower_bound_ scores the returned parameters (see _finalize), which
        # a warm start's first E-step scores again: compare with the bound
        # before the last M-step instead, as a run that went on would. After
        # partial_fit's new rows (lower_bound_ -inf) there is none.
        if len(self.lower_bounds_) < 2 or not np.isfinite(self.lower_bound_):
            return -np.inf
        return self.lower_bounds_[-2]

    def _solver_context(self, data):
        # On a small scatter the start and the iterations run BLAS on one
        # thread (see SMALL_SCATTER), set once a run (threadpoolctl takes 40
        # us to set and restore it). With NaN the iterations pass over the
        # rows, and _finalize always does: they keep every core.
        if isinstance(data, _Missing) or not data.scatter.small:
            return super()._solver_context(data)
        return one_blas_thread()

    def _e_step(self, moments):
        if isinstance(moments, _Missing):
            return self._e_step_missing(moments)
        ezz, beta_scatter, mean_log_likelihood = _posterior_statistics(
            self.components_, self.noise_variance_, moments.scatter
        )
        return (moments, ezz, beta_scatter, mean_log_likelihood), mean_log_likelihood

    def _m_step(self, statistics, last=False):
        """A SQUAREM cycle of EM, or a quasi-Newton step on the noise and EM.

        After ``SQUAREM_FIRST`` cycles without convergence, factor analysis
        maximises the likelihood over the noise with the loadings profiled out
        (:func:`_maximize_profile`: Newton steps or L-BFGS-B, the latter as
        R's ``factanal``): EM alone crawls where noise variances
        approach zero (Heywood cases). The result, the best loadings for the
        new noise, is the update if it raises the likelihood (the step is then
        an ECME-like step that maximises the likelihood itself). After a run
        that converged, ``SQUAREM_AFTER`` cycles come before the next one.

        Otherwise (and for probabilistic PCA) one SQUAREM cycle from theta0
        extrapolates two EM steps theta0 -> theta1 -> theta2 to theta';
        theta' is kept, followed by an EM step, only if its log-likelihood is
        at least theta1's; otherwise theta2 is the update. Either way the
        log-likelihood never decreases.

        The last step, after an E-step that gained less than ``tol``, is a
        SQUAREM cycle.
        """
        if isinstance(statistics[0], _Missing):
            return self._m_step_missing(statistics)
        moments, ezz, beta_scatter, log_likelihood0 = statistics
        scatter = moments.scatter
        lower, upper = self._noise_bounds(scatter)
        maximize = partial(
            _maximize,
            scatter_diagonal=scatter.diagonal,
            isotropic=self.noise == "isotropic",
            floor=lower,
        )
        self.mean_ = moments.mean
        # The last step is a SQUAREM cycle, a few EM steps, where a
        # quasi-Newton run would cost tens of them. (A plain EM step would
        # cost less, but at EM's linear rate it leaves the parameters further
        # from the maximum.)
        n_components, n_features = self.components_.shape
        if self._squarem_left == 0 and self._quasi_newton(n_features) and not last:
            noise, components, converged = self._maximize_noise(
                moments, n_components, self.noise_variance_
            )
            *posterior, log_likelihood = _posterior_statistics(
                components, noise, scatter
            )
            # Kept only if better, by the very function the next E-step uses.
            if log_likelihood > log_likelihood0:
                self.components_, self.noise_variance_ = components, noise
                self._squarem_left = SQUAREM_AFTER if converged else 0
                return
        self._squarem_left = max(self._squarem_left - 1, 0)

        theta0 = (self.components_, self.noise_variance_)
        theta1 = maximize(ezz, beta_scatter)
        *posterior1, log_likelihood1 = _posterior_statistics(*theta1, scatter)
        theta2 = maximize(*posterior1)
        extrapolated = _squarem_extrapolate(theta0, theta1, theta2, lower, upper)
        *posterior, log_likelihood = _posterior_statistics(*extrapolated, scatter)
        if log_likelihood >= log_likelihood1:
            update = maximize(*posterior)
        else:
            update = theta2
        self.components_, self.noise_variance_ = update

    def _get_parameters(self):
        return self.mean_, self.components_, self.noise_variance_

    def _set_parameters(self, params):
        self.mean_, self.components_, self.noise_variance_ = params

    def _n_parameters(self):
        n_components, n_features = self.components_.shape
        # Loadings up to a rotation, noise variances, mean.
        loadings = n_features * n_components - n_components * (n_components - 1) // 2
        noise = 1 if self.noise == "isotropic" else n_features
        return loadings + noise + n_features

    # ---------------------------------------------------------- inference
    def _score_samples(self, X):
        if _has_nan(X):
            return self._observed_posteriors(X)[1]
        return _log_likelihood_samples(
            X, self.mean_, self.components_, self.noise_variance_
        )

    def _sample(self, n_samples, random_state):
        n_components, n_features = self.components_.shape
        Z = random_state.standard_normal((n_samples, n_components))
        noise = random_state.standard_normal((n_samples, n_features))
        X = Z @ self.components_ + self.mean_ + noise * np.sqrt(self.noise_variance_)
        return X, Z

    def transform(self, X):
        """Posterior mean E[z | x] of the latent factors.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples; NaN marks a missing entry.

        Returns
        -------
        Z : ndarray of shape (n_samples, n_components)
            (I + W Psi^-1 W^T)^-1 W Psi^-1 (x - mean) for each sample; with
            NaN entries, the same on each row's observed entries (zero for a
            row with nothing observed).
        """
        return self._map_rows(self._transform, X, self.components_.shape[0])

    def _transform(self, X):
        if _has_nan(X):
            return self._observed_posteriors(X)[0]
        return _posterior_mean(X, self.mean_, self.components_, self.noise_variance_)

    def inverse_transform(self, Z):
        """Map latent factors back to the data space: W z + mean.

        Parameters
        ----------
        Z : array-like of shape (n_samples, n_components)
            Latent factors, for example the output of :meth:`transform`.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
            The expected data given the factors.
        """
        check_is_fitted(self)
        Z = check_array(Z, dtype=[np.float64, np.float32], input_name="Z")
        if Z.shape[1] != self.components_.shape[0]:
            raise ValueError(
                f"Z has {Z.shape[1]} columns but the model has "
                f"{self.components_.shape[0]} components."
            )
        return Z @ self.components_ + self.mean_

    def get_covariance(self):
        """Model covariance of the data, W^T W + Psi.

        It is an (n_features, n_features) matrix by definition: with many
        features it costs far more memory than the fit itself, which never
        forms it when there are fewer samples than features.

        Returns
        -------
        covariance : ndarray of shape (n_features, n_features)
            Covariance of x under the fitted model.
        """
        check_is_fitted(self)
        return _covariance(self.components_, self.noise_variance_)

    def get_precision(self):
        """Model precision of the data, by the matrix inversion lemma.

        It is an (n_features, n_features) matrix by definition (see
        :meth:`get_covariance`); the inversion lemma itself factorises only
        an (n_components, n_components) matrix.

        Returns
        -------
        precision : ndarray of shape (n_features, n_features)
            Inverse of :meth:`get_covariance`.
        """
        check_is_fitted(self)
        return _precision(self.components_, self.noise_variance_)

    @property
    def _n_features_out(self):
        return self.components_.shape[0]

    # ---------------------------------------------------- missing entries
    def _prepare_missing(self, X, sample_weight, missing):
        """The summary of data with NaN entries.

        EM iterates over X itself: with entries missing the scatter is no
        longer a sufficient statistic. The start is that of the data with each
        NaN replaced by its column's observed (weighted) mean; that copy of X
        is dropped once its moments are summed. Whatever the shape of X, EM
        then works row by row, never on an (n_features, n_features) matrix.
        """
        with np.errstate(invalid="ignore", divide="ignore"):  # checked below
            mean = _observed_mean(X, sample_weight)
        unseen = np.flatnonzero(~np.isfinite(mean))
        if unseen.size:
            raise ValueError(
                f"Column(s) {unseen.tolist()[:10]} of X are observed only in "
                "rows of zero sample weight: nothing can be learnt about them. "
                "Drop those columns."
            )
        filled = np.where(missing, mean.astype(X.dtype), X)
        moments = self._prepare(filled, sample_weight)
        # Each column's variance over its observed entries: the scale of
        # the SQUAREM steps, and the noise variances' upper bound there.
        variance = moments.scatter.diagonal
        observed_weight = (
            np.count_nonzero(~missing, axis=0)
            if sample_weight is None
            else sample_weight.astype(np.float64) @ ~missing
        )
        variance = variance * moments.total_weight / observed_weight
        return _Missing(*moments._replace(X=X), shift=mean, variance=variance)

    def _missing_row_bytes(self):
        n_components, n_features = self.components_.shape
        return 8 * (4 * n_features + 4 * (n_components + 1) ** 2)

    def _missing_sums(self, moments, components, offset, noise_variance):
        """Expected complete-data sums over the rows of X (a pass over X),
        under the given parameters, summed over row chunks on every core."""
        return self._sum_over_chunks(
            partial(
                _missing_statistics,
                shift=moments.shift,
                components=components,
                offset=offset,
                noise_variance=noise_variance,
            ),
            moments.X,
            moments.sample_weight,
            self._missing_row_bytes(),
        )

    def _e_step_missing(self, moments):
        sums = self._missing_sums(
            moments, self.components_, self.mean_ - moments.shift, self.noise_variance_
        )
        return (moments, sums), sums[-1] / sums[0]

    def _m_step_missing(self, statistics):
        """A SQUAREM cycle of exact EM steps, as :meth:`_m_step`'s, on the
        loadings and mean together: theta0 -> theta1 -> theta2 extrapolated,
        kept (with one more EM step) only if it scores at least theta1. Each
        cycle passes over X twice more; the log-likelihood never decreases.
        (Quasi-Newton steps on the noise need the scatter: none here.)
        """
        moments, sums = statistics
        floor, _ = self._noise_bounds(moments.scatter)
        isotropic = self.noise == "isotropic"

        # theta = ([W; mean - shift], noise): the mean is a loading on a
        # constant factor (see _missing_statistics).
        def maximize(sums, theta):
            *loadings, noise = _maximize_missing(
                sums, theta[0][:-1], theta[0][-1], theta[1], isotropic, floor
            )
            return np.vstack(loadings), noise

        def e_step(theta):
            sums = self._missing_sums(moments, theta[0][:-1], theta[0][-1], theta[1])
            return sums, sums[-1] / sums[0]

        theta0 = (
            np.vstack([self.components_, self.mean_ - moments.shift]),
            self.noise_variance_,
        )
        variance = np.maximum(moments.variance, floor)
        upper = np.full_like(variance, variance.mean()) if isotropic else variance
        theta1 = maximize(sums, theta0)
        sums1, log_likelihood1 = e_step(theta1)
        theta2 = maximize(sums1, theta1)
        extrapolated = _squarem_extrapolate(theta0, theta1, theta2, floor, upper)
        # Near convergence the extrapolation can leap far out (its length
        # is |r| / |v|, both at rounding level), to parameters whose
        # log-likelihood float64 cannot compute: such a leap is not tried.
        # A model's variance, |w_j|^2 + psi_j, and its mean stay within 10
        # standard deviations of the observed data's.
        loadings, noise = extrapolated
        plausible = (
            np.all(np.isfinite(loadings))
            and np.all(np.sum(loadings[:-1] ** 2, axis=0) + noise <= 100 * variance)
            and np.all(loadings[-1] ** 2 <= 100 * variance)
        )
        update = theta2
        if plausible:
            sums_x, log_likelihood = e_step(extrapolated)
            if log_likelihood >= log_likelihood1:
                update = maximize(sums_x, extrapolated)
        self.components_ = update[0][:-1]
        self.mean_ = moments.shift + update[0][-1]
        self.noise_variance_ = update[1]

    def _finalize_missing(self, moments):
        """As :meth:`_finalize`: the factors' signs are those of the scores
        with each missing entry at the mean (it adds nothing), and the last
        log-likelihood is the observed-data one."""
        components = _canonical_orientation(self.components_, self.noise_variance_)
        directions = (components / self.noise_variance_).T
        extremes = np.zeros(len(components))
        row_bytes = 8 * len(self.mean_)
        for X, weight in self._chunks(row_bytes, moments.X, moments.sample_weight):
            filled = np.where(np.isnan(X), self.mean_, X)
            chunk = _extreme_projections(filled, self.mean_, directions, weight)
            extremes = np.where(np.abs(chunk) > np.abs(extremes), chunk, extremes)
        self.components_ = np.where(extremes < 0, -1.0, 1.0)[:, None] * components
        if self.rotation is not None:
            self.components_ = _orthogonal_rotation(self.components_, self.rotation)
        final = self._e_step_missing(moments)[1]
        if self.lower_bounds_:
            self.lower_bounds_ = [*self.lower_bounds_[1:], final]
        self.lower_bound_ = final
        self.loglike_ = [bound * moments.total_weight for bound in self.lower_bounds_]
        self._warn_heywood(self._noise_bounds(moments.scatter)[0], stacklevel=7)

    def _observed_posteriors(self, X, covariance=False):
        """E[z | x_o] (n_samples, n_components) and log p(x_o) (n_samples,)
        of each row of X with NaN entries, in row chunks; with
        ``covariance``, also the posterior covariances (n_samples,
        n_components, n_components)."""
        n_components = len(self.components_)
        chunks = [
            _observed_posterior(
                X[rows], self.mean_, self.components_, self.noise_variance_
            )
            for rows in gen_batches(len(X), rows_per_chunk(self._missing_row_bytes()))
        ]
        if not chunks:
            empty = np.zeros((0, n_components))
            chunks = [(empty, np.zeros((0, n_components, n_components)), np.zeros(0))]
        factor_mean, factor_covariance, log_likelihood = (
            np.concatenate(parts) for parts in zip(*chunks, strict=True)
        )
        if covariance:
            return factor_mean, log_likelihood, factor_covariance
        return factor_mean, log_likelihood

    def _impute(self, X, sample_posterior=False, random_state=None):
        """X with each NaN replaced, from the fitted model given the row's
        observed entries x_o.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)
            Validated float data, NaN where missing.
        sample_posterior : bool, default=False
            False: the conditional mean E[x_m | x_o] = mean_m + W_m^T E[z | x_o].
            True: one draw from the Gaussian p(x_m | x_o): z from its
            posterior, then mean_m + W_m^T z + noise.
        random_state : int, RandomState instance or None, default=None
            Seeds the draws of ``sample_posterior=True``.

        Returns
        -------
        X_imputed : ndarray of shape (n_samples, n_features), X's dtype
            A new array; the observed entries are X's.
        """
        check_is_fitted(self)
        missing = np.isnan(X)
        factors, _, covariance = self._observed_posteriors(X, covariance=True)
        if sample_posterior:
            rng = check_random_state(random_state)
            n_samples, n_features = X.shape
            draws = rng.standard_normal(factors.shape)
            noise = rng.standard_normal((n_samples, n_features))
            if len(self.components_):
                root = np.linalg.cholesky(covariance)
                factors = factors + np.einsum("nab,nb->na", root, draws)
            filled = factors @ self.components_ + self.mean_
            filled += noise * np.sqrt(self.noise_variance_)
        else:
            filled = factors @ self.components_ + self.mean_
        imputed = X.copy()
        imputed[missing] = filled[missing]
        return imputed


def _block_moments(X, weight, shift):
    """The :class:`_CentredMoments` of one dask block, its values checked."""
    X, weight = checked_block(X), checked_weight(weight)
    total_weight, first, second = _moment_sums(X, weight, shift)
    n_rows = len(X) if weight is None else np.count_nonzero(weight)
    return _CentredMoments.from_sums(total_weight, first, second, shift, n_rows)


def _block_extremes(X, weight, mean, directions):
    """The :class:`_Extremes` of one dask block's projections."""
    if not len(X):
        return _Extremes(np.zeros(directions.shape[1]))
    X, weight = checked_block(X), checked_weight(weight)
    return _Extremes(_extreme_projections(X, mean, directions, weight))
