"""The core's contract suite, adopted for BigQuery query jobs (both Flyte wires)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from bigquery_helpers import OUTPUTS, query_task, service_account_key, settings

from flyteconnectors.bigquery.connector import BigQueryQuery
from flyteconnectors.bigquery.fake import BigQueryFake
from flyteconnectors.core import Phase
from flyteconnectors.core.testing.contract import AsyncContract


def failed(reason: str, message: str) -> dict[str, Any]:
    return {"state": "DONE", "errorResult": {"reason": reason, "message": message}}


class TestBigQueryQuery(AsyncContract):
    connector = BigQueryQuery
    task_inputs = {"n": 3}
    create_path = r"/bigquery/v2/projects/[^/]+/jobs$"
    status_path = r"/bigquery/v2/projects/[^/]+/jobs/[^/]+$"
    status_method = "GET"
    success_steps = ("PENDING", "RUNNING", "DONE")
    running_steps = ("RUNNING",)
    unknown_steps = ("SUSPENDED", "DONE")
    state_cases = [
        (("PENDING",), Phase.QUEUED),
        (("RUNNING",), Phase.RUNNING),
        (("DONE",), Phase.SUCCEEDED),
        ((failed("invalidQuery", "Unrecognized name: x"),), Phase.FAILED),
        ((failed("stopped", "Job execution was cancelled"),), Phase.ABORTED),
        ((failed("backendError", "Backend error"),), Phase.RETRYABLE_FAILED),
        ((failed("jobInternalError", "The job encountered an internal error"),), Phase.RETRYABLE_FAILED),
    ]

    def failure_steps(self, message: str) -> tuple[Any, ...]:
        return ("RUNNING", failed("invalidQuery", message))

    def early_failure_steps(self, message: str) -> tuple[Any, ...]:
        return (failed("notFound", message),)

    def remote_jobs(self, fake: BigQueryFake) -> int:  # type: ignore[override]
        return fake.job_count()

    def cancelled_jobs(self, fake: BigQueryFake) -> int:  # type: ignore[override]
        return fake.cancelled_count()

    @pytest.fixture
    def fake(self) -> Iterator[BigQueryFake]:
        with BigQueryFake().serve() as service:
            yield service  # type: ignore[misc]

    @pytest.fixture
    def connector_settings(self, fake: BigQueryFake) -> Mapping[str, Any]:
        # A service-account key (below), not anonymous access: the canary travels in the credential path.
        return {k: v for k, v in settings(fake).items() if k != "anonymous"}

    @pytest.fixture
    def secrets(self, canary: str, fake: BigQueryFake) -> Mapping[str, str]:
        return {"bigquery_service_account_json": json.dumps({**service_account_key(fake), "private_key_id": canary})}

    @pytest.fixture
    def task_template(self) -> Any:
        return query_task("SELECT @n AS n", inputs={"n": int}, outputs=OUTPUTS, labels={"team": "contract"})

    @pytest.fixture
    def invalid_config(self) -> tuple[dict[str, Any], str]:
        return {"write_disposition": "WRITE_SOMETIMES"}, "write_disposition"
