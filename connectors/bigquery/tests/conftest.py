from __future__ import annotations

from collections.abc import Iterator

import pytest
from bigquery_helpers import settings

from flyteconnectors.bigquery.connector import BigQueryQuery
from flyteconnectors.bigquery.fake import BigQueryFake
from flyteconnectors.core.secrets import REDACTOR
from flyteconnectors.core.testing.host import HostThread, PropellerClient


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
