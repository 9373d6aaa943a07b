"""The speed cases of two source trees, alternated, in fresh processes.

Each tree's EMGaussianMixture is timed against scikit-learn side by side
(``bench_gaussian_mixture.numpy_case``, n=100,000, d=50, K=20, 5 iterations,
one BLAS thread unless ``--threads`` says more), and the trees take turns,
so that a change can be judged against the release before it on the same
machine at the same time:

    git worktree add /tmp/previous v0.1   # or any commit
    python -m benchmarks.compare_trees /tmp/previous . [--types full tied ...]

With ``--heywood`` the cases are instead bench_factor_analysis's Heywood
rows (EMFactorAnalysis against scikit-learn, one BLAS thread, each tree's
own copy of the benchmark), one row a process, the trees taking turns row
by row; the totals come last.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

CASE = r"""
import json, sys
from threadpoolctl import threadpool_limits
sys.path.insert(0, sys.argv[1])
import sklearn_latent
assert sklearn_latent.__file__.startswith(sys.argv[1]), sklearn_latent.__file__
from benchmarks.bench_gaussian_mixture import memory_case, numpy_case
# After the imports: threadpoolctl limits only the libraries already loaded.
threadpool_limits(int(sys.argv[3]))
speed = numpy_case(sys.argv[2], 100_000, 50, 20, 5, 3)
memory = memory_case(sys.argv[2], 100_000, 50, 20)
print(json.dumps({k: speed[k] for k in ("ours_s", "ref_s", "speedup")}
                 | {"peak_mb": memory["ours_mb"]}))
"""

HEYWOOD_CASE = r"""
import json, sys, warnings
from threadpoolctl import threadpool_limits
sys.path.insert(0, sys.argv[1])
import sklearn_latent
assert sklearn_latent.__file__.startswith(sys.argv[1]), sklearn_latent.__file__
import benchmarks.bench_factor_analysis as bench
threadpool_limits(1)
# The tree's own rows, all but one skipped.
target, seen, compare = int(sys.argv[2]), [], bench.compare_heywood
def one_row(*args, **kwargs):
    seen.append(None)
    return compare(*args, **kwargs) if len(seen) - 1 == target else None
bench.compare_heywood = one_row
with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)
    rows = [row for row in bench.heywood_rows() if row is not None]
print(json.dumps({k: rows[0][k] for k in ("case", "ours_s", "ref_s", "ours_score")}
                 | {"n_rows": len(seen)}))
"""


def run_case(case, tree, *args):
    """The JSON a case prints, run on ``tree`` in a fresh process."""
    result = subprocess.run(
        [sys.executable, "-c", case, tree, *args],
        env={**os.environ, "PYTHONPATH": tree},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout)


def compare_heywood(trees, rounds):
    """Each tree's Heywood rows, one row a process, trees alternated row by
    row (the machine's load drifts), medians over rounds."""
    runs = {tree: {} for tree in trees}
    n_rows, row = 1, 0
    while row < n_rows:
        for _ in range(rounds):
            for tree in trees:
                result = run_case(HEYWOOD_CASE, tree, str(row))
                runs[tree].setdefault(row, []).append(result)
                n_rows = result["n_rows"]
        row += 1
    print(f"{'case':<36} {'tree':<30} {'ours s':>8} {'sklearn':>8} {'score':>11}")
    totals = dict.fromkeys(trees, 0.0)
    for row in range(n_rows):
        for tree in trees:
            results = runs[tree][row]
            ours = statistics.median(result["ours_s"] for result in results)
            ref = statistics.median(result["ref_s"] for result in results)
            totals[tree] += ours
            print(
                f"{results[0]['case']:<36} {tree[-30:]:<30} {ours:>8.4f} "
                f"{ref:>8.4f} {results[0]['ours_score']:>11.6f}"
            )
    for tree, total in totals.items():
        print(f"total ours {tree[-30:]:<30} {total:.4f} s")


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs=2, help="two source trees: before, after")
    parser.add_argument(
        "--types", nargs="+", default=["full", "tied", "diag", "spherical"]
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads")
    parser.add_argument(
        "--heywood", action="store_true", help="factor analysis's Heywood rows"
    )
    args = parser.parse_args(argv)
    trees = [os.path.abspath(tree) for tree in args.trees]
    if args.heywood:
        compare_heywood(trees, args.rounds)
        return
    header = ("covariance", "tree", "ours s/it", "sklearn", "speedup", "peak MB")
    print("{:<10} {:<40} {:>9} {:>8} {:>8} {:>8}".format(*header))
    for covariance_type in args.types:
        for _ in range(args.rounds):
            for tree in trees:
                row = run_case(CASE, tree, covariance_type, str(args.threads))
                print(
                    f"{covariance_type:<10} {tree[-40:]:<40} {row['ours_s']:>9.4f} "
                    f"{row['ref_s']:>8.4f} {row['speedup']:>7.2f}x "
                    f"{row['peak_mb']:>8.1f}",
                    flush=True,
                )


if __name__ == "__main__":
    main(sys.argv[1:])
