"""EMFactorAnalysis against scikit-learn's FactorAnalysis, side by side.

    python -m benchmarks.bench_factor_analysis [--quick]

Both fit data drawn from a known factor analysis model (d=100 features, k=10
factors), each with its default settings. The main case times the fit at
n=100,000 and checks that ours reaches scikit-learn's final score (mean
log-likelihood per sample) within 1e-4 nats. The scaling cases show how the
cost grows with n: scikit-learn runs an SVD of the whole data at every
iteration; ours reads the data once (``pass_s``: a fit with max_iter=0, the
pass and the start) and then iterates on a d x d matrix, at a cost that does
not depend on n. Peak memory is what Python's allocators (numpy included)
report during one fit.
"""

import statistics
import sys
import warnings

import numpy as np
from sklearn.decomposition import FactorAnalysis

from benchmarks._timing import compare, peak_memory, timed
from sklearn_latent import EMFactorAnalysis

N_FEATURES, N_COMPONENTS = 100, 10
MB = 2**20


def fa_data(n_samples, seed=0):
    """Samples of x = W z + mean + noise with a fixed random model."""
    rng = np.random.default_rng(seed)
    components = rng.normal(size=(N_COMPONENTS, N_FEATURES))
    noise_variance = rng.uniform(0.5, 2.0, size=N_FEATURES)
    mean = rng.normal(size=N_FEATURES)
    X = rng.normal(size=(n_samples, N_COMPONENTS)) @ components + mean
    X += rng.normal(size=(n_samples, N_FEATURES)) * np.sqrt(noise_variance)
    return X


def compare_fits(case, n_samples, repeats, benchmark="factor_analysis"):
    X = fa_data(n_samples)

    def ours():
        return EMFactorAnalysis(N_COMPONENTS).fit(X)

    def reference():
        return FactorAnalysis(N_COMPONENTS).fit(X)

    result = compare(ours, reference, repeats=repeats)
    fitted, ref_fitted = result["ours_result"], result["ref_result"]
    ours_score, ref_score = fitted.score(X), ref_fitted.score(X)

    def one_pass():
        return EMFactorAnalysis(N_COMPONENTS, max_iter=0).fit(X)

    pass_s = statistics.median(timed(one_pass)[0] for _ in range(repeats))
    return {
        "benchmark": benchmark,
        "case": f"FA {case} n={n_samples} d={N_FEATURES} k={N_COMPONENTS}",
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


def run(quick: bool = False) -> list[dict]:
    """Main case and scaling cases; one dict per row."""
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
    return rows


def print_table(rows):
    formats = {
        "case": "{}",
        "n_samples": "{:d}",
        "ours_s": "{:.3f}",
        "ref_s": "{:.2f}",
        "speedup": "{:.1f}",
        "pass_s": "{:.3f}",
        "ours_n_iter": "{:d}",
        "ref_n_iter": "{:d}",
        "ours_score": "{:.6f}",
        "ref_score": "{:.6f}",
        "reached": "{}",
        "ours_peak_mb": "{:.1f}",
        "ref_peak_mb": "{:.1f}",
    }
    table = [list(formats)]
    table += [[fmt.format(row[name]) for name, fmt in formats.items()] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(formats))]
    for line in table:
        print("  ".join(cell.rjust(w) for cell, w in zip(line, widths, strict=True)))


if __name__ == "__main__":
    print(f"d={N_FEATURES}, k={N_COMPONENTS}; times are medians, in seconds")
    print_table(run(quick="--quick" in sys.argv))
