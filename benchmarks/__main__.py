"""Run every benchmark: ``python -m benchmarks [--quick] [--out DIR]``.

Each ``benchmarks/bench_*.py`` module exposes ``run(quick) -> list[dict]``.
Prints one table of ratios measured side by side (and, for bench_impute,
the imputation error of each imputer), writes ``results.json`` and
``scaling.png`` (time per iteration against n_samples and n_components) into
the output folder.
"""

import argparse
import importlib
import json
import os
import platform
import sys
import time
from pathlib import Path

from threadpoolctl import threadpool_limits

MODULES = sorted(p.stem for p in Path(__file__).parent.glob("bench_*.py"))


def format_row(row):
    if "rmse" in row or "skipped" in row:  # a quality row (bench_impute)
        value = f"{row['rmse']:>10.4f}" if "rmse" in row else row["skipped"]
        return f"{row['case']:<44} {value}  [{row['unit']}; seeds {row['seeds']}]"
    if "speedup" in row:
        scores = ""
        if row.get("ours_score") is not None:
            scores = f"{row['ours_score']:>11.4f} {row['ref_score']:>11.4f}"
        return (
            f"{row['case']:<44} {row['ours_s']:>10.4f} {row['ref_s']:>10.4f} "
            f"{row['speedup']:>7.2f}x {scores}  "
            f"[{row.get('unit', 's')}; vs {row.get('reference', 'reference')}]"
        )
    return (
        f"{row['case']:<44} {row['ours_mb']:>8.1f}MB {row['ref_mb']:>8.1f}MB "
        f"{row['ratio']:>7.2f}   [{row['unit']}; vs {row['reference']}]"
    )


def print_table(rows):
    print(
        f"{'case':<44} {'ours':>10} {'reference':>10} {'speedup':>8} "
        f"{'our score':>11} {'ref score':>11}"
    )
    for row in rows:
        print(format_row(row), flush=True)


def plot_scaling(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, suffix, key in [
        (axes[0], "_scaling_n", "n_samples"),
        (axes[1], "_scaling_k", "n_components"),
    ]:
        for name in sorted(
            {r["benchmark"] for r in rows if r.get("benchmark", "").endswith(suffix)}
        ):
            series = [r for r in rows if r.get("benchmark") == name]
            x = [r[key] for r in series]
            label = name.removesuffix(suffix)
            ax.plot(x, [r["ours_s"] for r in series], "o-", label=f"{label}: ours")
            ax.plot(x, [r["ref_s"] for r in series], "s--", label=f"{label}: reference")
        ax.set_xlabel(key)
        ax.set_ylabel("seconds")
        ax.set_xscale("log" if key == "n_samples" else "linear")
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    axes[0].set_title("cost against n_samples")
    axes[1].set_title("cost against n_components")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes, one repeat: about a minute"
    )
    parser.add_argument(
        "--out",
        default="benchmarks/results",
        help="folder for results.json and scaling.png",
    )
    parser.add_argument(
        "--only",
        nargs="*",
        default=MODULES,
        choices=MODULES,
        help="run only these modules",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="BLAS/OpenMP threads for both sides (default 1: on a shared machine, "
        "multi-threaded BLAS on small matrices mostly measures contention)",
    )
    args = parser.parse_args(argv)
    # Subprocesses (the array-API case) read the environment; this process is
    # limited through threadpoolctl.
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    rows = []
    started = time.perf_counter()
    for name in args.only:
        print(f"== {name}", flush=True)
        module = importlib.import_module(f"benchmarks.{name}")
        with threadpool_limits(args.threads):
            module_rows = module.run(quick=args.quick)
        print_table(module_rows)
        rows += module_rows
    machine = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": sys.version.split()[0],
        "quick": args.quick,
        "threads": args.threads,
        "cpus": os.cpu_count(),
        "seconds": time.perf_counter() - started,
    }
    (out / "results.json").write_text(
        json.dumps({"machine": machine, "rows": rows}, indent=1, default=float)
    )
    plot_scaling(rows, out / "scaling.png")
    print(f"wrote {out / 'results.json'} and {out / 'scaling.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
