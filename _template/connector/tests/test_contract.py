"""The core's contract suite, adopted: every lifecycle case, through the real gRPC host, against the fake."""

import pytest

from flyteconnectors.core import Phase
from flyteconnectors.core.testing import builders
from flyteconnectors.core.testing.contract import AsyncContract
from flyteconnectors.{{name}}.connector import {{Name}}Job
from flyteconnectors.{{name}}.fake import {{Name}}Fake


class Test{{Name}}Job(AsyncContract):
    connector = {{Name}}Job
    create_path = r"^/v1/jobs$"
    status_path = r"^/v1/jobs/job-\d+$"
    status_method = "GET"
    success_steps = ("QUEUED", "RUNNING", "SUCCEEDED")
    running_steps = ("RUNNING",)
    unknown_steps = ("MIGRATING", "SUCCEEDED")
    state_cases = [
        (("QUEUED",), Phase.QUEUED),
        (("RUNNING",), Phase.RUNNING),
        (("CANCELLING",), Phase.RUNNING),
        (("SUCCEEDED",), Phase.SUCCEEDED),
        (("FAILED:boom",), Phase.FAILED),
        (("CANCELLED",), Phase.ABORTED),
    ]

    def failure_steps(self, message):
        return ("RUNNING", f"FAILED:{message}")

    def early_failure_steps(self, message):
        return (f"FAILED:{message}",)

    def remote_jobs(self, fake):
        return len(fake.jobs)

    def cancelled_jobs(self, fake):
        return sum(1 for job in fake.jobs.values() if job["cancelled"])

    @pytest.fixture
    def fake(self):
        with {{Name}}Fake().serve() as fake:
            yield fake

    @pytest.fixture
    def connector_settings(self, fake):
        return {"endpoint": fake.url}

    @pytest.fixture
    def secrets(self, canary):
        return {"{{name}}_token": canary}

    @pytest.fixture
    def task_template(self):
        return builders.task_template("{{name}}-job", {"payload": "p"}, outputs={"result": str})

    @pytest.fixture
    def invalid_config(self):
        return {"payload": "p", "priority": "very high"}, "priority"
