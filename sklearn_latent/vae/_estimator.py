"""VAEEstimator: a PyTorch variational auto-encoder as a scikit-learn estimator."""

import copy
import io
import math
import threading
import warnings
from contextlib import contextmanager
from functools import partial
from numbers import Integral, Real

import numpy as np
import torch
from sklearn import get_config
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    DensityMixin,
    TransformerMixin,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_array, check_random_state, gen_batches
from sklearn.utils.validation import check_is_fitted, validate_data

from .._dask import (
    check_dask_array,
    checked_block,
    is_dask_array,
    map_rows,
    refuse_in_partial_fit,
)
from .._utils import Interval, Options, StrOptions, _fit_context, restored_on_error
from ._losses import elbo_terms, iwae, log_weights, observed
from ._modules import ACTIVATIONS, VAE
from ._training import Blocks, run_epoch, train

# Noise draws averaged by score_samples: enough to make the per-row ELBO
# estimate smooth, few enough to stay cheap.
ELBO_DRAWS = 32
# Importance draws per row for _impute. The self-normalised estimate's error
# falls as 1/sqrt(effective draws) and is small beside the spread of
# p(x_m|x_o): on a linear VAE (tests/test_vae_missing.py) 300 draws put the
# conditional means within 0.06 conditional sds (RMS); on noisy digits in
# pixels (20% MCAR, latent 8) 100 and 1000 draws gave imputation RMSE 2.781
# and 2.773, and 1000 cost 13 times as long.
IMPUTE_DRAWS = 300
_SEED_MAX = np.iinfo(np.int32).max
# Noise variance floor, as EMFactorAnalysis's Heywood floor: relative to the
# feature's variance in the training data; for a constant feature relative to
# the mean variance of the features (a float32 decoder trained by Adam cannot
# pin a constant more finely than the data's scale), 1e-12 if all are constant.
RELATIVE_NOISE_FLOOR = 1e-6
CONSTANT_FEATURE_NOISE = 1e-12


