from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from flyteconnectors.bigquery.connector import BigQueryQuery
from flyteconnectors.bigquery.fake import BigQueryFake
from flyteconnectors.core.secrets import REDACTOR
from flyteconnectors.core.testing import builders
from flyteconnectors.core.testing.host import HostThread, PropellerClient

TASK_TYPE = BigQueryQuery.task_type
OUTPUTS = {"results": builders.STRUCTURED_DATASET, "job_id": str, "bytes_processed": int}


def settings(fake: BigQueryFake, **extra: Any) -> dict[str, Any]:
    return {"endpoint": fake.url, "anonymous": True, "project": "proj", "retry_initial_delay": 0.01,
            "retry_budget": 0.3, **extra}


@pytest.fixture(autouse=True)
def _fresh_redactor() -> None:
    """Forget earlier tests' secrets. The core's redactor recompiles one regex of every value it has seen on each
    new value; a service-account key is ~2 KB, so with a fresh canary key per test the compile reached ~1 s (GIL
    held, event loop stalled) after a few dozen tests. Each test's own secrets are registered again as it reads them.
    """
    REDACTOR.clear()


@pytest.fixture
def fake() -> Iterator[BigQueryFake]:
    with BigQueryFake().serve() as service:
        yield service  # type: ignore[misc]


@pytest.fixture
def host(fake: BigQueryFake) -> Iterator[HostThread]:
    with HostThread([BigQueryQuery], settings={"bigquery": settings(fake)}, package="bigquery", secrets={}) as h:
        yield h


@pytest.fixture
def propeller(host: HostThread) -> PropellerClient:
    return PropellerClient(host.channel)


def query_task(sql: str = "SELECT 1", *, inputs: dict[str, Any] | None = None,
               outputs: dict[str, Any] | None = None, **custom: Any) -> Any:
    """A ``bigquery-query`` TaskTemplate as ``pyflyte register`` produces it: the SQL in ``template.sql``."""
    return builders.task_template(TASK_TYPE, custom, inputs=inputs or {},
                                  outputs=OUTPUTS if outputs is None else outputs, sql=sql)
