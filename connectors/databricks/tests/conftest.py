from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import databricks.sdk  # noqa: F401  (imported once here: its ~3 s first import is not what the stall checks measure)
import pytest

from flyteconnectors.core.dispatcher import DispatcherOptions, RetryPolicy
from flyteconnectors.core.testing.host import HostThread, PropellerClient
from flyteconnectors.databricks.connector import CONNECTORS
from flyteconnectors.databricks.fake import DatabricksFake

# What the entry-point loader does; the registry otherwise stamps whatever package a test host names on the
# class itself, and a later host in the same process would look up the wrong settings.
for _connector in CONNECTORS:
    _connector.package = "databricks"

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS))

WORKSPACE = "https://adb-1234567890.1.azuredatabricks.net"
TOKEN = "dapi-0123456789abcdef-test"


@pytest.fixture(autouse=True)
def _no_real_databricks_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    """No developer profile, token or host may leak into a test."""
    for name in list(os.environ):
        if name.startswith(("DATABRICKS_", "FLYTECONNECTORS_DATABRICKS_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", "/dev/null")


@pytest.fixture
def fake() -> Iterator[DatabricksFake]:
    service = DatabricksFake(python_path=[str(TESTS)], tokens={TOKEN}, clients={"sp-client": "sp-secret-value"})
    with service.serve():
        yield service
    service.reset()


def make_host(fake: DatabricksFake, *, secrets: dict[str, str] | None = None, **settings: Any) -> HostThread:
    return HostThread(
        CONNECTORS,
        package="databricks",
        settings={"databricks": {"host": WORKSPACE, "host_override": fake.url, "retry_timeout_seconds": 3,
                                 **settings}},
        secrets={"databricks_token": TOKEN} if secrets is None else secrets,
        options=DispatcherOptions(retry=RetryPolicy(attempts=4, base=0.01, cap=0.05)),
    )


@pytest.fixture
def host(fake: DatabricksFake) -> Iterator[HostThread]:
    with make_host(fake) as running:
        yield running


@pytest.fixture
def propeller(host: HostThread) -> PropellerClient:
    return PropellerClient(host.channel)
