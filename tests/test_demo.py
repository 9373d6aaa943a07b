"""The command line and its demo: ``python -m sklearn_latent demo``."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("EMGaussianMixture", "EMFactorAnalysis", "VAEEstimator")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run_cli(*args):
    # From the repository root, so that the package imports uninstalled too.
    return subprocess.run(
        [sys.executable, "-m", "sklearn_latent", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("matplotlib")
    out = tmp_path_factory.mktemp("demo") / "new" / "folder"
    return run_cli("demo", "--quick", "--out", out, "--seed", 1), out


def test_quick_demo_runs_quietly(quick_demo):
    result, _ = quick_demo
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr
    assert "done" in result.stdout


def test_quick_demo_table_names_every_model(quick_demo):
    result, _ = quick_demo
    lines = result.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("model"))
    table = lines[header : header + 6]
    for model in MODELS:
        assert any(line.startswith(model) for line in table), model
    for estimate in ("exact", "ELBO", "IWAE"):
        assert any(estimate in line for line in table), estimate
    assert lines[header + 6].startswith("EM maximises log p(x) exactly")


def test_quick_demo_shows_a_progress_line_per_step(quick_demo):
    # stderr is a pipe here: each step's line ends in a plain line.
    result, _ = quick_demo
    lines = result.stderr.splitlines()
    outcome = "(converged|did not converge)"
    for pattern in (
        r"EMGaussianMixture grid search chose \d+ components: \d+/\d+ fit \[",
        rf"EMFactorAnalysis {outcome}: \d+/\d+ it \[",
        rf"VAEEstimator {outcome}: \d+/\d+ epoch \[",
    ):
        assert any(re.match(pattern, line) for line in lines), (pattern, lines)


def test_quick_demo_writes_a_png(quick_demo):
    result, out = quick_demo
    path = out / "demo.png"
    assert path.read_bytes().startswith(PNG_SIGNATURE)
    assert f"figure: {path}" in result.stdout


def test_help_describes_the_commands():
    result = run_cli("--help")
    assert result.returncode == 0
    assert "demo" in result.stdout
    result = run_cli("demo", "--help")
    assert result.returncode == 0
    for option in ("--out", "--seed", "--quick"):
        assert option in result.stdout


def test_missing_command_is_a_usage_error():
    result = run_cli()
    assert result.returncode == 2
    assert "usage:" in result.stderr


@pytest.mark.parametrize("seed", ["-1", "x"])
def test_bad_seed_is_a_usage_error(seed, tmp_path):
    result = run_cli("demo", "--quick", "--out", tmp_path, "--seed", seed)
    assert result.returncode == 2
    assert "--seed" in result.stderr


def test_unwritable_out_fails_cleanly(tmp_path):
    # A file where the output folder should be: fails before any fitting.
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = run_cli("demo", "--quick", "--out", blocker / "sub")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: cannot create the output folder")
    assert str(blocker / "sub") in line
