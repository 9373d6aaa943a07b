"""LatentImputer: missing values filled in by a latent-variable model."""

import numpy as np
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin, clone
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from ._utils import HasMethods, _fit_context


def _default_estimator():
    from ._gaussian_mixture import EMGaussianMixture

    return EMGaussianMixture(n_components=1, covariance_type="full")


class LatentImputer(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Impute missing values from a latent-variable model fitted with them.

    ``fit`` fits a clone of ``estimator`` on X, NaNs included: the model's EM
    treats the missing entries as latent variables, so it is fitted to the
    observed entries alone, by maximum likelihood, without filling them in
    first. ``transform`` replaces every NaN with its conditional expectation
    E[x_m | x_o] under the fitted model given the observed entries x_o of the
    same row (or, with ``sample_posterior=True``, with one draw from
    p(x_m | x_o)); observed entries are returned as they are.

    - :class:`EMGaussianMixture`: the responsibility-weighted conditional
      means of the components, responsibilities from each component's density
      of the observed entries (the default, one full-covariance component, is
      EM for a multivariate normal);
    - :class:`EMFactorAnalysis`: the factor model's conditional mean;
    - :class:`VAEEstimator`: the importance-weighted conditional mean.

    Parameters
    ----------
    estimator : estimator object, default=None
        The model, not fitted: one of the package's estimators (they impute
        with their ``_impute`` method). None means
        ``EMGaussianMixture(n_components=1, covariance_type="full")``. Its
        parameters can be tuned through the imputer, e.g. with
        ``GridSearchCV(..., {"estimator__n_components": [1, 5, 10]})`` when
        ``estimator`` is given.
    sample_posterior : bool, default=False
        Whether to fill each row's missing entries with one draw from
        p(x_m | x_o) instead of its mean, for multiple imputation: transform
        with several ``random_state`` values and pool the analyses. The draws
        are from the fitted model; the uncertainty of its parameters is not
        drawn.
    random_state : int, RandomState instance or None, default=None
        The draws of ``sample_posterior=True``: an int makes each fit's
        sequence of transforms reproducible. The fitted model's own
        randomness (initialisation) is set by the estimator's
        ``random_state``.

    Attributes
    ----------
    estimator_ : estimator object
        The fitted clone of ``estimator``.
    random_state_ : RandomState instance
        The generator of the draws, from ``random_state``.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, where X has string feature names.

    See Also
    --------
    sklearn.impute.SimpleImputer : column statistics.
    sklearn.impute.IterativeImputer : one regression per feature, in rounds.
    sklearn.impute.KNNImputer : the mean of the nearest rows.

    Notes
    -----
    Which model: one full Gaussian (the default) is EM for a multivariate
    normal, close to what IterativeImputer's rounds of linear regressions
    fit; it suits correlated features. Clustered data (images,
    digits) want a mixture of several full-covariance components, with
    ``reg_covar`` about a tenth of the mean feature variance, since each
    component's covariance is estimated from its share of the rows. Pick
    ``n_components`` (and ``reg_covar``) by the cross-validated
    observed-data log-likelihood, ``GridSearchCV(EMGaussianMixture(...),
    {"n_components": [...]})`` fitted on the incomplete X (the models'
    ``score`` handles NaN), or by the task downstream in a Pipeline.

    A column with no observed entry, or a row with none during fit, is an
    error of the model; in ``transform`` a row with nothing observed gets the
    model's mean.

    Examples
    --------
    Three features that follow one factor, (1, 2, -1) times it plus noise,
    with a fifth of the last two missing:

    >>> import numpy as np
    >>> from sklearn_latent import LatentImputer
    >>> rng = np.random.RandomState(0)
    >>> X = rng.randn(500, 1) @ [[1.0, 2.0, -1.0]] + 0.1 * rng.randn(500, 3)
    >>> X[:, 1:][rng.uniform(size=(500, 2)) < 0.2] = np.nan
    >>> imputer = LatentImputer().fit(X)
    >>> imputer.transform([[1.0, np.nan, np.nan], [np.nan, 4.0, np.nan]]).round(2)
    array([[ 1.  ,  1.99, -0.99],
           [ 1.99,  4.  , -1.98]])
    """

    _parameter_constraints: dict = {
        "estimator": [None, HasMethods(["fit"])],
        "sample_posterior": ["boolean"],
        "random_state": ["random_state"],
    }

    def __init__(self, estimator=None, *, sample_posterior=False, random_state=None):
        self.estimator = estimator
        self.sample_posterior = sample_posterior
        self.random_state = random_state

    @_fit_context(
        # the estimator is validated when it is fitted
        prefer_skip_nested_validation=False
    )
    def fit(self, X, y=None):
        """Fit the model on X, whose NaNs are the missing entries.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data with missing values as NaN.
        y : Ignored
            Not used, present for API consistency by convention.

        Returns
        -------
        self : object
            The fitted imputer.
        """
        estimator = _default_estimator() if self.estimator is None else self.estimator
        if not hasattr(estimator, "_impute"):
            raise TypeError(
                f"LatentImputer needs a model that imputes missing values: "
                f"EMGaussianMixture, EMFactorAnalysis or VAEEstimator; "
                f"{type(estimator).__name__} has no _impute method."
            )
        X = validate_data(
            self, X, dtype=[np.float64, np.float32], ensure_all_finite="allow-nan"
        )
        self.estimator_ = clone(estimator).fit(X)
        self.random_state_ = check_random_state(self.random_state)
        return self

    def transform(self, X):
        """Fill each NaN with E[x_m | x_o], or a draw from p(x_m | x_o).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data with missing values as NaN.

        Returns
        -------
        X_imputed : ndarray of shape (n_samples, n_features)
            A new array: X with its NaNs filled in.
        """
        check_is_fitted(self)
        X = validate_data(
            self,
            X,
            dtype=[np.float64, np.float32],
            ensure_all_finite="allow-nan",
            reset=False,
        )
        if not np.isnan(X).any():
            return X.copy()
        return self.estimator_._impute(
            X,
            sample_posterior=self.sample_posterior,
            random_state=self.random_state_ if self.sample_posterior else None,
        )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags
