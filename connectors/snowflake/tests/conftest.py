from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from flyteconnectors.core.dispatcher import DispatcherOptions, RetryPolicy
from flyteconnectors.core.testing import builders
from flyteconnectors.core.testing.host import HostThread, PropellerClient
from flyteconnectors.snowflake.connector import SnowflakeQuery
from flyteconnectors.snowflake.fake import SnowflakeFake

ACCOUNT = "acme-analytics"
USER = "FLYTE_SVC"


@pytest.fixture(scope="session")
def private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def private_key_pem(private_key: rsa.RSAPrivateKey) -> str:
    return private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.fixture
def fake(private_key: rsa.RSAPrivateKey) -> Iterator[SnowflakeFake]:
    service = SnowflakeFake()
    service.add_user(USER, public_key=private_key.public_key())
    service.sql("CREATE TABLE events (id INTEGER, kind TEXT)")
    with service.serve():
        yield service


def settings_for(fake: SnowflakeFake, **extra: Any) -> dict[str, Any]:
    return {"host": "127.0.0.1", "port": fake.port, "protocol": "http", "retry_max_attempts": 2,
            "retry_backoff_base_ms": 10, "login_timeout": 5, "request_timeout": 5, **extra}


def start_host(fake: SnowflakeFake, secrets: dict[str, str], **settings: Any) -> HostThread:
    # The registry stamps the package name on the class; whichever test registered it first chose it.
    package = SnowflakeQuery.package or "snowflake"
    return HostThread(
        [SnowflakeQuery], package=package, settings={package: settings_for(fake, **settings)},
        secrets=secrets, options=DispatcherOptions(retry=RetryPolicy(attempts=3, base=0.01, cap=0.05)),
    )


@pytest.fixture
def host(fake: SnowflakeFake, private_key_pem: str) -> Iterator[HostThread]:
    with start_host(fake, {"snowflake_private_key": private_key_pem}) as running:
        yield running


@pytest.fixture
def propeller(host: HostThread) -> PropellerClient:
    return PropellerClient(host.channel)


def query_task(query: str, *, inputs: dict[str, Any] | None = None, outputs: dict[str, Any] | None = None,
               **config: Any) -> Any:
    """A snowflake-query TaskTemplate as the task types in task.py register it."""
    custom = {"account": ACCOUNT, "user": USER, "warehouse": "COMPUTE_WH", "database": "ANALYTICS",
              "schema": "PUBLIC", **config}
    return builders.task_template("snowflake-query", custom, sql=query, inputs=inputs or {}, outputs=outputs or {})
