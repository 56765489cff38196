"""The harness runs end to end in --quick mode and writes a results file the report can render.

Not a performance test: nothing here compares numbers. It needs the flytekit venv the ``bench`` nox session
creates (``.nox/bench-flytekit``, or ``BENCH_FLYTEKIT_VENV``) and skips without it.

    .nox/bench/bin/pytest benchmarks/test_bench_smoke.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
FLYTEKIT_VENV = Path(os.environ.get("BENCH_FLYTEKIT_VENV", HERE.parent / ".nox" / "bench-flytekit"))

pytestmark = pytest.mark.skipif(not (FLYTEKIT_VENV / "bin" / "pyflyte").exists(),
                                reason=f"no flytekit venv at {FLYTEKIT_VENV} (run `nox -s bench -- --quick` once)")


def test_quick_run_writes_every_scenario_and_renders(tmp_path: Path) -> None:
    output = tmp_path / "quick.json"
    done = subprocess.run(
        [sys.executable, str(HERE / "bench.py"), "--quick", "--flytekit-venv", str(FLYTEKIT_VENV),
         "--services", "bigquery", "--output", str(output), "--workdir", str(tmp_path / "work")],
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(output.read_text())

    assert result["quick"] is True
    assert result["machine"]["nproc"] >= 1 and result["machine"]["memory_gb"]
    assert result["versions"]["flytekit"]["flytekit"] == "1.16.31"
    scenarios = result["scenarios"]
    assert set(scenarios) == {"startup", "trivial", "blocking", "services", "local", "memory"}
    failed = {name: s["error"] for name, s in scenarios.items() if "error" in s}
    assert not failed, failed

    startup = scenarios["startup"]
    assert all(startup["samples_s"][kind] for kind in ("ours", "flytekit", "bare"))
    assert startup["task_types_listed"]["flytekit"] > 0 and startup["task_types_listed"]["ours"] > 0
    for kind in ("bare", "ours", "flytekit"):
        assert scenarios["trivial"]["runs"][kind][0]["rpcs"] > 0, kind
    for variant in ("blocking-def", "blocking-async"):
        assert set(scenarios["blocking"][variant]["runs"]) == {"ours", "flytekit"}
    bigquery = scenarios["services"]["cases"]["bigquery"]
    assert not bigquery["failures"], bigquery["failures"]
    run = bigquery["runs"]["ours"][0]
    assert run["creates_ok"] > 0 and run["remote_jobs"] >= run["creates_ok"]
    assert run["idle"]["fds"] > 0 and run["fd_growth"] is not None
    assert "flytekit" in bigquery["runs"]
    assert scenarios["memory"]["idle_rss_mb"]["ours"]["median"] > 0

    sys.path.insert(0, str(HERE))
    import report

    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\n## Local execution\n\nkept as written.\n")
    report.write(result, output, doc)
    text = doc.read_text()
    assert text.count("# Benchmarks") == 1
    assert "## 4. Per service" in text and "| bigquery | ours |" in text
    assert "## Local execution\n\nkept as written." in text
    report.write(result, output, doc)  # idempotent: the kept section is not duplicated
    assert doc.read_text() == text