class VAEEstimator(
    ClassNamePrefixFeaturesOutMixin, TransformerMixin, DensityMixin, BaseEstimator
):
    """Variational auto-encoder (PyTorch) with the scikit-learn API.

    The model is p(z) p(x|z) with a standard normal prior on the
    ``n_components``-dimensional latent z and a decoder MLP for p(x|z); an
    encoder MLP gives the approximate posterior q(z|x), a diagonal Gaussian.
    Both are trained together with Adam on mini-batches to maximise the
    evidence lower bound (ELBO) log p(x) - KL[q(z|x) || p(z|x)].

    With ``hidden_layer_sizes=()`` and the Gaussian likelihood the VAE is
    linear, and at its optimum the ELBO equals the exact log-likelihood of
    factor analysis.

    **Missing values** (NaN) are allowed in ``fit``, ``partial_fit``,
    ``transform``, ``score_samples``, ``score`` and ``log_likelihood``, as in
    MIWAE (Mattei & Frellsen, 2019): the likelihood covers the observed
    entries x_o only, so ``score_samples`` is the ELBO of log p(x_o), the
    density of what was observed, and ``log_likelihood`` estimates log p(x_o);
    a row with nothing observed scores 0 = log 1. When the data that builds
    the networks (``fit``, or the first ``partial_fit``) has NaN, the
    encoder reads the row, with NaN set to the training feature means, beside
    its mask of observed entries (2 * n_features inputs): MIWAE's zero fill
    of standardised data, in the data's own units (filled with 0, pixel data
    made the VAE ignore z). A model built on complete data keeps an
    encoder that reads the row alone; given NaN later, it sees the missing
    entries filled with the decoder's mean at z = 0, the model's typical
    point: any q(z|x_o) gives a lower bound on log p(x_o), and the
    importance-weighted estimate still tends to it. The feature means and
    variances that start the decoder and set the noise floor are those of
    the observed entries. A row or a feature with nothing observed is a
    ValueError in ``fit``; infinity is a ValueError everywhere. Complete data
    take exactly the computation they took before NaN were allowed. A dask
    array with NaN is still a ValueError.

    Parameters
    ----------
    n_components : int, default=2
        Dimension of the latent space.

    hidden_layer_sizes : array-like of int, default=(128, 128)
        Sizes of the encoder's hidden layers; the decoder mirrors them. ``()``
        gives a linear VAE.

    activation : {"relu", "tanh", "logistic", "identity"}, default="relu"
        Activation between hidden layers, as in
        :class:`~sklearn.neural_network.MLPRegressor`.

    likelihood : {"gaussian", "bernoulli"}, default="gaussian"
        p(x|z): ``"gaussian"`` with the decoder as mean and a learned variance
        per feature, or ``"bernoulli"`` with the decoder as logits, for data
        in [0, 1]. A Gaussian noise variance never falls below
        1e-6 times its feature's variance in the training data (1e-12 for a
        constant feature), which bounds the ELBO; a warning names the
        features that reach this floor.

    beta : float, default=1.0
        Weight of the KL term in the training objective (a beta-VAE).
        ``lower_bounds_`` and the scores are always the plain ELBO.

    batch_size : int or "auto", default="auto"
        Mini-batch size; ``"auto"`` is ``min(200, n_samples)``.

    learning_rate_init : float, default=3e-3
        Adam's initial learning rate; the first plateau (see
        ``n_iter_no_change``) divides it by 10.

    max_iter : int, default=1000
        Maximum number of epochs (passes over the training data).

    tol : float, default=1e-4
        Smallest rise of the ELBO (nats per sample) that counts as progress.

    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data, stop when its ELBO stops
        improving and keep the parameters of its best epoch.

    validation_fraction : float, default=0.1
        Share of the data held out when ``early_stopping=True``.

    n_iter_no_change : int, default=20
        A plateau is more than this many consecutive epochs in which the ELBO
        has not risen by ``tol`` above its best. The first plateau divides the
        learning rate by 10 (Adam's steps make the parameters jitter about
        the optimum, more at a higher rate); the second stops training,
        converged. The ELBO judged is the validation ELBO with
        ``early_stopping``, else the training ELBO at the end of each epoch
        under one fixed noise draw per row, the same every epoch (the mean
        over the epoch's batches moves with fresh noise by far more than
        ``tol``). ``np.inf`` always trains ``max_iter`` epochs.

    random_state : int, RandomState instance or None, default=None
        Seeds the initialisation, batches, noise draws, validation split and
        :meth:`sample`. Pass an int for results that are identical across
        calls (on the CPU). Fitting never uses or advances numpy's or torch's
        global random state; ``None`` draws fresh entropy.

    device : {"cpu", "cuda", "auto"}, default="cpu"
        Where to train and evaluate; ``"auto"`` picks CUDA when available.

    n_threads : int or None, default=1
        Torch CPU threads while fitting. torch's setting is process-wide: fit
        sets it and restores it afterwards (after the last of several fits
        running at once in Python threads). ``None`` leaves it alone. Small
        networks train fastest on a single thread; raise it for wide layers
        or big batches. Inference (``transform``, scores, ``sample``) never
        changes it and runs on torch's current setting.

    verbose : int, default=0
        0 is silent. 1 shows a live progress line on stderr (through tqdm
        when installed): the epoch out of ``max_iter``, the training ELBO,
        the validation ELBO with ``early_stopping``, the change of the ELBO
        that judges convergence (see ``n_iter_no_change``) over its best
        against ``tol``, the elapsed time and the time left; its last state
        says whether training converged. 2 prints the ELBO after each epoch
        instead, and the learning-rate drops, on stdout.

    warm_start : bool, default=False
        Continue training the fitted networks (and Adam's state) instead of
        starting afresh. The architecture must not change.

    Attributes
    ----------
    module_ : torch.nn.Module
        The fitted networks: ``module_.encoder``, ``module_.decoder`` and, for
        the Gaussian likelihood, the noise log-variances ``module_.log_var``.

    optimizer_ : torch.optim.Adam
        The optimiser, kept for ``warm_start``.

    device_ : str
        The device the networks live on.

    lower_bounds_ : list of float
        Training ELBO (nats per sample) of each epoch of the last fit: the
        mean over the epoch's batches, each with fresh noise.

    lower_bound_ : float
        Training ELBO of the kept epoch: the last one, or with early stopping
        the best on validation.

    validation_scores_ : list of float or None
        Validation ELBO of each epoch with ``early_stopping``, else None.

    best_validation_score_ : float or None
        Best of ``validation_scores_``, else None.

    n_iter_ : int
        Number of epochs run by the last fit.

    converged_ : bool
        Whether the last fit stopped by the ``tol``/``n_iter_no_change`` rule
        rather than at ``max_iter``.

    n_features_in_ : int
        Number of features seen during fit.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of the features seen during fit, when they are all strings.

    See Also
    --------
    sklearn.decomposition.FactorAnalysis : The linear-Gaussian special case,
        fitted exactly.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_latent import VAEEstimator
    >>> X = np.random.RandomState(0).normal(size=(100, 4))
    >>> vae = VAEEstimator(n_components=2, hidden_layer_sizes=(16,), max_iter=20,
    ...                    random_state=0).fit(X)
    >>> vae.transform(X).shape
    (100, 2)
    >>> vae.score_samples(X).shape, vae.log_likelihood(X, n_draws=100).shape
    ((100,), (100,))
    >>> X_new, Z_new = vae.sample(5)
    >>> X_new.shape, Z_new.shape
    ((5, 4), (5, 2))
    """

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "hidden_layer_sizes": [
            "array-like",
            Interval(Integral, 1, None, closed="left"),
        ],
        "activation": [StrOptions(set(ACTIVATIONS))],
        "likelihood": [StrOptions({"gaussian", "bernoulli"})],
        "beta": [Interval(Real, 0, None, closed="left")],
        "batch_size": [
            StrOptions({"auto"}),
            Interval(Integral, 1, None, closed="left"),
        ],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [
            Interval(Integral, 1, None, closed="left"),
            Options(Real, {np.inf}),
        ],
        "random_state": ["random_state"],
        "device": [StrOptions({"cpu", "cuda", "auto"})],
        "n_threads": [Interval(Integral, 1, None, closed="left"), None],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
    }

    def __init__(
        self,
        n_components=2,
        *,
        hidden_layer_sizes=(128, 128),
        activation="relu",
        likelihood="gaussian",
        beta=1.0,
        batch_size="auto",
        learning_rate_init=3e-3,
        max_iter=1000,
        tol=1e-4,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=20,
        random_state=None,
        device="cpu",
        n_threads=1,
        verbose=0,
        warm_start=False,
    ):
        self.n_components = n_components
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.likelihood = likelihood
        self.beta = beta
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.tol = tol
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.random_state = random_state
        self.device = device
        self.n_threads = n_threads
        self.verbose = verbose
        self.warm_start = warm_start

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Train the encoder and decoder on X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data; NaN marks a missing entry. Every row and every
            feature needs an observed entry.

        y : Ignored
            Not used, present for API consistency by convention.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        # A fit that raises leaves the previously fitted model as it was.
        with restored_on_error(self):
            return self._fit(X)

    def _architecture(self, n_features):
        return (
            n_features,
            self.n_components,
            _hidden_layer_sizes(self.hidden_layer_sizes),
            self.activation,
            self.likelihood,
        )

    def _training_copies(self, architecture, why):
        """Copies of the fitted module and Adam to train on: a failed fit
        leaves ``module_`` and ``optimizer_`` as they were (restored_on_error
        puts attributes back by reference, but training mutates in place)."""
        if self.module_.architecture() != architecture:
            raise ValueError(
                f"{why} continues training the fitted networks, so "
                "n_components, hidden_layer_sizes, activation and likelihood "
                "must stay as they were; set warm_start=False and call fit to "
                "start afresh."
            )
        return copy.deepcopy((self.module_, self.optimizer_))

    def _fit(self, X):
        warm = self.warm_start and hasattr(self, "module_")
        on_dask = is_dask_array(X)
        if on_dask:
            X, mean, variance = self._summarise_dask(X, reset=not warm)
        else:
            X = self._validate_X(X, reset=not warm, likelihood=self.likelihood)
        # Whether the whole X has NaN, decided once: a validation split
        # without NaN is still scored by the masked ELBO of the same model.
        missing = not on_dask and _check_observed(X)
        architecture = self._architecture(X.shape[1])
        rng = _random_state(self.random_state)
        init_seed, train_seed, split_seed, noise_seed = (
            int(s) for s in rng.randint(_SEED_MAX, size=4)
        )
        if warm:
            module, optimizer = self._training_copies(architecture, "warm_start=True")
            for group in optimizer.param_groups:
                group["lr"] = self.learning_rate_init
        else:
            self.device_ = _resolve_device(self.device)
            module = _build_module(architecture, init_seed, masked_encoder=missing)
            optimizer = None
            self._noise_seed = noise_seed

        X_val = None
        if self.early_stopping:
            X, X_val = train_test_split(
                X, test_size=self.validation_fraction, random_state=split_seed
            )
            if missing:
                _check_observed(
                    X, "the training rows left after holding out validation_fraction"
                )
        if not on_dask:
            mean, variance = _moments(X, missing)
        module, optimizer = self._started(module, optimizer, mean, variance)
        batch_size = self._batch_size(len(X))
        with _torch_threads(self.n_threads):
            history = train(
                module,
                optimizer,
                self._blocks(X) if on_dask else self._to_tensor(X, torch.float32),
                None if X_val is None else self._to_tensor(X_val, torch.float32),
                batch_size=batch_size,
                max_iter=self.max_iter,
                tol=self.tol,
                n_iter_no_change=self.n_iter_no_change,
                beta=self.beta,
                generator=torch.Generator(self.device_).manual_seed(train_seed),
                validation_noise=self._fixed_noise(ELBO_DRAWS, module).float(),
                verbose=self.verbose,
                missing=missing,
            )

        self.module_, self.optimizer_ = module, optimizer
        self._warn_floored_noise()
        self.lower_bounds_ = history.lower_bounds
        kept_epoch = history.best_epoch if self.early_stopping else -1
        self.lower_bound_ = history.lower_bounds[kept_epoch]
        self.validation_scores_ = history.validation_scores or None
        self.best_validation_score_ = (
            max(history.validation_scores) if self.early_stopping else None
        )
        self.n_iter_ = len(history.lower_bounds)
        self.converged_ = history.converged
        if not self.converged_:
            warnings.warn(
                f"VAEEstimator: maximum number of epochs (max_iter={self.max_iter}) "
                "reached and the ELBO has not converged yet; consider increasing "
                "max_iter.",
                ConvergenceWarning,
                stacklevel=3,
            )
        return self

    def _started(self, module, optimizer, mean, variance):
        """The module with its noise floor set from the data's ``variance``;
        a new one (``optimizer`` None) also starts from the data's mean and
        variance, on the device, with a new Adam."""
        scale = variance.mean() if variance.mean() > 0 else 1.0
        if module.likelihood == "gaussian":
            floor = RELATIVE_NOISE_FLOOR * np.where(variance > 0, variance, scale)
            floor = np.maximum(floor, CONSTANT_FEATURE_NOISE)
            module.set_variance_floor(torch.tensor(floor, dtype=torch.float32))
        if optimizer is None:
            # Noise starts no smaller than the data's scale: a sharper start
            # for a (nearly) constant feature would meet the random decoder's
            # first errors with huge gradients.
            module.start_from(
                torch.tensor(mean, dtype=torch.float32),
                torch.tensor(np.maximum(variance, scale), dtype=torch.float32),
            )
            module = module.to(self.device_)
            optimizer = torch.optim.Adam(
                module.parameters(), lr=self.learning_rate_init
            )
        return module, optimizer

    def _batch_size(self, n_samples):
        return min(200, n_samples) if self.batch_size == "auto" else self.batch_size

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y=None):
        """One epoch of Adam steps over the rows of X, in shuffled mini-batches.

        As :meth:`sklearn.neural_network.MLPRegressor.partial_fit`: the first
        call builds the networks (started from this batch's mean and
        variance, which also set the noise floor); each later call continues
        them and Adam's state, whatever ``warm_start`` says. X must keep the
        features of the first call. No convergence test is made and no
        learning rate is lowered: the caller decides when to stop.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            A batch of training rows; NaN marks a missing entry. The first
            batch decides what the encoder reads (see the class notes): with
            NaN in a later batch only, it reads rows filled at the model's
            typical point, without a mask.

        y : Ignored
            Not used, present for API consistency by convention.

        Returns
        -------
        self : object
            The updated estimator.
        """
        with restored_on_error(self):
            return self._partial_fit(X)

    def _partial_fit(self, X):
        refuse_in_partial_fit(X)
        first = not hasattr(self, "module_")
        try:
            X = self._validate_X(X, reset=first, likelihood=self.likelihood)
        except ValueError as error:
            if first or "features" not in str(error):
                raise
            raise ValueError(
                f"{error} partial_fit continues the fitted model: every batch "
                "must have the features of the first."
            ) from error
        missing = _check_observed(X)
        architecture = self._architecture(X.shape[1])
        if first:
            rng = _random_state(self.random_state)
            init_seed, self._partial_fit_seed, self._noise_seed = (
                int(s) for s in rng.randint(_SEED_MAX, size=3)
            )
            self.device_ = _resolve_device(self.device)
            module, optimizer = self._started(
                _build_module(architecture, init_seed, masked_encoder=missing),
                None,
                *_moments(X, missing),
            )
            self.n_iter_, self.lower_bounds_ = 0, []
        else:
            module, optimizer = self._training_copies(architecture, "partial_fit")
        # Each call's shuffles and noise come from its own seed: the same
        # batches in the same order give the same model.
        seed = (getattr(self, "_partial_fit_seed", 0) + self.n_iter_) % _SEED_MAX
        with _torch_threads(self.n_threads):
            elbo = run_epoch(
                module,
                optimizer,
                self._to_tensor(X, torch.float32),
                batch_size=self._batch_size(len(X)),
                beta=self.beta,
                generator=torch.Generator(self.device_).manual_seed(seed),
                missing=missing,
            ).item()
            if not math.isfinite(elbo):
                raise ValueError(
                    f"Training diverged: the ELBO of this batch became {elbo}. "
                    f"Lower learning_rate_init (now {self.learning_rate_init:g}) "
                    "or standardise the data (e.g. with StandardScaler). The "
                    "estimator is left as it was before this call."
                )
        self.module_, self.optimizer_ = module, optimizer
        self.n_iter_ += 1
        self.lower_bounds_ = [*self.lower_bounds_, elbo]
        self.lower_bound_ = elbo
        self.converged_ = False
        self.validation_scores_ = self.best_validation_score_ = None
        return self

    def _warn_floored_noise(self):
        if self.module_.log_var is None:
            return
        # Adam jitters around the floor rather than sitting on it: within a
        # factor 2 counts as reaching it.
        floored = torch.nonzero(
            self.module_.log_var <= self.module_.log_var_floor + math.log(2)
        ).flatten()
        if len(floored):
            warnings.warn(
                f"The noise variance of {len(floored)} feature(s) (indices "
                f"{floored[:10].tolist()}{'...' if len(floored) > 10 else ''}) "
                f"reached (within a factor 2) its floor, {RELATIVE_NOISE_FLOOR:g} "
                "times the feature's "
                "variance (of the mean feature variance for a constant feature): the "
                "model explains the feature without noise, and its density there "
                "is as sharp as the floor allows. Constant features always do "
                "this: drop them (e.g. VarianceThreshold) or expect very low "
                "scores for data that varies in them.",
                UserWarning,
                stacklevel=4,
            )

    def transform(self, X):
        """Encode X: the mean of q(z|x) for each row.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data; NaN marks a missing entry (see the class's notes on what
            the encoder then reads).

        Returns
        -------
        Z : ndarray of shape (n_samples, n_components)
            Posterior means, in X's floating dtype.
        """
        check_is_fitted(self)
        if is_dask_array(X):
            return self._lazily(self.transform, X, self.module_.n_components)
        X = self._validate_X(X, reset=False, likelihood=self.module_.likelihood)
        Z = self._map_rows(
            lambda module, x, mask: module.encode(x, mask)[0], X, n_draws=1
        )
        return Z.astype(X.dtype, copy=False)

    def inverse_transform(self, X):
        """Decode latent points: the mean of p(x|z) for each row of X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_components)
            Latent points.

        Returns
        -------
        X_original : ndarray of shape (n_samples, n_features)
            Decoded means (probabilities for the Bernoulli likelihood).
        """
        check_is_fitted(self)
        Z = check_array(X, dtype=[np.float64, np.float32])
        if Z.shape[1] != self.module_.n_components:
            raise ValueError(
                f"X has {Z.shape[1]} features, but {type(self).__name__} "
                f"decodes points of n_components={self.module_.n_components}."
            )
        X_mean = self._map_rows(
            lambda module, z, mask: module.decoded_mean(z), Z, n_draws=1
        )
        return X_mean.astype(Z.dtype, copy=False)

    def score_samples(self, X):
        """ELBO of each row of X, in nats.

        The expectation over q(z|x) is averaged over a fixed set of noise draws
        shared by all rows, so the result is deterministic and a row's score
        does not depend on the other rows passed with it.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data; NaN marks a missing entry. A row's ELBO then bounds
            log p(x_o), the density of its observed entries; a row with
            nothing observed scores 0.

        Returns
        -------
        elbo : ndarray of shape (n_samples,)
            Per-sample lower bound on log p(x); ``-inf`` for rows so far from
            the data that the computation overflows.
        """
        check_is_fitted(self)
        if is_dask_array(X):
            return self._lazily(self.score_samples, X, dtype=np.float64)
        X = self._validate_X(X, reset=False, likelihood=self.module_.likelihood)
        eps = self._fixed_noise(ELBO_DRAWS)

        def elbo(module, x, mask):
            reconstruction, kl = elbo_terms(module, x, eps, mask)
            return reconstruction - kl

        scores = self._map_rows(elbo, X, n_draws=ELBO_DRAWS)
        return _nothing_observed_scores_zero(X, _overflow_to_minus_inf(scores))

    def score(self, X, y=None):
        """Mean ELBO of the rows of X (higher is better).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data.

        y : Ignored
            Not used, present for API consistency by convention.

        Returns
        -------
        elbo : float
            Mean per-sample ELBO, in nats.
        """
        return float(np.mean(self.score_samples(X)))

    def log_likelihood(self, X, n_draws=1000, *, n_samples="deprecated"):
        """Importance-weighted (IWAE) estimate of log p(x) for each row of X.

        The bound log (1/K) sum_k p(x, z_k) / q(z_k|x) with K = ``n_draws``
        draws z_k ~ q(z|x) lies above the ELBO and tends to log p(x) as K
        grows. The draws are fixed and shared by all rows, as in
        :meth:`score_samples`; rows are processed in chunks sized by
        scikit-learn's ``working_memory`` setting.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data; NaN marks a missing entry, and the estimate is then of
            log p(x_o), the density of the observed entries (0 for a row
            with nothing observed).

        n_draws : int, default=1000
            Number of importance draws K per row.

        n_samples : int
            Deprecated name of ``n_draws`` (in scikit-learn ``n_samples``
            counts rows); it will be removed in a future release.

        Returns
        -------
        log_px : ndarray of shape (n_samples,)
            Per-sample estimate of log p(x), in nats; ``-inf`` for rows so far
            from the data that the computation overflows.
        """
        if not (isinstance(n_samples, str) and n_samples == "deprecated"):
            warnings.warn(
                "log_likelihood's n_samples was renamed n_draws (it counts "
                "importance draws per row, not rows); use n_draws=.",
                FutureWarning,
                stacklevel=2,
            )
            n_draws = n_samples
        check_is_fitted(self)
        _check_count(n_draws, "n_draws")
        if is_dask_array(X):
            return self._lazily(
                partial(self.log_likelihood, n_draws=n_draws), X, dtype=np.float64
            )
        X = self._validate_X(X, reset=False, likelihood=self.module_.likelihood)
        eps = self._fixed_noise(n_draws)
        log_px = self._map_rows(
            lambda m, x, mask: iwae(m, x, eps, mask), X, n_draws=n_draws
        )
        return _nothing_observed_scores_zero(X, _overflow_to_minus_inf(log_px))

    def _impute(
        self, X, sample_posterior=False, random_state=None, *, n_draws=IMPUTE_DRAWS
    ):
        """X with each NaN replaced by E[x_m | x_o], or by a draw from p(x_m | x_o).

        For :class:`~sklearn_latent.LatentImputer`. Draws z_s ~ q(z|x_o) get
        self-normalised importance weights w_s proportional to
        p(x_o|z_s) p(z_s) / q(z_s|x_o). The conditional mean is
        sum_s w_s E[x_m|z_s], over ``n_draws`` fixed draws shared by every row
        (as :meth:`log_likelihood`'s, so the result is deterministic and
        ``random_state`` is not used). With ``sample_posterior`` one z_s is
        resampled by its weight (sampling-importance-resampling), from fresh
        draws seeded by ``random_state``, and x_m is drawn from p(x_m|z_s).

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)
            Validated float data, NaN where missing.

        sample_posterior : bool, default=False
            Draw from p(x_m | x_o) instead of taking its mean.

        random_state : int, RandomState instance or None, default=None
            Seeds the draws when ``sample_posterior``; None draws fresh
            entropy.

        n_draws : int, default=IMPUTE_DRAWS (300)
            Importance draws per row.

        Returns
        -------
        X_imputed : ndarray of shape (n_samples, n_features)
            A new array of X's dtype, equal to X where X is not NaN.
        """
        check_is_fitted(self)
        _check_count(n_draws, "n_draws")
        missing = np.isnan(X)
        X_imputed = X.copy()
        rows = missing.any(axis=1)
        if not rows.any():
            return X_imputed
        if sample_posterior:
            seed = int(_random_state(random_state).randint(_SEED_MAX))
            generator = torch.Generator(self.device_).manual_seed(seed)
        else:
            eps = self._fixed_noise(n_draws)

        def impute(module, x, mask):
            if sample_posterior:
                noise = torch.randn(
                    (n_draws, len(x), module.n_components),
                    generator=generator,
                    dtype=x.dtype,
                    device=x.device,
                )
                z, log_w = log_weights(module, x, noise, mask)
                weights = torch.softmax(log_w, dim=0).T
                # A row whose every weight underflows has NaN weights: its
                # NaN result is caught below.
                lost = weights.isnan().any(1, keepdim=True)
                pick = torch.multinomial(
                    weights.nan_to_num(1.0), 1, generator=generator
                )[:, 0]
                draw = module.sample_x(
                    z[pick, torch.arange(len(x), device=x.device)], generator
                )
                return draw.masked_fill(lost, torch.nan)
            z, log_w = log_weights(module, x, eps, mask)
            weights = torch.softmax(log_w, dim=0).unsqueeze(-1)
            return (weights * module.decoded_mean(z)).sum(0)

        values = self._map_rows(impute, X[rows], n_draws=n_draws)
        if np.isnan(values[missing[rows]]).any():
            raise ValueError(
                "Some rows of X lie so far from the model that every importance "
                "weight underflows; their missing values cannot be imputed."
            )
        X_imputed[missing] = values[missing[rows]]
        return X_imputed

    def sample(self, n_samples=1):
        """Draw from the model: z ~ p(z), then x ~ p(x|z).

        Parameters
        ----------
        n_samples : int, default=1
            Number of draws.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
            Generated data.

        Z : ndarray of shape (n_samples, n_components)
            The latent points they were drawn from.
        """
        check_is_fitted(self)
        _check_count(n_samples, "n_samples")
        seed = int(_random_state(self.random_state).randint(_SEED_MAX))
        generator = torch.Generator(self.device_).manual_seed(seed)
        module = self.module_
        with torch.inference_mode():
            Z = torch.randn(
                (n_samples, module.n_components),
                generator=generator,
                device=self.device_,
            )
            X = module.sample_x(Z, generator)
        return X.cpu().double().numpy(), Z.cpu().double().numpy()

    @property
    def _n_features_out(self):
        # Used by get_feature_names_out; AttributeError (not fitted) before fit.
        return self.module_.n_components

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        tags.input_tags.allow_nan = True
        return tags

    def __getstate__(self):
        # Torch objects travel as torch.save bytes so that __setstate__ can map
        # them to the CPU: a model fitted on a GPU loads on a CPU-only machine.
        state = dict(super().__getstate__())
        if "module_" in state:
            buffer = io.BytesIO()
            torch.save(
                {
                    "module": state.pop("module_"),
                    "optimizer": state.pop("optimizer_").state_dict(),
                },
                buffer,
            )
            state["_torch_state"] = buffer.getvalue()
        return state

    def __setstate__(self, state):
        if "_torch_state" in state:
            state = dict(state)
            saved = torch.load(
                io.BytesIO(state.pop("_torch_state")),
                map_location="cpu",
                weights_only=False,
            )
            device = state["device_"]
            if device != "cpu" and not torch.cuda.is_available():
                warnings.warn(
                    f"This VAEEstimator was fitted on {device!r}, which is not "
                    "available here; it is loaded on the CPU.",
                    UserWarning,
                    stacklevel=2,
                )
                device = "cpu"
            module = saved["module"].to(device)
            optimizer = torch.optim.Adam(module.parameters())
            optimizer.load_state_dict(saved["optimizer"])
            state.update(module_=module, optimizer_=optimizer, device_=device)
        super().__setstate__(state)

    def _summarise_dask(self, X, *, reset):
        """A dask X checked for fitting, and its feature means and variances
        (one pass; the rows are later streamed, a block at a time)."""
        import dask

        if self.early_stopping:
            raise ValueError(
                "early_stopping holds out rows in memory, which a dask array "
                "does not allow; fit with early_stopping=False, or hold out "
                "blocks yourself and compare their score."
            )
        X = check_dask_array(self, X, reset=reset, ensure_min_samples=2)
        mean, variance, low, high = dask.compute(
            X.mean(axis=0, dtype=np.float64),
            X.var(axis=0, dtype=np.float64),
            X.min(),
            X.max(),
        )
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(variance))):
            raise ValueError(
                "Input X contains NaN or infinity. A dask array must be "
                "complete; fit an in-memory array to train on NaN."
            )
        self._check_range(low, high)
        return X, mean, variance

    def _blocks(self, X):
        """The rows of a dask X as :class:`Blocks`: each computed (on the
        active scheduler) and checked when an epoch reaches it."""
        blocks = [
            partial(self._block_tensor, block) for block in X.to_delayed().ravel()
        ]
        return Blocks(blocks, X.shape[0])

    def _block_tensor(self, block):
        return self._to_tensor(checked_block(block.compute()), torch.float32)

    def _lazily(self, method, X, n_columns=None, dtype=None):
        """``method`` over the row blocks of a dask X: a lazy dask array."""
        X = check_dask_array(self, X, reset=False)
        return map_rows(method, X, n_columns, dtype or X.dtype)

    def _validate_X(self, X, *, reset, likelihood):
        X = validate_data(
            self,
            X,
            reset=reset,
            dtype=[np.float64, np.float32],
            ensure_all_finite="allow-nan",
        )
        if likelihood == "bernoulli" and X.size:
            # fmin/fmax skip NaN (and give NaN, which passes, if all are NaN).
            low, high = np.fmin.reduce(X, axis=None), np.fmax.reduce(X, axis=None)
            self._check_range(low, high, likelihood)
        return X

    def _check_range(self, low, high, likelihood=None):
        if (likelihood or self.likelihood) == "bernoulli" and (low < 0 or high > 1):
            raise ValueError(
                'likelihood="bernoulli" needs data in [0, 1], but X has values '
                f"in [{low:g}, {high:g}]; rescale X (e.g. MinMaxScaler) or "
                'use likelihood="gaussian".'
            )

    def _to_tensor(self, X, dtype):
        # torch.tensor copies, so read-only (memory-mapped) input is fine;
        # it refuses negative strides (X[::-1]), which ascontiguousarray fixes.
        return torch.tensor(np.ascontiguousarray(X), dtype=dtype, device=self.device_)

    def _fixed_noise(self, n_draws, module=None):
        """Standard normal draws of shape (n_draws, 1, n_components), always the same.

        Every row shares these draws, so their sampling error does not average
        out over rows; where there are enough of them they are shifted and
        whitened to sample mean 0 and sample covariance I (moment matching),
        which removes the error exactly when the expectation depends only on
        the first two moments, as in the linear Gaussian VAE.
        """
        n_components = (module or self.module_).n_components
        generator = torch.Generator().manual_seed(self._noise_seed)
        eps = torch.randn(
            (n_draws, n_components), generator=generator, dtype=torch.float64
        )
        if n_draws > n_components:
            eps = eps - eps.mean(0)
            cholesky = torch.linalg.cholesky(eps.T @ eps / n_draws)
            eps = torch.linalg.solve_triangular(cholesky, eps.T, upper=False).T
        return eps.unsqueeze(1).to(self.device_)

    def _map_rows(self, fn, X, *, n_draws):
        """Concatenate ``fn(module, x, mask)`` over chunks of rows x of X, as numpy.

        ``module`` is a float64 copy of ``module_``: in float32 a row's result
        would change in the last bits with the number of rows in its chunk.
        Where X has NaN, x holds 0 there and ``mask`` marks the observed
        entries; else ``mask`` is None (the complete-data computation; for a
        complete row both give the same numbers). Chunks hold every layer's
        activations for ``n_draws`` per row within scikit-learn's
        ``working_memory``.
        """
        module = copy.deepcopy(self.module_).double()
        missing = bool(np.isnan(X).any())
        widths = (
            module.n_features * (2 if module.masked_encoder else 1)
            + module.n_components
            + sum(module.hidden_layer_sizes)
        )
        row_bytes = 8 * n_draws * 2 * widths
        chunk = max(1, get_config()["working_memory"] * 2**20 // row_bytes)
        with torch.inference_mode():
            parts = []
            for rows in gen_batches(len(X), chunk):
                x = self._to_tensor(X[rows], torch.float64)
                x, mask = observed(x) if missing else (x, None)
                parts.append(fn(module, x, mask).cpu().numpy())
        return np.concatenate(parts)


def _hidden_layer_sizes(hidden_layer_sizes):
    sizes = (
        [hidden_layer_sizes]
        if isinstance(hidden_layer_sizes, Integral)
        else list(hidden_layer_sizes)
    )
    if not all(isinstance(s, Integral) and s >= 1 for s in sizes):
        raise ValueError(
            f"hidden_layer_sizes must be positive integers, got {hidden_layer_sizes!r}."
        )
    return tuple(int(s) for s in sizes)


def _random_state(random_state):
    """check_random_state, except that None gives fresh OS entropy.

    scikit-learn maps None to numpy's global generator; drawing from it would
    advance global random state, which fitting must never touch.
    """
    if random_state is None:
        return np.random.RandomState()
    return check_random_state(random_state)


def _resolve_device(device):
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            'device="cuda" but CUDA is not available to torch '
            '(torch.cuda.is_available() is False); use device="cpu" or '
            '"auto", or install a CUDA build of torch.'
        )
    return device


