"""Every core: a full-covariance EM iteration at 1 and 2 threads.

make_blobs n=100,000, d=50, K=20 (``random_state=0``), full covariance. Time
per EM iteration with the initialisation left out, (time of 6 iterations -
time of 1) / 5, for EMGaussianMixture (float64 and float32 input),
scikit-learn's GaussianMixture from the same start (numpy, and its array-API
path on torch CPU tensors: the child runs with SCIPY_ARRAY_API=1), and pomegranate
1.1.2 (if installed: ``pip install pomegranate==1.1.2``; float32 tensors, and
``.double()`` models on float64 tensors, since pomegranate computes in
float32 otherwise; its own k-means start, ``random_state=3``: seeds 0-2 make
it crash on this data). Thread counts are set with
threadpoolctl and ``torch.set_num_threads``; contenders alternate, median of
3 rounds.

The floor: an iteration's arithmetic is two products of the (K, p + d)
coefficients with the (p + d, n) second-order features (p = d(d+1)/2), 4 n K
(p + d) flop, at the dgemm rate measured in the same run at the same thread
count (a 2000 x 2000 product). Its time over ours is the fraction of the
floor reached. At one thread the two products are also timed alone, on one
E-step chunk's features already in cache, for every chunk of an iteration:
how close BLAS itself comes to the floor with products of this shape.

Runs in a child process: the benchmark runner pins BLAS to one thread
through the environment, which would cap the thread counts here.

    python -m benchmarks.bench_threads [--quick] [--threads 1,2,4,8] [--rounds 3]
                                       [--cases "ours float64,scikit-learn float64"]

``--threads`` and ``--rounds`` measure other thread counts (on a bigger
machine) and fewer rounds, ``--cases`` fewer contenders (ours float64 always
runs); the benchmark runner uses the defaults.
"""

import json
import os
import statistics
import subprocess
import sys
import time
import warnings

import numpy as np

THREADS = (1, 2)
STEP = "BENCH_THREADS_CHILD"


def fit_seconds(make_model, fit, n_iter=5):
    """(time of 1 + n_iter iterations - time of 1) / n_iter, and the last model.

    ``make_model(n_iter)`` builds a model ready to iterate (started), so that
    only the iterations and their fixed costs are timed."""
    times, model = {}, None
    for iterations in (1, 1 + n_iter):
        model = make_model(iterations)
        begin = time.perf_counter()
        fit(model)
        times[iterations] = time.perf_counter() - begin
    return (times[1 + n_iter] - times[1]) / n_iter, model


def contenders(X, n_components, n_iter):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    from sklearn_latent import EMGaussianMixture

    warnings.simplefilter("ignore", ConvergenceWarning)
    start = GaussianMixture(n_components, max_iter=1, random_state=0).fit(X[:5000])
    params = dict(
        weights_init=start.weights_,
        means_init=start.means_,
        precisions_init=start.precisions_,
        tol=0,
    )

    def ours(data):
        return lambda: fit_seconds(
            lambda n: EMGaussianMixture(n_components, max_iter=n, **params),
            lambda model: model.fit(data),
            n_iter,
        )

    cases = {
        "ours float64": ours(X),
        "ours float32": ours(X.astype(np.float32)),
        "scikit-learn float64": lambda: fit_seconds(
            lambda n: GaussianMixture(n_components, max_iter=n, **params),
            lambda model: model.fit(X),
            n_iter,
        ),
    }
    try:
        import torch
    except ImportError:
        return cases
    if os.environ.get("SCIPY_ARRAY_API") == "1":
        cases["scikit-learn array API torch float64"] = sklearn_on_torch(
            X, params, n_components, n_iter
        )
    try:
        from pomegranate.distributions import Normal
        from pomegranate.gmm import GeneralMixtureModel
    except ImportError:
        return cases

    def pomegranate(dtype):
        tensor = torch.tensor(X, dtype=dtype)

        def model(n_iter):
            parts = [Normal(covariance_type="full") for _ in range(n_components)]
            gmm = GeneralMixtureModel(
                parts, max_iter=n_iter, tol=-np.inf, random_state=3
            )
            gmm = gmm.double() if dtype == torch.float64 else gmm
            # Its k-means start, outside the clock: it varies by more than
            # an iteration costs on small data.
            gmm._initialize(tensor)
            return gmm

        return lambda: fit_seconds(model, lambda gmm: gmm.fit(tensor), n_iter)

    cases["pomegranate float32"] = pomegranate(torch.float32)
    cases["pomegranate float64"] = pomegranate(torch.float64)
    return cases


