"""EMGaussianMixture with missing entries (NaN) against complete data.

Time per EM iteration with 20% of the entries missing completely at random
against the complete-data iteration on the same data (the same rows before
the entries were removed), from the same parameters; the two alternate, and
the medians are compared. Each side's data are prepared once (as ``fit``
does), outside the clock. The goal of issue 10 is a ratio of at most 5.

    python -m benchmarks.bench_missing [--quick]
"""

import sys
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from benchmarks._timing import compare
from sklearn_latent import EMGaussianMixture


def make_data(n_samples, n_features, n_components, missing=0.2, seed=0):
    """Blobs, and a copy with a share ``missing`` of the entries NaN (MCAR;
    every row keeps at least one entry)."""
    rng = np.random.RandomState(seed)
    centers = 3 * rng.randn(n_components, n_features)
    X = (
        rng.randn(n_samples, n_features)
        + centers[rng.randint(n_components, size=n_samples)]
    )
    mask = rng.uniform(size=X.shape) < missing
    mask[mask.all(axis=1), 0] = False
    X_nan = X.copy()
    X_nan[mask] = np.nan
    return X, X_nan


def iterations(X, start, n_iter):
    """A function running ``n_iter`` EM iterations of a copy of ``start`` on X."""
    X, sample_weight, missing = start._validated(X, None, reset=False, hint="")
    data = start._prepare(X, sample_weight, missing)
    model = EMGaussianMixture(**start.get_params())
    model.__dict__.update(start.__dict__)

    def run():
        for _ in range(n_iter):
            model._iterate(data)

    return run


def run(quick=False):
    n_samples, n_iter, repeats = (20_000, 2, 3) if quick else (100_000, 3, 9)
    n_features, n_components = 20, 5
    X, X_nan = make_data(n_samples, n_features, n_components)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = EMGaussianMixture(n_components, max_iter=2, random_state=0).fit(X)
    case = f"GMM full missing 20% MCAR n={n_samples:,} d={n_features} K={n_components}"
    result = compare(
        iterations(X_nan, start, n_iter),
        iterations(X, start, n_iter),
        repeats,
        case=case,
    )
    return [
        {
            "benchmark": "missing",
            "case": case,
            "reference": "complete data, same rows",
            "unit": "s/iteration; speedup < 1: the NaN iteration is slower",
            "ours_s": result["ours_s"] / n_iter,
            "ref_s": result["ref_s"] / n_iter,
            "speedup": result["speedup"],
            "slowdown": 1.0 / result["speedup"],
        }
    ]


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(
            f"{row['case']}: {row['ours_s']:.4f} s/iteration with NaN, "
            f"{row['ref_s']:.4f} complete: {row['slowdown']:.2f}x"
        )