def _build_module(architecture, seed, masked_encoder=False):
    """A freshly initialised VAE on the CPU, without touching global random state."""
    # Built on the meta device (no memory, no global RNG draws), then
    # initialised from a local generator.
    with torch.device("meta"):
        module = VAE(*architecture, masked_encoder=masked_encoder)
    module = module.to_empty(device="cpu")
    module.reset_parameters(torch.Generator().manual_seed(seed))
    return module


def _check_count(value, name):
    # bool is an Integral in Python, but True is no count of draws or rows.
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")


def _check_observed(X, rows="X"):
    """Whether X has NaN; a ValueError if a row or a column of X has no
    observed entry (nothing to train on there)."""
    missing = np.isnan(X)
    if not missing.any():
        return False
    for axis, what, advice in (
        (1, "row(s)", "drop them"),
        (0, "feature(s)", "drop them, or impute them from other data first"),
    ):
        empty = np.flatnonzero(missing.all(axis=axis))
        if len(empty):
            shown = f"{empty[:10].tolist()}{'...' if len(empty) > 10 else ''}"
            raise ValueError(
                f"{len(empty)} {what} of {rows} (indices {shown}) are entirely "
                f"NaN: the VAE has nothing observed to train on there; {advice}."
            )
    return True


def _moments(X, missing):
    """Feature means and variances of X (float64), over the observed entries."""
    if missing:
        return np.nanmean(X, axis=0, dtype=np.float64), np.nanvar(
            X, axis=0, dtype=np.float64
        )
    return X.mean(axis=0, dtype=np.float64), X.var(axis=0, dtype=np.float64)


