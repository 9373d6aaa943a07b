"""Exact EM over a dask array on a distributed cluster, against numpy in memory.

A lazily generated dask array (n=20,000,000 x d=20 float64, 3.2 GB: each
block is drawn from a known mixture when a worker needs it, so the whole
never exists at once) on a ``LocalCluster`` of 2 single-threaded workers:
seconds per iteration of exact batch EM for EMGaussianMixture (full, K=10),
and a whole EMFactorAnalysis fit (k=5), against the same estimators on the first
2,000,000 rows in memory as numpy. Costs are compared per row (the ratio is
dask's seconds per row over numpy's). Also the client's peak memory during
the dask fit (tracemalloc: it must not grow with n) and the workers' peak
resident memory.

Per iteration is the median of 5 EM iterations, each timed alone, from fixed
initial parameters: the first pass (which also checks the values) and the
start are left out on both sides. The dask side's time includes drawing the data,
whose cost alone (a pass that only reads every block) is reported too: it
dominates a factor analysis fit, whose work per row is small.

    python -m benchmarks.bench_dask [--quick]

Pointing the same code at a real cluster needs only another Client:
``distributed.Client("tcp://scheduler-address:8786")``.
"""

import resource
import statistics
import sys
import time
import tracemalloc

import numpy as np

from sklearn_latent import EMFactorAnalysis, EMGaussianMixture

N_FEATURES, N_COMPONENTS, BLOCK_ROWS = 20, 10, 250_000


def mixture_block(block_id, n_rows, seed=0):
    """Block ``block_id`` of the known mixture: the same rows on any worker."""
    parameters = np.random.default_rng(seed)
    means = 4 * parameters.standard_normal((N_COMPONENTS, N_FEATURES))
    scales = parameters.uniform(0.5, 2.0, (N_COMPONENTS, N_FEATURES))
    rng = np.random.default_rng([seed, block_id])
    labels = rng.integers(N_COMPONENTS, size=n_rows)
    noise = rng.standard_normal((n_rows, N_FEATURES))
    return means[labels] + scales[labels] * noise


def lazy_mixture(n_samples, block_rows=BLOCK_ROWS):
    import dask.array as da

    n_blocks = -(-n_samples // block_rows)
    sizes = [min(block_rows, n_samples - i * block_rows) for i in range(n_blocks)]
    return da.map_blocks(
        lambda block_info=None: mixture_block(
            block_info[None]["chunk-location"][0],
            block_info[None]["chunk-shape"][0],
        ),
        chunks=(tuple(sizes), (N_FEATURES,)),
        dtype=np.float64,
        meta=np.empty((0, 0)),
    )


def in_memory(n_samples, block_rows=BLOCK_ROWS):
    blocks = [
        mixture_block(i, min(block_rows, n_samples - start))
        for i, start in enumerate(range(0, n_samples, block_rows))
    ]
    return np.concatenate(blocks)


def seconds_per_iteration(X, start, n_iter=5):
    """Median seconds of ``n_iter`` EM iterations from ``start``'s parameters,
    each timed alone (the first pass and the start are left out), and the
    last iteration's mean log-likelihood."""
    gm = EMGaussianMixture(
        N_COMPONENTS,
        weights_init=start.weights_,
        means_init=start.means_,
        precisions_init=start.precisions_,
    )
    X, _, _ = gm._validated(X, None, reset=True, hint="")
    gm._check_parameters(X, None)
    data = gm._prepare(X, None)
    gm._initialize(data, np.random.RandomState(0))
    times = []
    for _ in range(n_iter):
        begin = time.perf_counter()
        lower_bound = gm._iterate(data)
        times.append(time.perf_counter() - begin)
    return statistics.median(times), lower_bound


def factor_analysis_seconds(X):
    """Seconds of a whole EMFactorAnalysis fit (k=5: its moment pass, EM on
    the scatter, the pass that signs the factors) and its log-likelihood."""
    begin = time.perf_counter()
    fa = EMFactorAnalysis(5).fit(X)
    return time.perf_counter() - begin, fa.lower_bound_


def run(quick=False):
    from distributed import Client, LocalCluster

    n_samples, n_memory = (200_000, 50_000) if quick else (20_000_000, 2_000_000)
    block_rows = 25_000 if quick else BLOCK_ROWS
    X_memory = in_memory(n_memory, block_rows)
    start = EMGaussianMixture(N_COMPONENTS, max_iter=0, random_state=0).fit(
        X_memory[:100_000]
    )
    numpy_s, numpy_score = seconds_per_iteration(X_memory, start)
    numpy_fa_s, numpy_fa_score = factor_analysis_seconds(X_memory)
    rows = []
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        X = lazy_mixture(n_samples, block_rows)
        # The client's own allocations while it drives the fit.
        # What drawing the data costs: a pass that only reads every block.
        begin = time.perf_counter()
        X.sum(axis=0).compute()
        generation_s = time.perf_counter() - begin
        tracemalloc.start()
        dask_s, dask_score = seconds_per_iteration(X, start)
        client_mb = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.reset_peak()
        dask_fa_s, dask_fa_score = factor_analysis_seconds(X)
        client_fa_mb = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        worker_mb = (
            max(
                client.run(
                    lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                ).values()
            )
            / 2**10
        )
        per_row = (dask_s / n_samples) / (numpy_s / n_memory)
        rows.append(
            {
                "benchmark": "dask",
                "case": f"GMM full K=10 dask n={n_samples:,} d=20, 2 workers",
                "reference": f"numpy in memory, n={n_memory:,}",
                "unit": (
                    f"s/iteration; per-row cost ratio {per_row:.2f}; "
                    f"client peak {client_mb:.1f} MB, worker peak RSS "
                    f"{worker_mb:.0f} MB"
                ),
                "ours_s": dask_s,
                "ref_s": numpy_s,
                "speedup": numpy_s / dask_s,
                "per_row_ratio": per_row,
                "client_peak_mb": client_mb,
                "worker_peak_rss_mb": worker_mb,
                "ours_score": float(dask_score),
                "ref_score": float(numpy_score),
            }
        )
        per_row = (dask_fa_s / n_samples) / (numpy_fa_s / n_memory)
        rows.append(
            {
                "benchmark": "dask",
                "case": f"EMFactorAnalysis k=5 dask n={n_samples:,} d=20, 2 workers",
                "reference": f"numpy in memory, n={n_memory:,}",
                "unit": (
                    f"s/fit (two passes); per-row cost ratio {per_row:.2f}; "
                    f"client peak {client_fa_mb:.1f} MB; drawing the data "
                    f"takes {generation_s:.1f} s a pass"
                ),
                "generation_s": generation_s,
                "ours_s": dask_fa_s,
                "ref_s": numpy_fa_s,
                "speedup": numpy_fa_s / dask_fa_s,
                "per_row_ratio": per_row,
                "client_peak_mb": client_fa_mb,
                "ours_score": float(dask_fa_score),
                "ref_score": float(numpy_fa_score),
            }
        )
    return rows


if __name__ == "__main__":
    from benchmarks.__main__ import print_table

    print_table(run(quick="--quick" in sys.argv))
