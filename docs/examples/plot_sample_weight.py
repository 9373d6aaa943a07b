"""
=====================================================
Sample weights: repeated rows, and a coreset
=====================================================

The EM estimators' ``fit`` takes ``sample_weight``: a weight multiplies the
row's contribution to every sufficient statistic. So an integer weight is
the same as repeating the row, a zero weight drops it, and only the ratios of
the weights matter.

The second part uses this to fit a Gaussian mixture to a weighted *coreset*:
a small weighted sample whose weighted log-likelihood estimates that of the
whole data set for every model.
"""

# %%
# A weighted fit is a fit on repeated rows
# ----------------------------------------
# The iris measurements, each row with a count of 1 to 3. From the same start
# (EM is deterministic from given initial parameters), the weighted fit and
# the fit on the rows repeated by their counts reach the same model.
import time

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_iris, load_wine
from sklearn.preprocessing import StandardScaler

from sklearn_latent import EMFactorAnalysis, EMGaussianMixture

X = load_iris().data
counts = np.random.RandomState(0).randint(1, 4, size=len(X))
X_repeated = np.repeat(X, counts, axis=0)

start = dict(
    weights_init=np.full(3, 1 / 3),
    means_init=X[[0, 50, 100]],  # one flower of each species
    precisions_init=np.repeat(np.eye(4)[None], 3, axis=0),
)
weighted = EMGaussianMixture(3, **start).fit(X, sample_weight=counts)
repeated = EMGaussianMixture(3, **start).fit(X_repeated)
print(f"{len(X)} weighted rows against {len(X_repeated)} repeated rows")
for name in ["weights_", "means_", "covariances_"]:
    difference = np.max(np.abs(getattr(weighted, name) - getattr(repeated, name)))
    print(f"EMGaussianMixture {name:13s} largest difference {difference:.1e}")

# %%
# The same for factor analysis, here of the 13 standardised wine measurements.
X_wine = StandardScaler().fit_transform(load_wine().data)
counts = np.random.RandomState(0).randint(1, 4, size=len(X_wine))
fa_weighted = EMFactorAnalysis(2).fit(X_wine, sample_weight=counts)
fa_repeated = EMFactorAnalysis(2).fit(np.repeat(X_wine, counts, axis=0))
for name in ["mean_", "components_", "noise_variance_"]:
    difference = np.max(np.abs(getattr(fa_weighted, name) - getattr(fa_repeated, name)))
    print(f"EMFactorAnalysis {name:16s} largest difference {difference:.1e}")

# %%
# A coreset
# ---------
# Half a million rows from a mixture of five Gaussians. A lightweight coreset
# (Bachem, Lucic and Krause, 2018) draws m rows with probabilities
# q(x) = 1/(2n) + d(x, mean)^2 / (2 sum d^2), which favour rows far from the
# data's mean, and gives each the weight 1/(m q(x)). For any model the
# weighted sum of log p(x) over the coreset is then an unbiased estimate of
# its sum over all n rows, so the weighted fit approximately maximises the
# whole data's likelihood.
rng = np.random.RandomState(0)
centers = np.array([[0, 0], [6, 0], [3, 5], [-4, 6], [10, 7]])
scales = [1.0, 0.5, 1.5, 0.8, 1.2]
X_big = np.vstack(
    [rng.randn(100_000, 2) * s + c for c, s in zip(centers, scales, strict=True)]
)
n = len(X_big)

m = 2000
distance2 = np.sum((X_big - X_big.mean(axis=0)) ** 2, axis=1)
q = 0.5 / n + 0.5 * distance2 / distance2.sum()
rows = rng.choice(n, size=m, p=q)
coreset, coreset_weight = X_big[rows], 1 / (m * q[rows])


def timed_fit(X, sample_weight=None):
    start = time.perf_counter()
    gm = EMGaussianMixture(5, random_state=0).fit(X, sample_weight=sample_weight)
    return gm, time.perf_counter() - start


full, full_seconds = timed_fit(X_big)
small, small_seconds = timed_fit(coreset, coreset_weight)
print("log-likelihood per sample of all rows, and fit time:")
print(f"  fit on all {n} rows:     {full.score(X_big):.4f}, {full_seconds:.2f} s")
print(f"  fit on the coreset of {m}: {small.score(X_big):.4f}, {small_seconds:.2f} s")

# %%
# The estimate itself: for the model fitted on all rows, the coreset's
# weighted mean log-likelihood against the exact mean over the n rows. It
# carries the sampling error of m = 2000 draws. The fit on the coreset scores
# closer to the full fit than that error: the error shifts the estimates of
# nearby models alike, so their maximiser moves less than their maximum.
estimate = np.average(full.score_samples(coreset), weights=coreset_weight)
print(f"exact {full.score(X_big):.4f}, coreset estimate {estimate:.4f}")

# %%
# The coreset, each row drawn with an area proportional to its weight, and
# the two fitted mixtures' means.
fig, ax = plt.subplots(figsize=(6, 5))
ax.scatter(*X_big[::200].T, s=1, c="0.8", label="data (every 200th row)")
ax.scatter(
    *coreset.T,
    s=coreset_weight / coreset_weight.mean() * 4,
    alpha=0.5,
    label=f"coreset ({m} rows)",
)
ax.scatter(*full.means_.T, marker="x", s=80, c="k", label="means, all rows")
ax.scatter(*small.means_.T, marker="+", s=120, c="C3", label="means, coreset")
ax.legend(fontsize=8, loc="lower right")
ax.set_aspect("equal")
plt.show()
