"""Local execution in-process: workflows called in Python run their connector tasks through the dispatcher."""

from __future__ import annotations

import io
import itertools
import os
import signal
import threading
import time

import pytest
from flytekit import workflow
from local_examples import fixtures, workflows
from local_examples.fixtures import TOKEN
from local_examples.inproc import CALLS, ScriptConfig, ScriptedJob, SlowAnswer
from local_examples.toy_service import ToyFake
from rich.console import Console

from flyteconnectors.core import ConnectorSettings
from flyteconnectors.core.host.wire_v1 import request_from_template
from flyteconnectors.core.local import (
    ConnectorTask,
    ConnectorTaskFailed,
    ConnectorTaskTimedOut,
    LocalRunner,
    PollPolicy,
)
from flyteconnectors.core.local.display import PlainDisplay, RichDisplay
from flyteconnectors.core.local.tasks import _identity
from flyteconnectors.core.testing import builders

runner, toy_fake = fixtures.runner, fixtures.toy_fake
pytestmark = pytest.mark.usefixtures("runner")


def scripted(name: str, timeout: float | None = None, **config: object) -> ConnectorTask:
    return ConnectorTask(name, ScriptedJob, ScriptConfig(**config), inputs={"a": int, "b": int},
                         outputs={"total": int}, **({"timeout": timeout} if timeout else {}))


def test_workflow_of_all_task_kinds_runs_against_the_fake_with_the_configured_endpoint_and_secret(
    toy_fake: ToyFake,
) -> None:
    said = workflows.quick(day="2024-06-01")

    assert said == "> report(rows=wh1: SELECT COUNT(*) FROM events WHERE day = '2024-06-01')"
    assert len(toy_fake.requests("POST", r"^/v1/jobs$")) == 2  # the SQL task and the config task
    assert len(toy_fake.requests("POST", r"^/v1/echo$")) == 1  # the sync task
    assert {e.headers["authorization"] for e in toy_fake.journal} == {f"Bearer {TOKEN}"}


def test_first_status_check_is_immediate_then_the_pause_doubles_up_to_the_cap(runner: LocalRunner) -> None:
    runner.poll = PollPolicy(initial=0.04, factor=2.0, cap=0.12)
    step = scripted("steps", phases=["RUNNING"] * 5 + ["SUCCEEDED"])

    assert step(a=1, b=2) == 3

    (created,) = CALLS.times("create")
    polls = CALLS.times("get")
    assert len(polls) == 6
    assert polls[0] - created < 0.03  # no pause before the first check
    gaps = [b - a for a, b in itertools.pairwise(polls)]
    assert [round(g, 2) >= want for g, want in zip(gaps, [0.04, 0.08, 0.12, 0.12, 0.12], strict=True)] == [True] * 5
    assert max(gaps) < 0.12 + 0.1  # capped


def test_a_failed_job_fails_the_task_with_the_services_message() -> None:
    broken = scripted("broken", phases=["RUNNING", "FAILED"], message="quota exceeded for project p1")

    with pytest.raises(ConnectorTaskFailed, match=r"broken \(scripted-job\) FAILED: quota exceeded for project p1"):
        broken(a=1, b=1)


def test_outputs_are_read_from_outputs_pb_when_the_job_wrote_them() -> None:
    remote = scripted("writes_file", phases=["RUNNING", "SUCCEEDED"], write_outputs_file=True)

    assert remote(a=20, b=22) == 42


def test_the_task_timeout_deletes_the_remote_job_and_fails_clearly() -> None:
    slow = scripted("slow", timeout=0.3, phases=["RUNNING"])

    start = time.monotonic()
    with pytest.raises(ConnectorTaskTimedOut, match=r"slow \(scripted-job\) timed out after 0.3s; the remote job "
                                                    r"was cancelled"):
        slow(a=1, b=1)

    assert time.monotonic() - start < 2.0  # 0.3 s, plus the cancel; not a poll cycle of seconds
    assert CALLS.ops()[0] == "create" and CALLS.ops()[-1] == "delete"


def test_a_sync_request_past_the_task_timeout_is_abandoned() -> None:
    answer = ConnectorTask("answer", SlowAnswer, ScriptConfig(create_delay=2.0), outputs={"total": int}, timeout=0.2)

    with pytest.raises(ConnectorTaskTimedOut, match=r"answer \(slow-answer\) timed out after 0.2s; the request was "
                                                    r"abandoned"):
        answer()


