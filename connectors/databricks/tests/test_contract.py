"""The core's contract suite, adopted for the three Databricks task types (both Flyte wires)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from flyteconnectors.core import Phase
from flyteconnectors.core.testing import builders
from flyteconnectors.core.testing.contract import AsyncContract
from flyteconnectors.databricks.connector import (
    STATUS_STATES,
    DatabricksFunction,
    DatabricksRunJob,
    DatabricksSQL,
)
from flyteconnectors.databricks.fake import DatabricksFake

ARGS = ["pyflyte-execute", "--inputs", "s3://bucket/n0/inputs.pb", "--output-prefix", "s3://bucket/n0/0",
        "--raw-output-data-prefix", "s3://bucket/raw", "--resolver",
        "flytekit.core.python_auto_container.default_task_resolver", "--", "task-module", "wf", "task-name", "fn"]


def v1(life: str, result: str | None = None, message: str = "") -> dict[str, Any]:
    """A run step with only the v1 ``state`` (older responses, or a service that drops ``status``)."""
    state = {"life_cycle_state": life, "state_message": message, **({"result_state": result} if result else {})}
    return {"state": state, "status": None}


def v2(state: str, code: str | None = None, message: str = "") -> dict[str, Any]:
    details = {"termination_details": {"code": code, "type": "CLIENT_ERROR", "message": message}} if code else {}
    return {"state": None, "status": {"state": state, **details}}


RUN_STATE_CASES = [
    # every v1 life_cycle_state and result_state (databricks-sdk 0.162 RunLifeCycleState / RunResultState)
    ((v1("QUEUED"),), Phase.QUEUED),
    ((v1("PENDING"),), Phase.INITIALIZING),
    ((v1("BLOCKED"),), Phase.QUEUED),
    ((v1("WAITING_FOR_RETRY"),), Phase.RUNNING),
    ((v1("RUNNING"),), Phase.RUNNING),
    ((v1("TERMINATING"),), Phase.RUNNING),
    ((v1("SKIPPED"),), Phase.FAILED),
    ((v1("INTERNAL_ERROR", "FAILED"),), Phase.RETRYABLE_FAILED),
    ((v1("TERMINATED"),), Phase.FAILED),
    ((v1("TERMINATED", "SUCCESS"),), Phase.SUCCEEDED),
    ((v1("TERMINATED", "SUCCESS_WITH_FAILURES"),), Phase.SUCCEEDED),
    ((v1("TERMINATED", "FAILED"),), Phase.FAILED),
    ((v1("TERMINATED", "TIMEDOUT"),), Phase.FAILED),
    ((v1("TERMINATED", "CANCELED"),), Phase.ABORTED),
    ((v1("TERMINATED", "MAXIMUM_CONCURRENT_RUNS_REACHED"),), Phase.RETRYABLE_FAILED),
    ((v1("TERMINATED", "EXCLUDED"),), Phase.FAILED),
    ((v1("TERMINATED", "UPSTREAM_FAILED"),), Phase.FAILED),
    ((v1("TERMINATED", "UPSTREAM_CANCELED"),), Phase.ABORTED),
    ((v1("TERMINATED", "DISABLED"),), Phase.FAILED),
    # the v2 status, both objects present: status wins
    (("PENDING",), Phase.INITIALIZING),
    (("INTERNAL_ERROR:FAILED",), Phase.RETRYABLE_FAILED),
    (("TERMINATED:CANCELED",), Phase.ABORTED),
    # every v2 status state and termination code (RunLifecycleStateV2State / TerminationCodeCode)
    *[((v2(*key.split("/")),), phase) for key, phase in STATUS_STATES.table.items()],
]


class _DatabricksContract(AsyncContract):
    supports_logs = True
    status_path = r"/api/2\.2/jobs/runs/get$"
    status_method = "GET"
    success_steps = ("PENDING", "RUNNING", "TERMINATED:SUCCESS")
    running_steps = ("RUNNING",)
    unknown_steps = ("SOMETHING_NEW", "TERMINATED:SUCCESS")
    state_cases = RUN_STATE_CASES

    def failure_steps(self, message: str) -> tuple[Any, ...]:
        return ("RUNNING", v1("TERMINATED", "FAILED", message))

    def early_failure_steps(self, message: str) -> tuple[Any, ...]:
        return (v2("TERMINATED", "LIBRARY_INSTALLATION_ERROR", message),)

    def remote_jobs(self, fake: DatabricksFake) -> int:  # type: ignore[override]
        return len(fake.runs)

    def cancelled_jobs(self, fake: DatabricksFake) -> int:  # type: ignore[override]
        return sum(run.cancelled for run in fake.runs.values())

    @pytest.fixture
    def fake(self) -> Iterator[DatabricksFake]:
        with DatabricksFake(execute_python=False).serve() as service:
            yield service  # type: ignore[misc]

    @pytest.fixture
    def connector_settings(self, fake: DatabricksFake) -> Mapping[str, Any]:
        return {"host": "https://adb-1.azuredatabricks.net", "host_override": fake.url, "retry_timeout_seconds": 1}

    @pytest.fixture
    def secrets(self, canary: str) -> Mapping[str, str]:
        return {"databricks_token": canary}


class TestDatabricksFunction(_DatabricksContract):
    connector = DatabricksFunction
    create_path = r"/api/2\.2/jobs/runs/submit$"
    supports_outputs = False  # the task itself writes outputs.pb under the output prefix

    @pytest.fixture
    def task_template(self) -> Any:
        return builders.task_template("databricks-function", {"existing_cluster_id": "0101-abc"},
                                      container_args=ARGS, outputs={"o0": int})

    @pytest.fixture
    def invalid_config(self) -> tuple[dict[str, Any], str]:
        return {"existing_cluster_id": "0101-abc", "serverless": True}, "serverless"


class TestDatabricksRunJob(_DatabricksContract):
    connector = DatabricksRunJob
    create_path = r"/api/2\.2/jobs/run-now$"
    task_inputs = {"day": "2024-05-01", "limit": 10}

    @pytest.fixture
    def fake(self) -> Iterator[DatabricksFake]:
        with DatabricksFake(execute_python=False, example_job=False).serve() as service:
            service.add_job("nightly", output="42 rows")
            yield service  # type: ignore[misc]

    @pytest.fixture
    def task_template(self, fake: DatabricksFake) -> Any:
        [job_id] = fake.jobs
        return builders.task_template("databricks-run-job", {"job_id": job_id}, inputs={"day": str, "limit": int},
                                      outputs={"run_id": int, "run_page_url": str, "output": str})

    @pytest.fixture
    def invalid_config(self) -> tuple[dict[str, Any], str]:
        return {"job_id": "nightly"}, "job_id"


class TestDatabricksSQL(AsyncContract):
    connector = DatabricksSQL
    task_inputs = {"n": 41}
    create_path = r"/api/2\.0/sql/statements$"
    status_path = r"/api/2\.0/sql/statements/[^/]+$"
    status_method = "GET"
    success_steps = ("PENDING", "RUNNING", "SUCCEEDED")
    running_steps = ("RUNNING",)
    unknown_steps = ("RESUMING", "SUCCEEDED")
    state_cases = [
        (("PENDING",), Phase.QUEUED),
        (("RUNNING",), Phase.RUNNING),
        (("SUCCEEDED",), Phase.SUCCEEDED),
        (("FAILED",), Phase.FAILED),
        (("CANCELED",), Phase.ABORTED),
        (("CLOSED",), Phase.FAILED),
    ]

    def failure_steps(self, message: str) -> tuple[Any, ...]:
        return ("RUNNING", {"state": "FAILED", "error": {"error_code": "INTERNAL_ERROR", "message": message}})

    def early_failure_steps(self, message: str) -> tuple[Any, ...]:
        return ({"state": "FAILED", "error": {"error_code": "BAD_REQUEST", "message": message}},)

    def remote_jobs(self, fake: DatabricksFake) -> int:  # type: ignore[override]
        return len(fake.statements)

    def cancelled_jobs(self, fake: DatabricksFake) -> int:  # type: ignore[override]
        return sum(s.cancelled for s in fake.statements.values())

    @pytest.fixture
    def fake(self, canary: str) -> Iterator[DatabricksFake]:
        # Signs in as a service principal (OAuth M2M) whose secret is the canary.
        with DatabricksFake(clients={"sp-contract": canary}).serve() as service:
            yield service  # type: ignore[misc]

    @pytest.fixture
    def connector_settings(self, fake: DatabricksFake) -> Mapping[str, Any]:
        return {"host": "https://adb-1.azuredatabricks.net", "host_override": fake.url, "retry_timeout_seconds": 1}

    @pytest.fixture
    def secrets(self, canary: str) -> Mapping[str, str]:
        return {"databricks_client_id": "sp-contract", "databricks_client_secret": canary}

    @pytest.fixture
    def task_template(self) -> Any:
        return builders.task_template("databricks-sql", {"warehouse_id": "abc123"}, sql="SELECT :n + 1 AS answer",
                                      inputs={"n": int}, outputs={"rows": list[dict], "row_count": int})

    @pytest.fixture
    def invalid_config(self) -> tuple[dict[str, Any], str]:
        return {"warehouse_id": "abc123", "row_limit": 0}, "row_limit"
