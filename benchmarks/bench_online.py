"""Online EM (``partial_fit``) against batch EM on a large known mixture.

Time for ``partial_fit`` over 10,000-row batches to come within 0.01 nats per
sample of the log-likelihood that batch EM (``fit``) converges to, against
batch EM's own time to converge; each side with its default start (k-means on
its data). The online side's progress is scored on the whole data every few
batches, outside its clock. Also the peak memory of each (tracemalloc, the
data excluded).

    python -m benchmarks.bench_online [--quick]
"""

import sys
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from benchmarks._timing import peak_memory
from sklearn_latent import EMGaussianMixture
from sklearn_latent._progress import ProgressLine

GAP = 0.01  # nats per sample


def known_mixture(n_samples, n_features=20, n_components=10, seed=0):
    rng = np.random.RandomState(seed)
    means = 4 * rng.randn(n_components, n_features)
    scales = rng.uniform(0.5, 2.0, size=(n_components, n_features))
    labels = rng.randint(n_components, size=n_samples)
    return means[labels] + scales[labels] * rng.randn(n_samples, n_features)


def batch_fit(X, n_components):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return EMGaussianMixture(n_components, random_state=0, max_iter=500).fit(X)


def online_fit(X, n_components, batch_size, target=None, check_every=10):
    """partial_fit over batches until the whole-data score reaches ``target``.

    Returns (seconds spent in partial_fit, model, batches used).
    """
    gm = EMGaussianMixture(n_components, random_state=0)
    seconds, n_batches = 0.0, 0
    while True:
        for start in range(0, len(X), batch_size):
            begin = time.perf_counter()
            gm.partial_fit(X[start : start + batch_size])
            seconds += time.perf_counter() - begin
            n_batches += 1
            if target is None and n_batches * batch_size >= len(X):
                return seconds, gm, n_batches
            if target is not None and n_batches % check_every == 0:
                if gm.score(X) >= target or n_batches > 20 * len(X) / batch_size:
                    return seconds, gm, n_batches


def run(quick=False):
    n_samples, batch_size = (50_000, 5_000) if quick else (2_000_000, 10_000)
    X = known_mixture(n_samples)
    case = f"GMM full online EM n={n_samples:,} d=20 K=10 to {GAP} nats"
    # Three steps: batch EM, online EM, then the peak memory of each.
    line = ProgressLine(case, 3, unit="step")
    begin = time.perf_counter()
    batch = batch_fit(X, 10)
    batch_s = time.perf_counter() - begin
    line.update(1, batch=f"{batch_s:.3g} s")
    target = batch.score(X) - GAP
    online_s, online, n_batches = online_fit(X, 10, batch_size, target)
    line.update(2, batch=f"{batch_s:.3g} s", online=f"{online_s:.3g} s")
    rows = [
        {
            "benchmark": "online",
            "case": case,
            "reference": f"batch EM fit ({batch.n_iter_} iterations)",
            "unit": f"s to converge; online: {n_batches} batches of {batch_size:,}",
            "ours_s": online_s,
            "ref_s": batch_s,
            "speedup": batch_s / online_s,
            "ours_score": float(online.score(X)),
            "ref_score": float(batch.score(X)),
        }
    ]
    subset = X[: max(n_samples // 10, batch_size)]
    online_mb = peak_memory(lambda: online_fit(subset, 10, batch_size)) / 2**20
    batch_mb = peak_memory(lambda: batch_fit(subset, 10)) / 2**20
    line.update(3, batch=f"{batch_s:.3g} s", online=f"{online_s:.3g} s")
    line.close("done")
    rows.append(
        {
            "benchmark": "online",
            "case": f"GMM online peak memory n={len(subset):,}",
            "reference": "batch EM fit",
            "unit": "MB (peak, tracemalloc)",
            "ours_mb": online_mb,
            "ref_mb": batch_mb,
            "ratio": online_mb / batch_mb,
        }
    )
    return rows


if __name__ == "__main__":
    from benchmarks.__main__ import print_table

    print_table(run(quick="--quick" in sys.argv))
