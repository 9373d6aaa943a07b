"""The command line: ``python -m sklearn_latent COMMAND [OPTIONS]``."""

import argparse
import sys
from pathlib import Path


def seed(text):
    """A non-negative integer, as numpy's RandomState accepts."""
    value = int(text)
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be in [0, 2**32), got {value}")
    return value


def build_parser():
    """The argument parser, with one subparser per command."""
    parser = argparse.ArgumentParser(
        prog="python -m sklearn_latent",
        description="sklearn-latent: latent-variable models (Gaussian mixture and "
        "factor analysis fitted by EM, a variational auto-encoder) with the "
        "scikit-learn API.",
    )
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", title="commands"
    )
    demo = commands.add_parser(
        "demo",
        help="fit EMGaussianMixture, EMFactorAnalysis and VAEEstimator to the "
        "digits; print their held-out log-likelihoods and draw their samples",
        description="Fit EMGaussianMixture (n_components chosen by GridSearchCV), "
        "EMFactorAnalysis and VAEEstimator to scikit-learn's bundled digits "
        "(no download), print one table of held-out log-likelihood (exact for "
        "EM; ELBO and importance-weighted estimate for the VAE), parameter "
        "counts and fit times, and write DIR/demo.png: digits sampled from "
        "each model and each model's training curve. Under a minute on 2 cores.",
    )
    demo.add_argument(
        "--out",
        type=Path,
        default=Path("out"),
        metavar="DIR",
        help="folder for demo.png, created if needed (default: %(default)s)",
    )
    demo.add_argument(
        "--seed",
        type=seed,
        default=0,
        metavar="N",
        help="seeds the data's noise, the split and the models (default: 0)",
    )
    demo.add_argument(
        "--quick",
        action="store_true",
        help="a few seconds: fewer digits, a smaller grid and VAE; rough numbers",
    )
    return parser


def main(argv=None):
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "demo":
            from ._demo import run

            run(out=args.out, seed=args.seed, quick=args.quick)
    # Expected failures (output folder, data, a fit, a missing optional
    # dependency) get one line; anything else is a bug and keeps its traceback.
    except (OSError, ValueError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
