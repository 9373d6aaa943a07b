"""EMFactorAnalysis against scikit-learn's FactorAnalysis, side by side.

    python -m benchmarks.bench_factor_analysis [--quick] [--heywood | --main]

Both fit data drawn from a known factor analysis model (d=100 features, k=10
factors), each with its default settings. The main case times the fit at
n=100,000 and checks that ours reaches scikit-learn's final score (mean
log-likelihood per sample) within 1e-4 nats. The scaling cases show how the
cost grows with n: scikit-learn runs an SVD of the whole data at every
iteration; ours reads the data once (``pass_s``: a fit with max_iter=0, the
pass, the start and the last pass) and then iterates on a d x d matrix, at a
cost that does not depend on n; a last pass over the data gives the factors
scikit-learn's signs. Peak memory is what Python's allocators (numpy
included) report during one fit.

The wide cases have fewer samples than features (n x d = 400 x 4,096, as
scikit-learn's faces example, 200 x 20,000 and 100 x 100,000), where ours
iterates on the centred data instead of a d x d matrix. Their scores are
computed by our O(n d k) formula for both fits: scikit-learn's ``score``
builds the d x d precision (75 GiB at d=100,000). ``peak_ratio``: our peak
memory over scikit-learn's.

The Heywood cases fit scikit-learn's "Model selection with Probabilistic PCA
and Factor Analysis" data (n=500, d=25, rank 5, k=0..25) and 1000 x 50 data of
rank 10 with k=20..45: factors beyond the rank drive noise variances towards
zero, where plain EM crawls. ``reached``: our final score is at least
scikit-learn's. ``--heywood`` runs these rows alone, ``--main`` the main row.
"""

import statistics
import sys
import warnings

import numpy as np
from scipy import linalg
from sklearn.decomposition import FactorAnalysis

from benchmarks._timing import compare, peak_memory, timed
from sklearn_latent import EMFactorAnalysis
from sklearn_latent._factor_kernels import _log_likelihood_samples

N_FEATURES, N_COMPONENTS = 100, 10
MB = 2**20


def fa_data(n_samples, n_features=N_FEATURES, n_components=N_COMPONENTS, seed=0):
    """Samples of x = W z + mean + noise with a fixed random model."""
    rng = np.random.default_rng(seed)
    components = rng.normal(size=(n_components, n_features))
    noise_variance = rng.uniform(0.5, 2.0, size=n_features)
    mean = rng.normal(size=n_features)
    X = rng.normal(size=(n_samples, n_components)) @ components + mean
    X += rng.normal(size=(n_samples, n_features)) * np.sqrt(noise_variance)
    return X


def compare_fits(case, n_samples, repeats, benchmark="factor_analysis"):
    X = fa_data(n_samples)

    def ours():
        return EMFactorAnalysis(N_COMPONENTS).fit(X)

    def reference():
        return FactorAnalysis(N_COMPONENTS).fit(X)

    name = f"FA {case} n={n_samples} d={N_FEATURES} k={N_COMPONENTS}"
    result = compare(ours, reference, repeats=repeats, case=name)
    fitted, ref_fitted = result["ours_result"], result["ref_result"]
    ours_score, ref_score = fitted.score(X), ref_fitted.score(X)

    def one_pass():
        return EMFactorAnalysis(N_COMPONENTS, max_iter=0).fit(X)

    pass_s = statistics.median(timed(one_pass)[0] for _ in range(repeats))
    return {
        "benchmark": benchmark,
        "case": name,
        "reference": "sklearn FactorAnalysis (defaults)",
        "unit": "s/fit",
        "n_samples": n_samples,
        "ours_s": result["ours_s"],
        "ref_s": result["ref_s"],
        "speedup": result["speedup"],
        "ours_score": ours_score,
        "ref_score": ref_score,
        "reached": bool(ours_score >= ref_score - 1e-4),
        "ours_n_iter": fitted.n_iter_,
        "ref_n_iter": ref_fitted.n_iter_,
        "pass_s": pass_s,
        "ours_peak_mb": peak_memory(ours) / MB,
        "ref_peak_mb": peak_memory(reference) / MB,
    }


def compare_wide(n_samples, n_features, n_components, repeats):
    """One row: fewer samples than features, both with their defaults."""
    X = fa_data(n_samples, n_features, n_components)

    def ours():
        return EMFactorAnalysis(n_components).fit(X)

    def reference():
        return FactorAnalysis(n_components).fit(X)

    def score(fitted):
        return _log_likelihood_samples(
            X, fitted.mean_, fitted.components_, fitted.noise_variance_
        ).mean()

    result = compare(ours, reference, repeats=repeats)
    fitted, ref_fitted = result["ours_result"], result["ref_result"]
    ours_score, ref_score = score(fitted), score(ref_fitted)
    ours_peak, ref_peak = peak_memory(ours) / MB, peak_memory(reference) / MB
    return {
        "benchmark": "factor_analysis_wide",
        "case": f"FA wide n={n_samples} d={n_features} k={n_components}",
        "reference": "sklearn FactorAnalysis (defaults)",
        "unit": "s/fit",
        "n_samples": n_samples,
        "n_features": n_features,
        "ours_s": result["ours_s"],
        "ref_s": result["ref_s"],
        "speedup": result["speedup"],
        "ours_score": ours_score,
        "ref_score": ref_score,
        "reached": bool(ours_score >= ref_score - 1e-4),
        "ours_n_iter": fitted.n_iter_,
        "ref_n_iter": ref_fitted.n_iter_,
        "ours_peak_mb": ours_peak,
        "ref_peak_mb": ref_peak,
        "peak_ratio": ours_peak / ref_peak,
    }