def sklearn_on_torch(X, params, n_components, n_iter):
    """scikit-learn's GaussianMixture on torch CPU tensors (its array-API
    path; the child runs with SCIPY_ARRAY_API=1, as that path requires)."""
    import sklearn
    import torch
    from sklearn.mixture import GaussianMixture

    X_torch = torch.asarray(X)
    params = {
        key: torch.asarray(value) if isinstance(value, np.ndarray) else value
        for key, value in params.items()
    }

    def fit(model):
        with sklearn.config_context(array_api_dispatch=True):
            model.fit(X_torch)

    return lambda: fit_seconds(
        lambda n: GaussianMixture(
            n_components, max_iter=n, init_params="random_from_data", **params
        ),
        fit,
        n_iter,
    )


def dgemm_gflops(size=2000):
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((size, size)), rng.standard_normal((size, size))
    A @ B
    best = min(_timed(lambda: A @ B) for _ in range(3))
    return 2 * size**3 / best / 1e9


def products_seconds(X, n_components, repeats=30):
    """Seconds an iteration of the E-step's two products alone, one BLAS
    thread: the (K, p + d) coefficients times a chunk's (p + d, rows)
    features, and the responsibilities (K, rows) times their transpose, on
    one chunk in cache (chunks sized as the E-step's), times the number of
    chunks. Best of 3."""
    from sklearn_latent import EMGaussianMixture
    from sklearn_latent._em import rows_per_chunk

    n_samples, n_features = X.shape
    model = EMGaussianMixture(n_components)
    rows = min(n_samples, rows_per_chunk(model._row_bytes(X), in_cache=True))
    n_columns = n_features * (n_features + 1) // 2 + n_features
    rng = np.random.default_rng(0)
    features = rng.standard_normal((n_columns, rows))
    coefficients = rng.standard_normal((n_components, n_columns))
    resp = rng.random((n_components, rows))

    def products():
        for _ in range(repeats):
            coefficients @ features
            resp @ features.T

    products()
    best = min(_timed(products) for _ in range(3))
    return best / repeats * n_samples / rows


def _timed(fn):
    begin = time.perf_counter()
    fn()
    return time.perf_counter() - begin


def measure(quick, thread_counts=THREADS, rounds=None, names=None):
    """In the child: {threads: {case: seconds}} and dgemm rates; ``names``
    keeps only those contenders ("ours float64" is always measured)."""
    from sklearn.datasets import make_blobs
    from threadpoolctl import threadpool_limits

    n_samples, n_features, n_components = (
        (10_000, 10, 3) if quick else (100_000, 50, 20)
    )
    X, _ = make_blobs(n_samples, n_features, centers=n_components, random_state=0)
    # Quick: many cheap iterations, so that their time dwarfs timing noise.
    cases = contenders(X, n_components, n_iter=20 if quick else 5)
    if names is not None:
        keep = {"ours float64", *names}
        cases = {name: case for name, case in cases.items() if name in keep}
    seconds = {t: {name: [] for name in cases} for t in thread_counts}
    gflops, products = {}, None
    for _ in range(rounds or (1 if quick else 3)):
        for threads in thread_counts:
            with threadpool_limits(threads):
                _torch_threads(threads)
                gflops.setdefault(threads, dgemm_gflops())
                if threads == 1 and products is None:
                    products = products_seconds(X, n_components)
                for name, run_case in cases.items():
                    seconds[threads][name].append(run_case()[0])
    p = n_features * (n_features + 1) // 2
    flop = 4 * n_samples * n_components * (p + n_features)
    return {
        "shape": [n_samples, n_features, n_components],
        "flop": flop,
        "gflops": gflops,
        "products_s": products,
        "seconds": {
            t: {name: statistics.median(v) for name, v in cases_.items()}
            for t, cases_ in seconds.items()
        },
    }


