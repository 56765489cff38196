"""What the host and operators see of the package: lazy imports, the entry points, the standalone fake."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from importlib.metadata import entry_points
from pathlib import Path


def test_loading_the_connector_does_not_import_the_sdk_or_flytekit():
    code = ("import sys, flyteconnectors.bigquery, flyteconnectors.bigquery.connector; "
            "print(sorted(m for m in sys.modules if m.startswith(('google.cloud.bigquery', 'flytekit'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_entry_points_name_the_connectors_and_the_fake():
    connectors = {ep.name: ep.value for ep in entry_points(group="flyteconnectors")}
    fakes = {ep.name: ep.value for ep in entry_points(group="flyteconnectors.fakes")}
    assert connectors["bigquery"] == "flyteconnectors.bigquery.connector:CONNECTORS"
    assert fakes["bigquery"] == "flyteconnectors.bigquery.fake:BigQueryFake"


def test_fake_runs_standalone_with_its_control_api(tmp_path: Path):
    cli = Path(sys.executable).with_name("flyteconnectors")
    port_file = tmp_path / "port"
    proc = subprocess.Popen([str(cli), "fake", "bigquery", "--port-file", str(port_file)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port_file.read_text()}"
        body = json.dumps({"jobReference": {"jobId": "j1"},
                           "configuration": {"query": {"query": "SELECT 1"}}}).encode()
        request = urllib.request.Request(f"{url}/bigquery/v2/projects/p/jobs", body,
                                         {"Content-Type": "application/json"})
        inserted = json.load(urllib.request.urlopen(request, timeout=5))
        assert inserted["status"]["state"] == "PENDING"
        jobs = json.load(urllib.request.urlopen(f"{url}/_fake/jobs", timeout=5))
        assert [j["jobReference"]["jobId"] for j in jobs] == ["j1"]
    finally:
        proc.terminate()
        proc.wait(10)