def _nothing_observed_scores_zero(X, scores):
    """A row with nothing observed has log p(x_o) = log 1 = 0, exactly."""
    scores[np.isnan(X).all(axis=1)] = 0.0
    return scores


def _overflow_to_minus_inf(scores):
    """Map NaN scores to -inf.

    Inputs and parameters are finite (validated, and checked after fit), so
    a NaN only comes from overflow (inf - inf, 0 * inf) in a row so far from
    the data that its density underflows: -inf, as GaussianMixture gives.
    """
    return np.where(np.isnan(scores), -np.inf, scores)


# Fits running at once in several Python threads share torch's process-wide
# thread setting: the first to start saves it and the last to end restores it.
_threads_lock = threading.Lock()
_threads_users = 0
_threads_saved = None


@contextmanager
def _torch_threads(n_threads):
    """Run torch's CPU ops on ``n_threads`` threads while fitting, then restore."""
    global _threads_users, _threads_saved
    if n_threads is None:
        yield
        return
    with _threads_lock:
        if _threads_users == 0:
            _threads_saved = torch.get_num_threads()
        _threads_users += 1
        torch.set_num_threads(n_threads)
    try:
        yield
    finally:
        with _threads_lock:
            _threads_users -= 1
            if _threads_users == 0:
                torch.set_num_threads(_threads_saved)