def wide_rows(quick=False):
    """400 x 4,096 (k=6), 200 x 20,000 (k=10) and 100 x 100,000 (k=5)."""
    if quick:
        return [compare_wide(100, 2_000, 5, repeats=1)]
    return [
        compare_wide(400, 4_096, 6, repeats=5),
        compare_wide(200, 20_000, 10, repeats=5),
        compare_wide(100, 100_000, 5, repeats=3),
    ]


def model_selection_data(n_samples, n_features, rank, seed=42):
    """Low-rank data with homoscedastic and heteroscedastic noise, as in
    scikit-learn's example "Model selection with Probabilistic PCA and Factor
    Analysis"; returns the two data sets."""
    rng = np.random.RandomState(seed)
    U, _, _ = linalg.svd(rng.randn(n_features, n_features))
    X = rng.randn(n_samples, rank) @ U[:, :rank].T
    homoscedastic = X + rng.randn(n_samples, n_features)
    sigmas = rng.rand(n_features) + 0.5
    heteroscedastic = X + rng.randn(n_samples, n_features) * sigmas
    return homoscedastic, heteroscedastic


def compare_heywood(name, X, n_components, repeats):
    """One row: both estimators with their defaults; n_components beyond the
    rank puts noise variances near zero (Heywood cases), where EM crawls."""
    n_samples, n_features = X.shape
    case = f"FA {name} n={n_samples} d={n_features} k={n_components}"
    result = compare(
        lambda: EMFactorAnalysis(n_components).fit(X),
        lambda: FactorAnalysis(n_components).fit(X),
        repeats=repeats,
        case=case,
    )
    fitted, ref_fitted = result["ours_result"], result["ref_result"]
    ours_score, ref_score = fitted.score(X), ref_fitted.score(X)
    return {
        "benchmark": "factor_analysis_heywood",
        "case": case,
        "reference": "sklearn FactorAnalysis (defaults)",
        "unit": "s/fit",
        "n_components": n_components,
        "ours_s": result["ours_s"],
        "ref_s": result["ref_s"],
        "speedup": result["speedup"],
        "ours_score": ours_score,
        "ref_score": ref_score,
        "reached": bool(ours_score >= ref_score - 1e-6),
        "ours_n_iter": fitted.n_iter_,
        "ref_n_iter": ref_fitted.n_iter_,
    }


def heywood_rows(quick=False):
    """scikit-learn's model selection example (n=500, d=25, rank 5, k=0..25)
    and 1000 x 50 data of rank 10 with k=20..45."""
    repeats = 1 if quick else 5
    homo, hetero = model_selection_data(500, 25, 5)
    _, wide = model_selection_data(1000, 50, 10)
    cases = [("homoscedastic", homo, k) for k in range(0, 26, 5)]
    cases += [("heteroscedastic", hetero, k) for k in range(0, 26, 5)]
    cases += [("rank 10", wide, k) for k in range(20, 46, 5)]
    if quick:
        cases = cases[::4]
    return [compare_heywood(name, X, k, repeats) for name, X, k in cases]


def run(quick: bool = False) -> list[dict]:
    """Main case, scaling cases, wide cases and Heywood cases; one dict per
    row."""
    main_n = 10_000 if quick else 100_000
    scaling = [1_000, 5_000] if quick else [1_000, 10_000, 300_000, 1_000_000]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        rows = [compare_fits("main", main_n, repeats=3)]
        for n_samples in scaling:
            # Small fits are short and noisy: more repeats; large ones are long.
            repeats = 5 if n_samples <= 10_000 else 1 if n_samples > 100_000 else 3
            rows.append(
                compare_fits("scaling", n_samples, repeats, "factor_analysis_scaling_n")
            )
        rows += wide_rows(quick)
        rows += heywood_rows(quick)
    return rows


def print_table(rows):
    formats = {
        "case": "{}",
        "n_samples": "{:d}",
        "n_features": "{:d}",
        "ours_s": "{:.3f}",
        "ref_s": "{:.3f}",
        "speedup": "{:.2f}",
        "pass_s": "{:.3f}",
        "ours_n_iter": "{:d}",
        "ref_n_iter": "{:d}",
        "ours_score": "{:.6f}",
        "ref_score": "{:.6f}",
        "reached": "{}",
        "ours_peak_mb": "{:.1f}",
        "ref_peak_mb": "{:.1f}",
        "peak_ratio": "{:.2f}",
    }
    table = [list(formats)]
    table += [
        [fmt.format(row[name]) if name in row else "" for name, fmt in formats.items()]
        for row in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(formats))]
    for line in table:
        print("  ".join(cell.rjust(w) for cell, w in zip(line, widths, strict=True)))


if __name__ == "__main__":
    from threadpoolctl import threadpool_limits

    # One BLAS thread, as ``python -m benchmarks`` runs (after the imports:
    # threadpoolctl limits only the libraries already loaded).
    with threadpool_limits(1):
        if "--heywood" in sys.argv:  # the Heywood rows alone
            print_table(heywood_rows(quick="--quick" in sys.argv))
        elif "--main" in sys.argv:  # the main row alone
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                print_table([compare_fits("main", 100_000, repeats=3)])
        else:
            print(f"d={N_FEATURES}, k={N_COMPONENTS} unless said; medians, in seconds")
            print_table(run(quick="--quick" in sys.argv))
