"""The GMM speed cases of two source trees, alternated, in fresh processes.

Each tree's EMGaussianMixture is timed against scikit-learn side by side
(``bench_gaussian_mixture.numpy_case``, n=100,000, d=50, K=20, 5 iterations,
one BLAS thread unless ``--threads`` says more), and the trees take turns,
so that a change can be judged against the release before it on the same
machine at the same time:

    git worktree add /tmp/previous v0.1   # or any commit
    python -m benchmarks.compare_trees /tmp/previous . [--types full tied ...]
"""

import argparse
import json
import os
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


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs=2, help="two source trees: before, after")
    parser.add_argument(
        "--types", nargs="+", default=["full", "tied", "diag", "spherical"]
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads")
    args = parser.parse_args(argv)
    trees = [os.path.abspath(tree) for tree in args.trees]
    header = ("covariance", "tree", "ours s/it", "sklearn", "speedup", "peak MB")
    print("{:<10} {:<40} {:>9} {:>8} {:>8} {:>8}".format(*header))
    for covariance_type in args.types:
        for _ in range(args.rounds):
            for tree in trees:
                result = subprocess.run(
                    [
                        sys.executable,
                        "-c",
                        CASE,
                        tree,
                        covariance_type,
                        str(args.threads),
                    ],
                    env={**os.environ, "PYTHONPATH": tree},
                    capture_output=True,
                    text=True,
                    check=True,
                )
                row = json.loads(result.stdout)
                print(
                    f"{covariance_type:<10} {tree[-40:]:<40} {row['ours_s']:>9.4f} "
                    f"{row['ref_s']:>8.4f} {row['speedup']:>7.2f}x "
                    f"{row['peak_mb']:>8.1f}",
                    flush=True,
                )


if __name__ == "__main__":
    main(sys.argv[1:])
