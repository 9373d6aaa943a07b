"""EMGaussianMixture against scikit-learn's GaussianMixture.

Time per EM iteration from the same starting parameters, with tol=0 so both
run the same number of iterations; the reference runs on numpy and, for
'full' and 'tied', through scikit-learn's array-API path on torch CPU tensors
(in a subprocess, since SCIPY_ARRAY_API must be set before scipy is imported).
Also ``score_samples`` under the same parameters, peak memory of a fit, and
how time per iteration grows with n_samples and n_components.

    python -m benchmarks.bench_gaussian_mixture [--quick]
"""

import json
import os
import subprocess
import sys
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

from benchmarks._timing import compare, peak_memory
from sklearn_latent import EMGaussianMixture
from sklearn_latent._progress import ProgressLine

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]


def make_data(n_samples, n_features, n_components, seed=0):
    rng = np.random.RandomState(seed)
    centers = 3 * rng.randn(n_components, n_features)
    return (
        rng.randn(n_samples, n_features)
        + centers[rng.randint(n_components, size=n_samples)]
    )


def starting_point(X, n_components, covariance_type):
    """Shared initial parameters: one EM step from k-means on a subsample."""
    start = GaussianMixture(
        n_components, covariance_type=covariance_type, max_iter=1, random_state=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start.fit(X[:5000])
    return dict(
        n_components=n_components,
        covariance_type=covariance_type,
        weights_init=start.weights_,
        means_init=start.means_,
        precisions_init=start.precisions_,
        tol=0,
    )


def fit(estimator_class, X, params, n_iter):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator_class(max_iter=n_iter, **params).fit(X)


def case_name(covariance_type, n_samples, n_features, n_components):
    return f"GMM {covariance_type} n={n_samples} d={n_features} K={n_components}"


def numpy_case(covariance_type, n_samples, n_features, n_components, n_iter, repeats):
    X = make_data(n_samples, n_features, n_components)
    params = starting_point(X, n_components, covariance_type)
    result = compare(
        lambda: fit(EMGaussianMixture, X, params, n_iter),
        lambda: fit(GaussianMixture, X, params, n_iter),
        repeats=repeats,
        case=case_name(covariance_type, n_samples, n_features, n_components),
    )
    return speed_row(
        result,
        "sklearn GaussianMixture (numpy)",
        covariance_type,
        n_samples,
        n_features,
        n_components,
        n_iter,
    )


def speed_row(
    result, reference, covariance_type, n_samples, n_features, n_components, n_iter
):
    """One row of time per iteration from a :func:`compare` result."""
    return {
        "benchmark": "gaussian_mixture",
        "case": case_name(covariance_type, n_samples, n_features, n_components),
        "reference": reference,
        "covariance_type": covariance_type,
        "n_samples": n_samples,
        "n_components": n_components,
        "unit": "s/iteration",
        "ours_s": result["ours_s"] / n_iter,
        "ref_s": result["ref_s"] / n_iter,
        "speedup": result["speedup"],
        "ours_score": float(result["ours_result"].lower_bound_),
        "ref_score": float(result["ref_result"].lower_bound_),
    }


def score_samples_case(covariance_type, n_samples, n_features, n_components, repeats):
    """``score_samples`` of the data under the same parameters in both."""
    X = make_data(n_samples, n_features, n_components)
    params = starting_point(X, n_components, covariance_type)
    ours = fit(EMGaussianMixture, X, params, 2)
    reference = fit(GaussianMixture, X[:1000], params, 1)
    for name in (
        "weights_",
        "means_",
        "covariances_",
        "precisions_",
        "precisions_cholesky_",
    ):
        setattr(reference, name, getattr(ours, name))
    case = "score_samples " + case_name(
        covariance_type, n_samples, n_features, n_components
    )
    result = compare(
        lambda: ours.score_samples(X),
        lambda: reference.score_samples(X),
        repeats=repeats,
        case=case,
    )
    return {
        "benchmark": "gaussian_mixture_score_samples",
        "case": case,
        "reference": "sklearn GaussianMixture (numpy)",
        "covariance_type": covariance_type,
        "unit": "s/call",
        "ours_s": result["ours_s"],
        "ref_s": result["ref_s"],
        "speedup": result["speedup"],
        "max_abs_diff": float(
            np.max(np.abs(result["ours_result"] - result["ref_result"]))
        ),
    }


def memory_case(covariance_type, n_samples, n_features, n_components):
    X = make_data(n_samples, n_features, n_components)
    params = starting_point(X, n_components, covariance_type)
    ours = peak_memory(lambda: fit(EMGaussianMixture, X, params, 2))
    ref = peak_memory(lambda: fit(GaussianMixture, X, params, 2))
    return {
        "benchmark": "gaussian_mixture",
        "case": f"GMM {covariance_type} peak memory n={n_samples}",
        "reference": "sklearn GaussianMixture (numpy)",
        "unit": "MB (peak, tracemalloc)",
        "ours_mb": ours / 2**20,
        "ref_mb": ref / 2**20,
        "ratio": ours / ref,
    }


def array_api_worker(
    covariance_type, n_samples, n_features, n_components, n_iter, repeats
):
    """Run in a subprocess with SCIPY_ARRAY_API=1: sklearn on torch vs ours."""
    import sklearn
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    X = make_data(n_samples, n_features, n_components)
    params = starting_point(X, n_components, covariance_type)
    torch_params = {
        key: torch.asarray(value) if isinstance(value, np.ndarray) else value
        for key, value in params.items()
    }
    X_torch = torch.asarray(X)

    def reference():
        with sklearn.config_context(array_api_dispatch=True):
            return fit(
                GaussianMixture,
                X_torch,
                dict(torch_params, init_params="random_from_data"),
                n_iter,
            )

    result = compare(
        lambda: fit(EMGaussianMixture, X, params, n_iter), reference, repeats=repeats
    )
    reference_name = (
        f"sklearn GaussianMixture array API (torch {torch.__version__} CPU, "
        f"{torch.get_num_threads()} threads)"
    )
    return speed_row(
        result,
        reference_name,
        covariance_type,
        n_samples,
        n_features,
        n_components,
        n_iter,
    )


def array_api_case(*args):
    try:
        import torch  # noqa: F401
    except ImportError:
        return None
    code = (
        "import json, sys; from benchmarks.bench_gaussian_mixture import "
        f"array_api_worker; print(json.dumps(array_api_worker{args!r}))"
    )
    env = dict(os.environ, SCIPY_ARRAY_API="1")
    # One step: the subprocess's own lines would go to a pipe nobody reads.
    line = ProgressLine(f"{case_name(*args[:4])} array API", 1, unit="process")
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    line.update(1)
    line.close("done")
    return json.loads(out.stdout.strip().splitlines()[-1])


def scaling_rows(quick):
    """Time per iteration ('full') against n_samples and n_components."""
    rows = []
    sizes = [1_000, 3_000, 10_000] if quick else [1_000, 10_000, 100_000, 1_000_000]
    for n_samples in sizes:
        row = numpy_case("full", n_samples, 10, 5, 2 if quick else 3, 1)
        rows.append(dict(row, benchmark="gaussian_mixture_scaling_n"))
    for n_components in [2, 5, 10] if quick else [2, 5, 10, 20, 40]:
        n_samples = 5_000 if quick else 50_000
        row = numpy_case("full", n_samples, 20, n_components, 2 if quick else 3, 1)
        rows.append(dict(row, benchmark="gaussian_mixture_scaling_k"))
    return rows


def run(quick=False):
    """All Gaussian-mixture cases; one dict per row."""
    if quick:
        shape, n_iter, repeats = (5_000, 16, 5), 2, 1
    else:
        shape, n_iter, repeats = (100_000, 50, 20), 5, 3
    # The other types' fits take seconds, not a minute: more rounds make
    # their medians steadier against the machine's load at little cost.
    rows = [
        numpy_case(ct, *shape, n_iter, repeats if ct == "full" or quick else 9)
        for ct in COVARIANCE_TYPES
    ]
    for covariance_type in ["full", "tied"]:
        row = array_api_case(covariance_type, *shape, n_iter, repeats)
        if row is not None:
            rows.append(row)
    rows += [score_samples_case(ct, *shape, repeats) for ct in COVARIANCE_TYPES]
    rows += [memory_case(ct, *shape) for ct in COVARIANCE_TYPES]
    rows += scaling_rows(quick)
    return rows


if __name__ == "__main__":
    from benchmarks.__main__ import print_table

    print_table(run(quick="--quick" in sys.argv))
