#!/usr/bin/env python3
"""Set up a virtual environment and run the demo or the tests.

    python3 dev.py demo [ARGS...]      # the main job: python -m sklearn_latent demo
    python3 dev.py test [ARGS...]      # the whole test suite (pytest)
    python3 dev.py test-min [ARGS...]  # the EM tests on the lowest supported
                                       # numpy, scipy and scikit-learn (no torch)
    python3 dev.py bench [ARGS...]     # the benchmarks (python -m benchmarks)
    python3 dev.py docs [--quick] [SPHINX-OPTIONS...]
                                       # the documentation site, HTML in
                                       # docs/_build/html, warnings as errors;
                                       # --quick builds the gallery's pages
                                       # without running the examples

Needs only Python 3.10+. The first run creates ``.venv`` beside this file and
installs the package with its extras (the CPU build of torch where one is
available); later runs reuse it and reinstall only when pyproject.toml changed.
``test-min`` does the same in ``.venv-min`` with numpy, scipy and scikit-learn
pinned to the floors that pyproject.toml declares (wheels only: the floors are
the oldest releases with wheels for Python 3.11). ``docs`` uses ``.venv-docs``,
with the package, torch and the ``docs`` extra (Sphinx and its extensions).
"""

import hashlib
import os
import re
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
# The torch release the project is tested with; override with SKLEARN_LATENT_TORCH.
TORCH = os.environ.get("SKLEARN_LATENT_TORCH", "torch==2.13.0")
CPU_WHEELS = "https://download.pytorch.org/whl/cpu"
# What test-min runs: the EM estimators, their doctests and the packaging
# checks; the VAE needs torch, which the minimum environment leaves out.
MIN_TESTS = [
    "tests/test_gaussian_mixture.py",
    "tests/test_factor_analysis.py",
    "tests/test_common.py",
    "tests/test_packaging.py",
    "tests/test_progress.py",
    "tests/test_theory.py",
    "sklearn_latent/_em.py",
    "sklearn_latent/_gaussian_mixture.py",
    "sklearn_latent/_gaussian_kernels.py",
    "sklearn_latent/_factor_analysis.py",
    "sklearn_latent/_factor_kernels.py",
    "sklearn_latent/_progress.py",
    "sklearn_latent/_utils.py",
    "-k",
    "not VAE",
]
PINNED = ("numpy", "scipy", "scikit-learn", "joblib", "threadpoolctl")
# The versions of Sphinx and its extensions that the docs build was tested with.
DOCS_CONSTRAINTS = "docs/constraints.txt"
# scikit-learn 1.6's parametrize_with_checks hands pytest a generator, which
# pytest deprecates for removal in pytest 10.
MIN_EXTRA = ["pytest<10"]


def minimum_pins(pyproject_text):
    """``name==floor`` for numpy, scipy and scikit-learn, from their ``>=`` floors."""
    pins = []
    for name in PINNED:
        found = re.search(rf'"{name}\s*>=\s*([0-9][0-9.]*)', pyproject_text)
        if found is None:
            sys.exit(f"pyproject.toml declares no '{name}>=' floor for test-min")
        pins.append(f"{name}=={found.group(1)}")
    return pins


def run(*cmd, **kwargs):
    print("+", " ".join(map(str, cmd)), flush=True)
    return subprocess.run([str(c) for c in cmd], cwd=ROOT, **kwargs).returncode


def ensure_venv(path, install, pinned=()):
    """A virtual environment at ``path``, (re)installed by ``install(pip)`` when
    pyproject.toml, the torch requirement or a ``pinned`` file changed."""
    python = path / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    if not python.exists():
        venv.EnvBuilder(with_pip=True).create(path)
    stamp = path / ".sklearn-latent-installed"
    digest = hashlib.sha256(
        (ROOT / "pyproject.toml").read_bytes()
        + f"{TORCH} {MIN_EXTRA}".encode()
        + b"".join((ROOT / name).read_bytes() for name in pinned)
    ).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return python
    install([python, "-m", "pip", "install", "--disable-pip-version-check", "-q"])
    stamp.write_text(digest)
    return python


def install_torch(pip):
    # torch first, on its own: a CPU build where pip can find one (a plain
    # `pip install torch` would pull a multi-GB CUDA build on Linux).
    if run(*pip, TORCH) != 0 and run(*pip, TORCH, "--index-url", CPU_WHEELS) != 0:
        sys.exit(f"could not install {TORCH}; set SKLEARN_LATENT_TORCH to another spec")


def install_full(pip):
    install_torch(pip)
    # dask-ml: the tests check that its Incremental wrapper drives partial_fit.
    if run(*pip, "-e", ".[demo,test,dask]", "dask-ml") != 0:
        sys.exit("could not install sklearn-latent into .venv")


def install_docs(pip):
    install_torch(pip)
    if run(*pip, "-e", ".[docs]", "-c", DOCS_CONSTRAINTS) != 0:
        sys.exit("could not install sklearn-latent[docs] into .venv-docs")


def build_docs(python, args):
    """Sphinx's HTML build, warnings as errors; returns its exit status."""
    sphinx = ["-m", "sphinx", "-W", "--keep-going", "-b", "html"]
    if "--quick" in args:
        args = [arg for arg in args if arg != "--quick"]
        # The gallery's pages without running the examples, in their own
        # output folders so that a later full build is not mistaken for done.
        sphinx += ["-D", "plot_gallery=0", "-d", "docs/_build/quick-doctrees"]
        out = "docs/_build/quick-html"
    else:
        sphinx += ["-d", "docs/_build/doctrees"]
        out = "docs/_build/html"
    status = run(python, *sphinx, *args, "docs", out)
    if status == 0:
        print(f"Open {ROOT / out / 'index.html'}")
    return status


def install_minimum(pip):
    pins = minimum_pins((ROOT / "pyproject.toml").read_text())
    # Wheels only for the pinned three: building an old numpy from source
    # takes long and usually fails; a missing wheel should say so at once.
    binary = ["--only-binary", ",".join(PINNED)]
    if run(*pip, *binary, *pins, *MIN_EXTRA, "-e", ".[test]") != 0:
        sys.exit(
            f"could not install {' '.join(pins)} for Python "
            f"{sys.version_info.major}.{sys.version_info.minor}; the floors in "
            "pyproject.toml are the oldest releases with Python 3.11 wheels, "
            "so run test-min with Python 3.10 or 3.11"
        )


def main(argv):
    commands = {
        "demo": (".venv", install_full, ["-m", "sklearn_latent", "demo"]),
        "test": (".venv", install_full, ["-m", "pytest", "-q"]),
        "test-min": (".venv-min", install_minimum, ["-m", "pytest", "-q", *MIN_TESTS]),
        "bench": (".venv", install_full, ["-m", "benchmarks"]),
        "docs": (".venv-docs", install_docs, None),
    }
    if not argv or argv[0] not in commands:
        print(__doc__)
        return 2
    path, install, args = commands[argv[0]]
    if argv[0] == "docs":
        python = ensure_venv(ROOT / path, install, pinned=[DOCS_CONSTRAINTS])
        return build_docs(python, argv[1:])
    python = ensure_venv(ROOT / path, install)
    return run(python, *args, *argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
