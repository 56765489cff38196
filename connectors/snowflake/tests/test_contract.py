"""The core contract suite, adopted for the snowflake-query task type (both Flyte wires)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from conftest import query_task, settings_for

from flyteconnectors.core import Phase
from flyteconnectors.core.testing import builders
from flyteconnectors.core.testing.contract import AsyncContract
from flyteconnectors.snowflake.connector import SnowflakeQuery
from flyteconnectors.snowflake.fake import SnowflakeFake


class TestSnowflakeQuery(AsyncContract):
    connector = SnowflakeQuery
    create_path = r"^/queries/v1/query-request$"
    status_path = r"^/monitoring/queries/"
    status_method = "GET"
    success_steps = ("RUNNING", "SUCCESS")
    running_steps = ("RUNNING",)
    # The driver reads a status it does not know as NO_DATA, which stays non-terminal within not_found_grace.
    unknown_steps = ("SOMETHING_NEW", "SUCCESS")
    state_cases = [
        (("QUEUED",), Phase.QUEUED),
        (("RESUMING_WAREHOUSE",), Phase.WAITING_FOR_RESOURCES),
        (("QUEUED_REPARING_WAREHOUSE",), Phase.WAITING_FOR_RESOURCES),
        (("RUNNING",), Phase.RUNNING),
        (("BLOCKED",), Phase.RUNNING),
        (("RESTARTED",), Phase.RUNNING),
        (("DISCONNECTED",), Phase.RUNNING),
        (("ABORTING",), Phase.RUNNING),
        (("NO_DATA",), Phase.RUNNING),
        (("SUCCESS",), Phase.SUCCEEDED),
        (("FAILED_WITH_ERROR",), Phase.FAILED),
        (("ABORTED",), Phase.ABORTED),
        (("FAILED_WITH_INCIDENT",), Phase.RETRYABLE_FAILED),
    ]

    def failure_steps(self, message: str) -> tuple[Any, ...]:
        return ("RUNNING", {"status": "FAILED_WITH_ERROR", "errorCode": "100038", "errorMessage": message})

    def early_failure_steps(self, message: str) -> tuple[Any, ...]:
        return ({"status": "FAILED_WITH_ERROR", "errorCode": "002003", "errorMessage": message},)

    def remote_jobs(self, fake: SnowflakeFake) -> int:  # type: ignore[override]
        return len(fake.submissions())

    def cancelled_jobs(self, fake: SnowflakeFake) -> int:  # type: ignore[override]
        return len(fake.cancelled())

    @pytest.fixture
    def fake(self) -> Iterator[SnowflakeFake]:
        with SnowflakeFake().serve() as fake:
            yield fake

    @pytest.fixture
    def connector_settings(self, fake: SnowflakeFake) -> Mapping[str, Any]:
        return settings_for(fake)

    @pytest.fixture
    def secrets(self, canary: str) -> Mapping[str, str]:
        return {"snowflake_password": canary}

    @pytest.fixture
    def task_template(self) -> Any:
        return query_task("SELECT 42 AS answer", outputs={"results": builders.STRUCTURED_DATASET, "query_id": str})

    @pytest.fixture
    def invalid_config(self) -> tuple[dict[str, Any], str]:
        return {"account": "acme", "user": "U", "database": "D", "statement_timeout": -5}, "statement_timeout"