def test_an_interrupt_deletes_the_remote_job_before_it_propagates() -> None:
    endless = scripted("endless", phases=["RUNNING"])

    def interrupt_once_polling() -> None:
        while len(CALLS.times("get")) < 2:
            time.sleep(0.005)
        os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C does

    threading.Thread(target=interrupt_once_polling, daemon=True).start()
    with pytest.raises((KeyboardInterrupt, SystemExit)):
        endless(a=1, b=1)

    assert CALLS.ops().count("delete") == 1
    assert CALLS.ops()[-1] == "delete"


def test_an_interrupt_during_create_deletes_the_job_once_create_returns() -> None:
    slow_start = scripted("slow_start", phases=["RUNNING"], create_delay=0.3)

    def interrupt_during_create() -> None:
        while not CALLS.times("create"):
            time.sleep(0.005)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_during_create, daemon=True).start()
    with pytest.raises((KeyboardInterrupt, SystemExit)):
        slow_start(a=1, b=1)

    assert CALLS.ops() == ["create", "created", "delete"]


def test_calling_the_same_task_twice_starts_two_jobs() -> None:
    add = scripted("add")

    @workflow
    def twice(a: int, b: int) -> int:
        return add(a=add(a=a, b=b), b=b)

    assert twice(a=1, b=2) == 5
    assert len({job for op, job, _, _ in CALLS.log if op == "create"}) == 2


def test_every_task_of_every_workflow_runs_on_one_loop_thread(runner: LocalRunner) -> None:
    add = scripted("add")

    @workflow
    def chain(a: int) -> int:
        return add(a=add(a=add(a=a, b=1), b=1), b=1)

    assert chain(a=0) == 3
    assert chain(a=10) == 13
    assert {thread for *_, thread in CALLS.log} == {"flyteconnectors-local"}
    assert [t.name for t in threading.enumerate()].count("flyteconnectors-local") == 1


def _request(config: dict) -> object:
    template = builders.task_template("scripted-job", config, outputs={"total": int})
    req = request_from_template(template, None, "/tmp/fc-local-test", None, None)
    req.identity = _identity("shown")
    return req


def test_terminal_display_shows_phase_message_and_log_links(runner: LocalRunner) -> None:
    out = io.StringIO()
    display = RichDisplay("shown", Console(file=out, force_terminal=True, width=200))

    runner.run(_request({"phases": ["RUNNING", "SUCCEEDED"], "message": "2 of 2 stages done"}), display=display)

    text = out.getvalue()
    assert "https://scripted.example/fc-" in text
    assert "SUCCEEDED" in text and "2 of 2 stages done" in text


def test_plain_display_logs_each_change_once(runner: LocalRunner) -> None:
    out = io.StringIO()

    runner.run(_request({"phases": ["QUEUED", "RUNNING", "RUNNING", "SUCCEEDED"]}), display=PlainDisplay("shown", out))

    lines = out.getvalue().splitlines()
    assert [line.split(": ", 1)[1].split(" ")[0] for line in lines] == ["QUEUED", "log", "RUNNING", "SUCCEEDED"]
    assert lines[1].endswith("https://scripted.example/" + lines[1].rsplit("/", 1)[1])


def test_modules_from_the_environment_are_served_with_their_packages_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    modules = "toy=local_examples.toy_service:CONNECTORS, broken=local_examples.nope"
    monkeypatch.setenv("FLYTECONNECTORS_MODULES", modules)
    monkeypatch.setenv("FLYTECONNECTORS_TOY_ENDPOINT", "http://127.0.0.1:4567")

    registry = LocalRunner.from_environment().dispatcher.registry

    assert registry.get("toy-job").settings.endpoint == "http://127.0.0.1:4567"
    assert "No module named 'local_examples.nope'" in (registry.packages["broken"].error or "")


def test_bad_connector_settings_fail_the_task_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    class StrictSettings(ConnectorSettings):
        retries: int = 1

    class Strict(ScriptedJob):
        task_type = "strict-job"
        settings_model = StrictSettings

    # Not installed nor in FLYTECONNECTORS_MODULES: served under the package its module names.
    monkeypatch.setenv("FLYTECONNECTORS_TEST_LOCAL_RUNNER_RETRIES", "many")
    strict = ConnectorTask("strict", Strict, ScriptConfig(), inputs={"a": int, "b": int}, outputs={"total": int})

    with pytest.raises(ConnectorTaskFailed, match="FLYTECONNECTORS_TEST_LOCAL_RUNNER_RETRIES"):
        strict(a=1, b=2)
