"""`pyflyte run` (no --remote) in a real subprocess, against the toy service's fake."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from local_examples import fixtures
from local_examples.fixtures import TESTS_DIR, TOKEN
from local_examples.toy_service import ToyFake

PYFLYTE = Path(sys.executable).with_name("pyflyte")
toy_fake = fixtures.toy_fake


@pytest.fixture()
def env(toy_fake: ToyFake) -> Iterator[dict[str, str]]:
    yield {
        **os.environ,
        "PATH": f"{PYFLYTE.parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(TESTS_DIR),
        # Registered as package "toy", so its settings come from FLYTECONNECTORS_TOY_*, as in the host.
        "FLYTECONNECTORS_MODULES": "toy=local_examples.toy_service:CONNECTORS",
        "FLYTECONNECTORS_TOY_ENDPOINT": toy_fake.url,
        "FLYTECONNECTORS_LOCAL_POLL_CAP": "0.2",
        "TOY_TOKEN": TOKEN,
    }


def pyflyte_run(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([str(PYFLYTE), "run", "local_examples/workflows.py", *args], cwd=TESTS_DIR, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_pyflyte_run_executes_sql_config_function_and_sync_tasks_through_the_fake(
    env: dict[str, str], toy_fake: ToyFake
) -> None:
    proc = pyflyte_run(env, "pipeline", "--day", "2024-06-01", "--n", "21")
    out, err = proc.communicate(timeout=60)

    assert proc.returncode == 0, out + err
    assert "> report(rows=wh1: SELECT COUNT(*) FROM events WHERE day = '2024-06-01')" in out
    assert "42" in out  # remote_double's body ran at the "service" (pyflyte-execute) and wrote outputs.pb
    commands = [e.json().get("command") for e in toy_fake.requests("POST", r"^/v1/jobs$")]
    assert len(commands) == 3 and commands[2][0] == "pyflyte-execute"
    assert not any("{{." in arg for arg in commands[2])  # placeholders rendered to the local output prefix
    # Not a TTY: plain progress lines, log links included.
    assert "[flyteconnectors] count_rows: QUEUED" in err
    assert f"[flyteconnectors] count_rows: log Toy console: {toy_fake.url}/ui/" in err
    assert "[flyteconnectors] remote_double: SUCCEEDED" in err


def test_ctrl_c_cancels_the_remote_job_before_pyflyte_exits(env: dict[str, str], toy_fake: ToyFake) -> None:
    proc = pyflyte_run(env, "hangs")
    deadline = time.monotonic() + 30
    while not toy_fake.requests("GET", r"^/v1/jobs/") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert toy_fake.requests("GET", r"^/v1/jobs/"), "the job never started"

    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)

    assert proc.returncode != 0
    assert toy_fake.cancelled() == ["job-1"]
    assert "never_ends: interrupted: cancelling the remote job" in err
    assert "never_ends: remote job cancelled" in err


def test_task_timeout_cancels_the_remote_job_and_fails_with_a_clear_error(
    env: dict[str, str], toy_fake: ToyFake
) -> None:
    proc = pyflyte_run(env, "times_out")
    out, err = proc.communicate(timeout=60)

    assert proc.returncode != 0
    assert toy_fake.cancelled() == ["job-1"]
    assert "too_slow (toy-job) timed out after 1s; the remote job was cancelled" in " ".join((out + err).split())
