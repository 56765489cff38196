"""The same connectors served to Flyte 2 (flyteidl2.connector) on the same port."""

import pytest

pytest.importorskip("flyteidl2")

from flyteconnectors.core import Phase
from flyteconnectors.core.testing import builders
from flyteconnectors.core.testing.example import ExampleEcho, ExampleFake, ExampleJob
from flyteconnectors.core.testing.host import Flyte2Client, HostThread, PropellerClient


@pytest.fixture
def fake():
    with ExampleFake().serve() as fake:
        yield fake


@pytest.fixture
def host(fake):
    # No host-level secrets: Flyte 2 sends them per call.
    with HostThread([ExampleJob, ExampleEcho], settings={"example": {"endpoint": fake.url}}, secrets={},
                    package="example") as host:
        yield host


TEMPLATE = builders.task_template("example-job", {"payload": "p"}, inputs={"a": int, "b": str},
                                  outputs={"result": str})


def test_a_flyte2_client_runs_a_job_with_per_call_secrets(host, fake):
    client = Flyte2Client(host.channel, secrets={"example_token": "per-call-token-1234"})
    final = client.run(TEMPLATE, {"a": 1, "b": "x"})
    assert final.phase == Phase.SUCCEEDED
    assert builders.outputs_to_python(final) == {"result": "processed p"}
    assert all(r.headers["authorization"] == "Bearer per-call-token-1234" for r in fake.requests())


def test_per_call_secrets_are_not_kept_after_the_call(host):
    Flyte2Client(host.channel, secrets={"example_token": "per-call-token-1234"}).create(TEMPLATE, {"a": 1, "b": "x"})
    without = Flyte2Client(host.channel, secrets={})
    meta = without.create(TEMPLATE, {"a": 2, "b": "y"}, ident=builders.identity("other"))
    answer = without.get(TEMPLATE, meta)
    assert answer.phase == Phase.FAILED and "example_token" in answer.message


def test_per_call_secrets_never_reach_resource_meta(host):
    meta = Flyte2Client(host.channel, secrets={"example_token": "per-call-token-1234"}).create(TEMPLATE, {"a": 1,
                                                                                                         "b": "x"})
    assert b"per-call-token-1234" not in meta


def test_list_connectors_shows_async_types_only(host):
    names = {(c.name, tuple(t.name for t in c.supported_task_categories))
             for c in Flyte2Client(host.channel).list_connectors()}
    assert names == {("Example Jobs", ("example-job",))}
    v1 = {a.name for a in PropellerClient(host.channel).list_agents()}
    assert v1 == {"Example Jobs", "Example Echo"}


def test_both_wires_are_in_the_health_service(host):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    stub = health_pb2_grpc.HealthStub(host.channel)
    for service in ("flyteidl2.connector.AsyncConnectorService", "flyteidl.service.AsyncAgentService"):
        status = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status
        assert status == health_pb2.HealthCheckResponse.SERVING


def test_a_job_created_over_v1_is_read_and_cancelled_over_v2(fake):
    with HostThread([ExampleJob], settings={"example": {"endpoint": fake.url}},
                    secrets={"example_token": "host-token-5678"}, package="example") as host:
        fake.script_next_job("RUNNING")
        meta = PropellerClient(host.channel).create(TEMPLATE, {"a": 1, "b": "x"})
        v2 = Flyte2Client(host.channel)
        assert v2.get(TEMPLATE, meta).phase == Phase.RUNNING
        v2.delete(TEMPLATE, meta)
        assert next(iter(fake.jobs.values()))["cancelled"] == 1


def test_a_flyte2_task_naming_its_secrets_in_custom_still_validates(host):
    template = builders.task_template("example-job", {"payload": "p", "secrets": {"example_token": "team-token"},
                                                      "configs": {}}, outputs={"result": str})
    final = Flyte2Client(host.channel, secrets={"example_token": "per-call-token-1234"}).run(template)
    assert final.phase == Phase.SUCCEEDED
