"""What ``verbose`` costs: nothing when silent, little for the live line.

Small fits with many cheap iterations, where a cost per iteration shows most,
timed side by side (tol=0, so that every fit runs max_iter iterations):

- silent: ``verbose=0`` against the same estimator with its progress hooks
  replaced by empty methods (the EM loop with no progress code at all);
  1.00x means that being silent costs nothing;
- live line: ``verbose=1``, drawing on a simulated terminal (tqdm's bar where
  tqdm is installed), against ``verbose=0``.

    python -m benchmarks.bench_verbose [--quick]
"""

import contextlib
import io
import sys
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from benchmarks._timing import compare
from sklearn_latent import EMFactorAnalysis, EMGaussianMixture, VAEEstimator


class Terminal(io.StringIO):
    def isatty(self):
        return True


def without_hooks(estimator_class):
    """``estimator_class`` with empty progress hooks."""

    def nothing(self, *args):
        pass

    hooks = ("_verbose_init_begin", "_verbose_iter_end", "_verbose_init_end")
    return type(
        estimator_class.__name__, (estimator_class,), dict.fromkeys(hooks, nothing)
    )


def fitting(estimator_class, X, **params):
    """A function that fits a new ``estimator_class(**params)`` to X; progress
    lines go to a simulated terminal."""

    def fit():
        with warnings.catch_warnings(), contextlib.redirect_stderr(Terminal()):
            warnings.simplefilter("ignore", ConvergenceWarning)
            return estimator_class(**params).fit(X)

    return fit


def row(case, reference, result):
    return {
        "benchmark": "verbose",
        "case": case,
        "reference": reference,
        "unit": "s/fit",
        "ours_s": result["ours_s"],
        "ref_s": result["ref_s"],
        "speedup": result["speedup"],
    }


def run(quick=False):
    """Per EM estimator a silent and a live-line row; the VAE's live line."""
    n_iter, epochs, repeats = (30, 5, 3) if quick else (300, 50, 11)
    X = np.random.RandomState(0).normal(size=(500, 10))
    # PPCA (isotropic noise): diagonal noise's quasi-Newton runs would
    # dominate the iterations of factor analysis.
    models = {
        "GMM": (EMGaussianMixture, dict(n_components=3, random_state=0)),
        "PPCA": (EMFactorAnalysis, dict(n_components=2, noise="isotropic")),
    }
    cases = []  # (case, ours, reference, what the reference is)
    for name, (estimator, params) in models.items():
        params = dict(params, max_iter=n_iter, tol=0)
        silent = fitting(estimator, X, **params)
        unhooked = fitting(without_hooks(estimator), X, **params)
        live = fitting(estimator, X, verbose=1, **params)
        case = f"{name} n=500 d=10 {n_iter} it"
        cases.append((f"{case}, verbose=0", silent, unhooked, "no progress hooks"))
        cases.append((f"{case}, verbose=1", live, silent, "verbose=0"))
    params = dict(
        hidden_layer_sizes=(16,),
        max_iter=epochs,
        n_iter_no_change=np.inf,
        random_state=0,
    )
    cases.append(
        (
            f"VAE n=500 d=10 {epochs} epochs, verbose=1",
            fitting(VAEEstimator, X, verbose=1, **params),
            fitting(VAEEstimator, X, **params),
            "verbose=0",
        )
    )
    rows = []
    for case, ours, reference, reference_name in cases:
        reference()  # untimed: first calls pay for imports and caches
        result = compare(ours, reference, repeats, case=case)
        rows.append(row(case, reference_name, result))
    return rows


if __name__ == "__main__":
    from benchmarks.__main__ import print_table

    print_table(run(quick="--quick" in sys.argv))
