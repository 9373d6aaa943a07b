"""The accuracy reproducers of EMGaussianMixture, side by side with scikit-learn.

Each case prints what scikit-learn and EMGaussianMixture return and the
truth to compare with (a cluster's own sample variance, or the same fit
without the offset):

    python -m benchmarks.accuracy_gaussian_mixture
"""

import warnings

import numpy as np
from sklearn.mixture import GaussianMixture

from sklearn_latent import EMGaussianMixture


def two_clusters(L, dtype, n=500, seed=0):
    """Two unit-variance clusters at -L and +L in both features."""
    rng = np.random.RandomState(seed)
    return np.r_[rng.randn(n, 2) - L, rng.randn(n, 2) + L].astype(dtype)


def attempt(fit):
    try:
        return fit()
    except ValueError as error:
        return f"ValueError: {str(error)[:40]}..."


def first_variance(cls, X, L):
    def fit():
        gm = cls(2, means_init=[[-L, -L], [L, L]]).fit(X)
        return f"{gm.covariances_[0, 0, 0]:.4f}"

    return attempt(fit)


def main():
    warnings.simplefilter("ignore")
    rows = []
    for L, dtype in [(1e3, np.float32), (1e4, np.float32), (1e8, np.float64)]:
        X = two_clusters(L, dtype)
        truth = X[:500, 0].astype(np.float64).var()
        rows.append(
            (
                f"{dtype.__name__}, clusters at ±{L:g}: variance",
                first_variance(GaussianMixture, X, L),
                first_variance(EMGaussianMixture, X, L),
                f"{truth:.4f}",
            )
        )
    X = two_clusters(1e4, np.float64)
    X32 = X.astype(np.float32)
    errors = []
    for cls in (GaussianMixture, EMGaussianMixture):
        gm = cls(2, means_init=[[-1e4, -1e4], [1e4, 1e4]]).fit(X)
        error = abs(gm.score(X32) - gm.score(X32.astype(np.float64)))
        errors.append(f"{error:.1e} nats")
    rows.append(("float64 model, float32 input at ±1e4: score error", *errors, "0"))

    rng = np.random.RandomState(0)
    X = rng.randn(1000, 2) @ np.array([[1.0, 0.3], [0.0, 1.0]])
    X[:500] += 5
    truth = EMGaussianMixture(2, covariance_type="tied", random_state=0).fit(X)
    tied = []
    for cls in (GaussianMixture, EMGaussianMixture):
        gm = cls(2, covariance_type="tied", random_state=0).fit(X + 1e7)
        tied.append(f"{gm.covariances_[0, 0]:.4f}")
    rows.append(
        (
            "tied, data offset by 1e7: covariance[0, 0]",
            *tied,
            f"{truth.covariances_[0, 0]:.4f}",
        )
    )
    X = np.r_[rng.randn(200, 2), rng.randn(200, 2) + 4]
    unweighted = EMGaussianMixture(2, random_state=0).fit(X)
    tiny = EMGaussianMixture(2, random_state=0).fit(
        X, sample_weight=np.full(400, 1e-20)
    )
    rows.append(
        (
            "sample_weight=1e-20 everywhere: means[0]",
            "no sample_weight",
            str(tiny.means_[0].round(3)),
            str(unweighted.means_[0].round(3)),
        )
    )
    far = np.full((1, 2), 1e155)
    rows.append(
        (
            "score_samples of a point at 1e155",
            str(GaussianMixture(2, random_state=0).fit(X).score_samples(far)[0]),
            str(unweighted.score_samples(far)[0]),
            "-inf",
        )
    )
    header = ("case", "scikit-learn", "EMGaussianMixture", "truth")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
