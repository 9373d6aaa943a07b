#!/usr/bin/env python3
"""Set up a virtual environment and run the demo or the tests.

    python3 dev.py demo [ARGS...]   # the main job: python -m sklearn_latent demo
    python3 dev.py test [ARGS...]   # the whole test suite (pytest)
    python3 dev.py bench [ARGS...]  # the benchmarks (python -m benchmarks)

Needs only Python 3.10+. The first run creates ``.venv`` beside this file and
installs the package with its extras (the CPU build of torch where one is
available); later runs reuse it and reinstall only when pyproject.toml changed.
"""

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
# The torch release the project is tested with; override with SKLEARN_LATENT_TORCH.
TORCH = os.environ.get("SKLEARN_LATENT_TORCH", "torch==2.13.0")
CPU_WHEELS = "https://download.pytorch.org/whl/cpu"


def venv_python():
    sub = "Scripts/python.exe" if os.name == "nt" else "bin/python"
    return VENV / sub


def run(*cmd, **kwargs):
    print("+", " ".join(map(str, cmd)), flush=True)
    return subprocess.run([str(c) for c in cmd], cwd=ROOT, **kwargs).returncode


def ensure_venv():
    python = venv_python()
    if not python.exists():
        venv.EnvBuilder(with_pip=True).create(VENV)
    stamp = VENV / ".sklearn-latent-installed"
    digest = hashlib.sha256(
        (ROOT / "pyproject.toml").read_bytes() + TORCH.encode()
    ).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return python
    pip = [python, "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    # torch first, on its own: a CPU build where pip can find one (a plain
    # `pip install torch` would pull a multi-GB CUDA build on Linux).
    if run(*pip, TORCH) != 0 and run(*pip, TORCH, "--index-url", CPU_WHEELS) != 0:
        sys.exit(f"could not install {TORCH}; set SKLEARN_LATENT_TORCH to another spec")
    if run(*pip, "-e", ".[demo,test]") != 0:
        sys.exit("could not install sklearn-latent into .venv")
    stamp.write_text(digest)
    return python


def main(argv):
    commands = {
        "demo": ["-m", "sklearn_latent", "demo"],
        "test": ["-m", "pytest", "-q"],
        "bench": ["-m", "benchmarks"],
    }
    if not argv or argv[0] not in commands:
        print(__doc__)
        return 2
    python = ensure_venv()
    return run(python, *commands[argv[0]], *argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
