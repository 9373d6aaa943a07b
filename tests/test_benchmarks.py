"""The benchmarks' quick mode runs end to end, so the benchmarks never rot."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_benchmarks_run_and_write_results(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    modules = {p.stem for p in (ROOT / "benchmarks").glob("bench_*.py")}
    assert len(modules) >= 3
    for row in rows:
        if "speedup" in row:
            assert row["ours_s"] > 0 and row["ref_s"] > 0
            assert abs(row["speedup"] - row["ref_s"] / row["ours_s"]) < 1e-9
    # Same starting point, same iterations: the two sides agree on the score.
    gmm = [
        r for r in rows if r.get("benchmark") == "gaussian_mixture" and "speedup" in r
    ]
    assert len(gmm) >= 4
    for row in gmm:
        assert abs(row["ours_score"] - row["ref_score"]) < 1e-6 * abs(row["ref_score"])
    assert (tmp_path / "scaling.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
