"""The README's first command, end to end: every installed connector against its fake, locally and via the host."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = sorted(p.name for p in (ROOT / "connectors").iterdir() if (p / "pyproject.toml").is_file())


def installed_specs() -> set[str]:
    return {ep.name for ep in importlib.metadata.entry_points(group="flyteconnectors.sandbox")}


@pytest.mark.skipif(not installed_specs(), reason="no connector package with a sandbox spec is installed")
def test_the_sandbox_runs_every_connector_locally_and_through_the_host(tmp_path):
    cli = Path(sys.executable).with_name("flyteconnectors")
    env = {**os.environ, "COLUMNS": "200"}
    done = subprocess.run([str(cli), "sandbox"], capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-6000:]
    assert "checks passed" in out
    for package in sorted(installed_specs()):
        assert f"started the fake {package} service" in out, out[-3000:]
    # Each package shows up on both paths: through the host and with pyflyte run.
    rows = [line for line in out.splitlines() if line.startswith("│")]
    for package in installed_specs() & set(PACKAGES):
        assert any(package in row and "host" in row for row in rows), package
        assert any(package in row and "local (pyflyte run)" in row for row in rows), package
    assert any("CANCELLED" in row for row in rows), "a DeleteTask of a running job"
