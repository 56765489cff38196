"""flytekitplugins-snowflake's ``SnowflakeTask`` templates, served by flyteconnectors-snowflake against its fake."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

pytest.importorskip("flytekitplugins.snowflake", reason="needs flytekitplugins-snowflake: nox -s compat-flytekit")

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flytekit import StructuredDataset, kwtypes
from flytekit_compat_helpers import FAILED, QUEUED, RUNNING, SUCCEEDED, WAITING, our_host, serialize
from flytekitplugins.snowflake import SnowflakeConfig, SnowflakeTask

from flyteconnectors.core.testing import builders
from flyteconnectors.core.testing.host import PropellerClient
from flyteconnectors.snowflake.fake import SnowflakeFake

USER, ACCOUNT = "FLYTE_SVC", "acme-analytics"
CONFIG = SnowflakeConfig(user=USER, account=ACCOUNT, database="ANALYTICS", schema="PUBLIC", warehouse="COMPUTE_WH")


@pytest.fixture(scope="module")
def private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def fake(private_key: rsa.RSAPrivateKey) -> Iterator[SnowflakeFake]:
    service = SnowflakeFake()
    service.add_user(USER, public_key=private_key.public_key())
    service.sql("CREATE TABLE events (id INTEGER, kind TEXT)")
    service.sql("INSERT INTO events VALUES (1, 'signup'), (2, 'login')")
    with service.serve():
        yield service


@pytest.fixture
def propeller(fake: SnowflakeFake, private_key: rsa.RSAPrivateKey) -> Iterator[PropellerClient]:
    pem = private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
    settings = {"host": "127.0.0.1", "port": fake.port, "protocol": "http", "retry_max_attempts": 2,
                "retry_backoff_base_ms": 10, "login_timeout": 5, "request_timeout": 5}
    # The secret flytekit's connector read: snowflake_private_key.
    with our_host("snowflake", settings, {"snowflake_private_key": pem}) as host:
        yield PropellerClient(host.channel)


def events_task(query: str = "SELECT id, kind FROM events WHERE kind = %(kind)s") -> SnowflakeTask:
    return SnowflakeTask(name="compat.snowflake", query_template=query, inputs=kwtypes(kind=str),
                         output_schema_type=StructuredDataset, task_config=CONFIG)


def test_flytekit_task_runs_and_returns_flytekits_result_uri(propeller, fake):
    task = serialize(events_task())
    assert (task.type, task.task_type_version, dict(task.config)["warehouse"]) == ("snowflake", 0, "COMPUTE_WH")

    final = propeller.run(task, {"kind": "signup"})

    assert final.phase == SUCCEEDED, final.message
    [query] = fake.submissions()
    # The URI flytekit's connector returned, which flytekit's Snowflake structured-dataset decoder reads.
    assert builders.outputs_to_python(final) == {
        "results": f"snowflake://{USER}:{ACCOUNT}/COMPUTE_WH/ANALYTICS/PUBLIC/{query.id}"}
    assert (query.user, query.warehouse, query.database, query.schema) == (USER, "COMPUTE_WH", "ANALYTICS", "PUBLIC")
    # flytekit formatted %(kind)s into the SQL text; the value is a server-side binding now.
    assert "signup" not in query.sql and [b["value"] for b in query.bindings.values()] == ["signup"]


def test_task_without_output_runs_to_success(propeller, fake):
    task = serialize(SnowflakeTask(name="compat.snowflake.insert", query_template="INSERT INTO events VALUES (3, 'x')",
                                   task_config=CONFIG))

    assert propeller.run(task).phase == SUCCEEDED
    assert fake.sql("SELECT count(*) FROM events") == [(3,)]


def test_statuses_flytekit_turned_into_grpc_errors_are_phases(propeller, fake):
    # flytekit's convert_to_flyte_phase raised ValueError (gRPC INTERNAL, a Propeller strike) for these.
    fake.script_next_job("QUEUED", "RESUMING_WAREHOUSE", "BLOCKED", "SUCCESS")
    task = serialize(events_task())

    final, seen = propeller.poll(task, propeller.create(task, {"kind": "login"}), interval=0.01)

    assert [r.phase for r in seen] == [QUEUED, WAITING, RUNNING, SUCCEEDED]
    assert final.phase == SUCCEEDED


def test_failed_query_says_why(propeller, fake):
    # flytekit's connector answered FAILED with no message.
    fake.script_next_job("RUNNING", {"status": "FAILED_WITH_ERROR", "errorCode": "100038",
                                     "errorMessage": "Numeric value 'abc' is not recognized"})

    final = propeller.run(serialize(events_task()), {"kind": "signup"})

    assert final.phase == FAILED
    assert "100038" in final.message and "Numeric value 'abc' is not recognized" in final.message


def test_job_started_by_flytekits_host_is_not_adopted(propeller, fake):
    from flytekitplugins.snowflake.connector import SnowflakeJobMetadata

    task = serialize(events_task())
    meta = SnowflakeJobMetadata(user=USER, account=ACCOUNT, database="ANALYTICS", schema="PUBLIC",
                                warehouse="COMPUTE_WH", query_id="01b2-0000", has_output=True).encode()
    assert json.loads(meta)["query_id"] == "01b2-0000"

    resource = propeller.get(task, meta)

    assert resource.phase == FAILED
    assert "cannot be adopted" in resource.message and "docs/migrating-from-flytekit.md" in resource.message
    assert fake.submissions() == [] and fake.cancelled() == []
