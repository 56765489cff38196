"""The host driven over gRPC with flyteidl's generated stubs, exactly as FlytePropeller calls it."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import ClassVar

import grpc
import pytest
from flyteidl.admin import agent_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from toy import JOBS, Echo, EchoConfig, LoggingJob, ToyConfig, ToyJob, ToyMeta

from flyteconnectors.core import AsyncConnector, CallContext, Resource, SyncConnector, TaskContext
from flyteconnectors.core.dispatcher import DispatcherOptions
from flyteconnectors.core.testing import builders
from flyteconnectors.core.testing.host import HostThread, PropellerClient

SUCCEEDED, ABORTED, FAILED, RETRYABLE_FAILED, QUEUED, RUNNING = 3, 4, 5, 8, 1, 2
V1_SERVICES = {
    "flyteidl.service.AsyncAgentService",
    "flyteidl.service.SyncAgentService",
    "flyteidl.service.AgentMetadataService",
}


class ToyJobV2(ToyJob):
    """Version 2 of the toy task type, served by the same agent name."""

    task_version = 2


class Exploding(AsyncConnector[ToyConfig, ToyMeta]):
    name = "Exploding"
    task_type = "toy_exploding"

    def create(self, task: TaskContext[ToyConfig]) -> ToyMeta:
        raise RuntimeError("boom\n  in a nested call")

    def get(self, job: ToyMeta, ctx: CallContext) -> Resource:
        raise NotImplementedError

    def delete(self, job: ToyMeta, ctx: CallContext) -> None:
        raise NotImplementedError


class Patient(SyncConnector[EchoConfig]):
    """A sync connector awaiting a slow service; records whether its call was cancelled."""

    name = "Patient"
    task_type = "toy_patient"
    cancelled: ClassVar[threading.Event] = threading.Event()

    async def do(self, task: TaskContext[EchoConfig]) -> Resource:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            Patient.cancelled.set()
            raise
        return Resource.succeeded()


@pytest.fixture(scope="module")
def host():
    with HostThread([ToyJob, ToyJobV2, Echo, LoggingJob, Exploding, Patient]) as running:
        yield running


@pytest.fixture
def client(host):
    return PropellerClient(host.channel)


def ident():
    return builders.identity(execution=uuid.uuid4().hex[:10])


def toy_template(steps=("PENDING", "RUNNING", "DONE"), task_type="toy_job", version=0, **custom):
    return builders.task_template(task_type, {"steps": list(steps), **custom}, version=version,
                                  inputs={"x": int}, outputs={"echo": int})


def assert_one_line_without_traceback(details: str) -> None:
    assert details
    assert "\n" not in details
    assert "Traceback" not in details and 'File "' not in details


# ------------------------------------------------------------------------------------------ metadata
def test_list_agents_lists_every_task_type_in_both_fields_with_is_sync(client):
    agents = {a.name: a for a in client.list_agents()}

    assert set(agents) == {"Toy", "Echo", "Toy with logs", "Exploding", "Patient"}
    assert [(c.name, c.version) for c in agents["Toy"].supported_task_categories] == [("toy_job", 0), ("toy_job", 2)]
    # The deprecated list, which Propeller still reads, names each task type once.
    assert list(agents["Toy"].supported_task_types) == ["toy_job"]
    assert agents["Echo"].is_sync and list(agents["Echo"].supported_task_types) == ["toy_echo"]
    assert not agents["Toy"].is_sync and not agents["Toy with logs"].is_sync


def test_get_agent_by_name_and_unknown_name(host):
    stub = host.metadata_stub
    agent = stub.GetAgent(agent_pb2.GetAgentRequest(name="Echo"), timeout=5).agent
    assert agent.is_sync and agent.supported_task_categories[0].name == "toy_echo"
    with pytest.raises(grpc.RpcError) as err:
        stub.GetAgent(agent_pb2.GetAgentRequest(name="Nope"), timeout=5)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


# ------------------------------------------------------------------------------------------ async jobs
def test_async_job_is_created_polled_to_success_with_outputs(client):
    template = toy_template()
    meta = client.create(template, {"x": 21}, ident=ident())
    final, seen = client.poll(template, meta, interval=0)

    assert [r.phase for r in seen] == [QUEUED, RUNNING, SUCCEEDED]
    assert final.state == agent_pb2.SUCCEEDED  # the deprecated field agrees with the phase
    assert builders.outputs_to_python(final) == {"echo": 42}


def test_get_task_with_only_the_deprecated_task_type(host, client):
    template = toy_template(steps=("DONE",))
    meta = client.create(template, {"x": 1}, ident=ident())
    # An older Propeller sends only task_type (no task_category).
    resource = host.async_stub.GetTask(agent_pb2.GetTaskRequest(task_type="toy_job", resource_meta=meta),
                                       timeout=5).resource
    assert resource.phase == SUCCEEDED


def test_task_category_version_picks_the_versioned_connector(host, client):
    template = toy_template(steps=("DONE",), version=2)
    meta = client.create(template, {"x": 2}, ident=ident())
    request = agent_pb2.GetTaskRequest(task_type="toy_job", resource_meta=meta,
                                       task_category=agent_pb2.TaskCategory(name="toy_job", version=2))
    assert host.async_stub.GetTask(request, timeout=5).resource.phase == SUCCEEDED


def test_delete_cancels_the_job_and_is_idempotent(client):
    template = toy_template(steps=("RUNNING",))
    job_ident = ident()
    meta = client.create(template, {"x": 1}, ident=job_ident)
    assert client.get(template, meta).phase == RUNNING

    client.delete(template, meta)
    client.delete(template, meta)  # Propeller may call it again: still OK

    assert client.get(template, meta).phase == ABORTED
    assert JOBS[json.loads(meta)["m"]["job_id"]]["deleted"]


def test_get_logs_streams_a_header_then_the_lines(host, client):
    template = toy_template(steps=("RUNNING",), task_type="toy_logs")
    meta = client.create(template, {"x": 1}, ident=ident())
    request = agent_pb2.GetTaskLogsRequest(task_type="toy_logs", resource_meta=meta,
                                           task_category=agent_pb2.TaskCategory(name="toy_logs"))

    responses = list(host.async_stub.GetTaskLogs(request, timeout=5))

    assert responses[0].HasField("header")
    lines = [line for r in responses[1:] for line in r.body.results]
    assert len(lines) == 250 and lines[0].endswith("line 0") and lines[-1].endswith("line 249")
    assert len(responses) > 2  # sent in batches, not one message
    assert [s.message for r in responses[1:] for s in r.body.structured_lines] == lines

    request.lines = 10
    limited = list(host.async_stub.GetTaskLogs(request, timeout=5))
    assert sum(len(r.body.results) for r in limited[1:]) == 10


def test_get_logs_of_a_connector_without_logs_is_unimplemented(host, client):
    template = toy_template(steps=("RUNNING",))
    meta = client.create(template, {"x": 1}, ident=ident())
    request = agent_pb2.GetTaskLogsRequest(task_type="toy_job", resource_meta=meta)
    with pytest.raises(grpc.RpcError) as err:
        list(host.async_stub.GetTaskLogs(request, timeout=5))
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert_one_line_without_traceback(err.value.details())


def test_get_task_metrics_of_a_connector_without_metrics_is_unimplemented(host, client):
    template = toy_template(steps=("RUNNING",))
    meta = client.create(template, {"x": 1}, ident=ident())
    with pytest.raises(grpc.RpcError) as err:
        host.async_stub.GetTaskMetrics(agent_pb2.GetTaskMetricsRequest(task_type="toy_job", resource_meta=meta),
                                       timeout=5)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert_one_line_without_traceback(err.value.details())


# ------------------------------------------------------------------------------------------ sync
def echo_template(**custom):
    return builders.task_template("toy_echo", {"prefix": ">", **custom}, inputs={"text": str}, outputs={"out": str})


def test_execute_task_sync_header_then_inputs_answers_one_terminal_header(client):
    resource = client.execute_sync(echo_template(), {"text": "hi"}, ident=ident())
    assert resource.phase == SUCCEEDED
    assert builders.outputs_to_python(resource) == {"out": ">hi"}


def execute(host, messages, timeout=5.0):
    return list(host.sync_stub.ExecuteTaskSync(iter(messages), timeout=timeout))


def test_execute_task_sync_with_only_a_header(host):
    header, _inputs = builders.sync_messages(echo_template(), {"text": "hi"})
    with pytest.raises(grpc.RpcError) as err:
        execute(host, [header])  # the task declares inputs but none were sent
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "inputs" in err.value.details()

    no_inputs = builders.task_template("toy_echo", {"prefix": "!"}, outputs={"out": str})
    header, _ = builders.sync_messages(no_inputs, {})
    (response,) = execute(host, [header])
    assert response.header.resource.phase == SUCCEEDED
    assert builders.outputs_to_python(response.header.resource) == {"out": "!"}


def test_execute_task_sync_with_two_headers_or_inputs_first_is_refused(host):
    header, inputs = builders.sync_messages(echo_template(), {"text": "hi"})
    for messages in ([header, header], [inputs, header]):
        with pytest.raises(grpc.RpcError) as err:
            execute(host, messages)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "header" in err.value.details()
        assert_one_line_without_traceback(err.value.details())


def test_sync_and_async_doors_are_not_mixed_up(host, client):
    with pytest.raises(grpc.RpcError) as err:
        client.create(echo_template(), {"text": "x"})
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "ExecuteTaskSync" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        client.execute_sync(toy_template(), {"x": 1})
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "CreateTask" in err.value.details()


# ------------------------------------------------------------------------------------------ errors
def test_unknown_task_type_is_not_found_with_one_line(host, client):
    unknown = builders.task_template("no_such_type", {})
    with pytest.raises(grpc.RpcError) as err:
        client.create(unknown)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert "no_such_type" in err.value.details() and "toy_job" in err.value.details()
    assert_one_line_without_traceback(err.value.details())

    with pytest.raises(grpc.RpcError) as err:
        client.execute_sync(unknown)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert_one_line_without_traceback(err.value.details())


def test_unexpected_connector_error_is_internal_with_one_line(client):
    with pytest.raises(grpc.RpcError) as err:
        client.create(builders.task_template("toy_exploding", {}), ident=ident())
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert "RuntimeError: boom" in err.value.details()
    assert_one_line_without_traceback(err.value.details())


# ------------------------------------------------------------------------------------------ deadlines
def test_create_slower_than_the_deadline_answers_before_the_client_gives_up():
    with HostThread([ToyJob], options=DispatcherOptions(deadline_margin=0.3)) as host:
        client = PropellerClient(host.channel, timeout=1.5)
        start = time.monotonic()
        with pytest.raises(grpc.RpcError) as err:
            client.create(toy_template(sleep=3.0), {"x": 1}, ident=ident())
        elapsed = time.monotonic() - start
    # The host's answer, not the client's own DEADLINE_EXCEEDED.
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "deadline" in err.value.details()
    assert elapsed < 1.5


def test_sync_call_slower_than_the_deadline_fails_clearly(host):
    client = PropellerClient(host.channel, timeout=1.0)
    start = time.monotonic()
    resource = client.execute_sync(echo_template(sleep=3.0), {"text": "x"})
    assert time.monotonic() - start < 1.0
    assert resource.phase == RETRYABLE_FAILED
    assert "deadline" in resource.message


def test_a_client_that_goes_away_cancels_the_connector_call(host):
    Patient.cancelled.clear()
    call = host.sync_stub.ExecuteTaskSync(iter(builders.sync_messages(builders.task_template("toy_patient", {}))),
                                          timeout=10)
    time.sleep(0.3)
    call.cancel()
    assert Patient.cancelled.wait(2)


# ------------------------------------------------------------------------------------------ health, reflection
def test_health_reports_serving_for_the_server_and_each_service(host):
    stub = health_pb2_grpc.HealthStub(host.channel)
    for service in ["", *V1_SERVICES]:
        status = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status
        assert status == health_pb2.HealthCheckResponse.SERVING, service


def test_reflection_lists_the_services(host):
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    services = set(ProtoReflectionDescriptorDatabase(host.channel).get_services())
    assert services >= V1_SERVICES | {"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"}


def test_draining_host_reports_not_serving_then_refuses_calls():
    with HostThread([ToyJob, Echo]) as host:
        watch = health_pb2_grpc.HealthStub(host.channel).Watch(
            health_pb2.HealthCheckRequest(service="flyteidl.service.AsyncAgentService"), timeout=10
        )
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        slow = ThreadPoolExecutor(1).submit(
            execute, host, builders.sync_messages(echo_template(sleep=0.5), {"text": "late"})
        )
        time.sleep(0.2)
        drain = asyncio.run_coroutine_threadsafe(host.host.stop(3.0), host.loop)

        assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
        watch.cancel()
        # The call in flight when the drain began still finishes.
        (response,) = slow.result()
        assert response.header.resource.phase == SUCCEEDED
        drain.result(5)
        with pytest.raises(grpc.RpcError) as err:
            PropellerClient(host.channel, timeout=2).list_agents()
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE


# ------------------------------------------------------------------------------------------ replicas
def test_two_replicas_serve_one_job_alternately():
    key = (b"replica-shared-signing-key",)
    with HostThread([ToyJob], signing_keys=key) as a, HostThread([ToyJob], signing_keys=key) as b:
        on_a, on_b = PropellerClient(a.channel), PropellerClient(b.channel)
        template = toy_template(steps=("PENDING", "RUNNING"))
        meta = on_a.create(template, {"x": 5}, ident=ident())

        assert on_b.get(template, meta).phase == QUEUED
        assert on_a.get(template, meta).phase == RUNNING
        on_a.delete(template, meta)
        assert on_b.get(template, meta).phase == ABORTED


# ------------------------------------------------------------------------------------------ metrics
def test_metrics_endpoint_exposes_calls_latency_loop_lag_and_executor_saturation(host, client):
    import socket
    import urllib.request

    from flyteconnectors.core.host.app import start_metrics_server
    from flyteconnectors.core.host.settings import HostSettings

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = start_metrics_server(HostSettings(metrics_port=port, metrics_bind="127.0.0.1"))
    try:
        client.execute_sync(echo_template(), {"text": "m"}, ident=ident())
        client.create(toy_template(steps=("DONE",)), {"x": 1}, ident=ident())  # a plain def: uses the executor
        time.sleep(0.1)  # let the loop watchdog tick
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        server.shutdown()
    samples = {line.split(" ")[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line and not line.startswith("#")}
    assert samples['flyteconnectors_requests_total{operation="do",outcome="ok",task_type="toy_echo"}'] >= 1
    assert samples['flyteconnectors_request_seconds_count{operation="create",task_type="toy_job"}'] >= 1
    assert 'flyteconnectors_in_flight{operation="do",task_type="toy_echo"}' in samples
    assert samples["flyteconnectors_event_loop_lag_seconds_count"] > 0
    assert samples['flyteconnectors_executor_threads{connector="local"}'] == 64
    assert 'flyteconnectors_executor_busy_threads{connector="local"}' in samples


def test_bytes_that_are_not_protobuf_get_invalid_argument():
    from toy import Echo, ToyJob

    from flyteconnectors.core.testing.host import HostThread

    with HostThread([ToyJob, Echo]) as host:
        for path in ("/flyteidl.service.AsyncAgentService/CreateTask", "/flyteidl.service.AsyncAgentService/GetTask",
                     "/flyteidl.service.AgentMetadataService/ListAgents"):
            call = host.channel.unary_unary(path)
            with pytest.raises(grpc.RpcError) as err:
                call(b"\xff\xff\xff", timeout=5)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, path
        stream = host.channel.stream_stream("/flyteidl.service.SyncAgentService/ExecuteTaskSync")
        with pytest.raises(grpc.RpcError) as err:
            list(stream(iter([b"\x12\x80\x80\x80\x80\x10"]), timeout=5))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_services_are_registered_methods_as_well_as_generic_handlers():
    """Registered methods are matched in grpc's core, without a Python handler lookup per RPC (~10 % more
    trivial RPCs per second); the generic handler serves grpcio versions without them."""
    from flyteidl.service import agent_pb2 as service_pb2

    from flyteconnectors.core.host.registration import add_servicer

    class Recorder:
        def __init__(self) -> None:
            self.generic: list[object] = []
            self.registered: dict[str, dict[str, object]] = {}

        def add_generic_rpc_handlers(self, handlers: tuple[object, ...]) -> None:
            self.generic.extend(handlers)

        def add_registered_method_handlers(self, service: str, handlers: dict[str, object]) -> None:
            self.registered[service] = handlers

    class Servicer:
        def __getattr__(self, name: str) -> object:
            async def method(request: object, context: object) -> object:
                return None
            return method

    server = Recorder()
    service = service_pb2.DESCRIPTOR.services_by_name["AsyncAgentService"]
    add_servicer(server, service, Servicer())  # type: ignore[arg-type]
    assert len(server.generic) == 1
    assert set(server.registered[service.full_name]) == {m.name for m in service.methods}