def _torch_threads(threads):
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(threads)


def run(quick=False, options=()):
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    env[STEP] = "1"
    env["SCIPY_ARRAY_API"] = "1"  # for scikit-learn's array-API contender
    child = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.bench_threads",
            *(["--quick"] * quick),
            *options,
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    if child.returncode:
        raise RuntimeError(f"bench_threads' child failed:\n{child.stderr[-3000:]}")
    result = json.loads(child.stdout.strip().splitlines()[-1])
    n, d, k = result["shape"]
    rows = []
    for threads, cases in result["seconds"].items():
        floor_s = result["flop"] / (result["gflops"][threads] * 1e9)
        ours = cases["ours float64"]
        for name, seconds in cases.items():
            if name == "ours float64":
                continue
            rows.append(
                {
                    "benchmark": "threads",
                    "case": f"GMM full n={n} d={d} K={k} {threads} thread(s)",
                    "reference": name,
                    "unit": (
                        f"s/iteration, ours float64; floor {floor_s:.3f} s at "
                        f"{result['gflops'][threads]:.0f} GFLOP/s dgemm: "
                        f"ours at {floor_s / ours:.0%} of it"
                    ),
                    "threads": int(threads),
                    "ours_s": ours,
                    "ref_s": seconds,
                    "speedup": seconds / ours,
                    "floor_s": floor_s,
                }
            )
    if result["products_s"] is not None:
        floor_s = result["flop"] / (result["gflops"]["1"] * 1e9)
        rows.append(
            {
                "benchmark": "threads",
                "case": f"GMM full n={n} d={d} K={k} the two products alone, 1 thread",
                "reference": "dgemm floor",
                "unit": (
                    f"s/iteration, the products on features in cache; floor "
                    f"{floor_s:.3f} s: they reach {floor_s / result['products_s']:.0%}"
                    " of it"
                ),
                "threads": 1,
                "ours_s": result["products_s"],
                "ref_s": floor_s,
                "speedup": floor_s / result["products_s"],
                "floor_s": floor_s,
            }
        )
    one = result["seconds"]["1"]["ours float64"]
    for threads, cases in result["seconds"].items():
        if threads == "1":
            continue
        rows.append(
            {
                "benchmark": "threads",
                "case": f"GMM full n={n} d={d} K={k} scaling 1 -> {threads} threads",
                "reference": "ours float64 at 1 thread",
                "unit": f"s/iteration, ours float64 at {threads} threads",
                "ours_s": cases["ours float64"],
                "ref_s": one,
                "speedup": one / cases["ours float64"],
            }
        )
    return rows


def _options(argv):
    """--threads 1,2,4, --rounds N and --cases NAME,NAME from argv."""
    thread_counts, rounds, names = THREADS, None, None
    for flag, value in zip(argv, argv[1:], strict=False):
        if flag == "--threads":
            thread_counts = tuple(int(t) for t in value.split(","))
        elif flag == "--rounds":
            rounds = int(value)
        elif flag == "--cases":
            names = value.split(",")
    return thread_counts, rounds, names


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    if os.environ.get(STEP):
        print(json.dumps(measure(quick, *_options(sys.argv))))
    else:
        from benchmarks.__main__ import print_table

        options = [a for a in sys.argv[1:] if a != "--quick"]
        print_table(run(quick, options))
