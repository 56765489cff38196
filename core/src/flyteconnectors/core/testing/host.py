"""Run the real gRPC host in-process (on its own thread and event loop) and talk to it like Propeller."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

import grpc
from flyteidl.admin import agent_pb2
from flyteidl.service import agent_pb2_grpc

from flyteconnectors.core.connector import Connector
from flyteconnectors.core.dispatcher import Dispatcher, DispatcherOptions
from flyteconnectors.core.host.server import Host, ServerOptions
from flyteconnectors.core.meta import MetaCodec
from flyteconnectors.core.registry import Registry
from flyteconnectors.core.secrets import Secrets
from flyteconnectors.core.testing import builders


class HostThread:
    """A host serving ``connectors`` on 127.0.0.1:<free port>, stopped on exit.

    ``settings`` maps a package name to its connector settings (endpoint overrides of the fakes).
    """

    def __init__(
        self,
        connectors: Iterable[type[Connector[Any]]] = (),
        *,
        registry: Registry | None = None,
        settings: Mapping[str, Mapping[str, Any]] | None = None,
        secrets: Mapping[str, str] | None = None,
        options: DispatcherOptions | None = None,
        server_options: ServerOptions | None = None,
        signing_keys: tuple[bytes, ...] = (),
        package: str = "local",
    ) -> None:
        settings = dict(settings or {})
        if registry is None:
            registry = Registry(lambda pkg: settings.get(pkg, {}))
            classes = list(connectors)
            if classes:
                registry.register(*classes, package=package)
        self.registry = registry
        self.dispatcher = Dispatcher(
            registry,
            codec=MetaCodec(signing_keys),
            secrets=Secrets(overrides=secrets, dirs=()) if secrets is not None else Secrets(),
            options=options,
        )
        opts = server_options or ServerOptions(port=0)
        opts.host = "127.0.0.1"
        self.host = Host(self.dispatcher, opts)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="host-loop", daemon=True)
        self.channel: grpc.Channel | None = None

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> HostThread:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.host.start(), self.loop).result(30)
        # As the real host does before it reports SERVING: heavy SDK imports happen now, not in a test's call.
        asyncio.run_coroutine_threadsafe(_wait_for(self.host), self.loop).result(120)
        self.channel = grpc.insecure_channel(self.address)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.channel is not None:
            self.channel.close()
        asyncio.run_coroutine_threadsafe(self.host.stop(0.5), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.host.port}"

    # ------------------------------------------------------------------ stubs
    @property
    def async_stub(self) -> agent_pb2_grpc.AsyncAgentServiceStub:
        return agent_pb2_grpc.AsyncAgentServiceStub(self.channel)

    @property
    def sync_stub(self) -> agent_pb2_grpc.SyncAgentServiceStub:
        return agent_pb2_grpc.SyncAgentServiceStub(self.channel)

    @property
    def metadata_stub(self) -> agent_pb2_grpc.AgentMetadataServiceStub:
        return agent_pb2_grpc.AgentMetadataServiceStub(self.channel)


async def _wait_for(host: Host) -> None:
    warm_up = getattr(host, "warm_up", None)
    if warm_up is not None:
        await warm_up


class PropellerClient:
    """Drives one task execution the way FlytePropeller does: CreateTask, GetTask until terminal, DeleteTask.

    Every call carries Propeller's default 10 s deadline (connector-service).
    """

    TERMINAL = {3, 4, 5, 8}

    def __init__(self, channel: grpc.Channel, timeout: float = 10.0) -> None:
        self.async_stub = agent_pb2_grpc.AsyncAgentServiceStub(channel)
        self.sync_stub = agent_pb2_grpc.SyncAgentServiceStub(channel)
        self.metadata_stub = agent_pb2_grpc.AgentMetadataServiceStub(channel)
        self.timeout = timeout

    def create(self, template: Any, inputs: Mapping[str, Any] | None = None, **kw: Any) -> bytes:
        request = builders.create_request(template, inputs, **kw)
        return self.async_stub.CreateTask(request, timeout=self.timeout).resource_meta  # type: ignore[no-any-return]

    def get(self, template: Any, meta: bytes, output_prefix: str = builders.OUTPUT_PREFIX) -> agent_pb2.Resource:
        request = builders.get_request(template, meta, output_prefix)
        return self.async_stub.GetTask(request, timeout=self.timeout).resource

    def delete(self, template: Any, meta: bytes) -> None:
        self.async_stub.DeleteTask(builders.delete_request(template, meta), timeout=self.timeout)

    def poll(self, template: Any, meta: bytes, *, interval: float = 0.02, limit: float = 30.0,
             max_polls: int = 10_000, output_prefix: str = builders.OUTPUT_PREFIX,
             ) -> tuple[agent_pb2.Resource, list[agent_pb2.Resource]]:
        """GetTask until a terminal phase; returns the last resource and every one seen."""
        seen = []
        end = time.monotonic() + limit
        for _ in range(max_polls):
            resource = self.get(template, meta, output_prefix)
            seen.append(resource)
            if resource.phase in self.TERMINAL:
                return resource, seen
            if time.monotonic() > end:
                break
            time.sleep(interval)
        raise TimeoutError(f"job did not finish in {limit}s; last phase {seen[-1].phase if seen else None}")

    def run(self, template: Any, inputs: Mapping[str, Any] | None = None, **kw: Any) -> agent_pb2.Resource:
        """Create, then poll to a terminal phase. ``output_prefix`` (if given) goes on every call."""
        meta = self.create(template, inputs, **kw)
        return self.poll(template, meta, output_prefix=kw.get("output_prefix", builders.OUTPUT_PREFIX))[0]

    def execute_sync(self, template: Any, inputs: Mapping[str, Any] | None = None, **kw: Any) -> agent_pb2.Resource:
        responses = list(self.sync_stub.ExecuteTaskSync(iter(builders.sync_messages(template, inputs, **kw)),
                                                         timeout=self.timeout))
        if len(responses) != 1 or not responses[0].HasField("header"):
            raise AssertionError(f"expected exactly one header response, got {responses}")
        return responses[0].header.resource

    def list_agents(self) -> list[agent_pb2.Agent]:
        return list(self.metadata_stub.ListAgents(agent_pb2.ListAgentsRequest(), timeout=self.timeout).agents)


class Flyte2Client(PropellerClient):
    """Drives a job the way Flyte 2's executor does (flyteidl2.connector), returning v1-shaped Resources.

    Inputs go as named literals in a shuffled order, and ``secrets`` travel in a ``Connection`` on every
    call, as Flyte 2 sends them.
    """

    def __init__(self, channel: grpc.Channel, timeout: float = 10.0, secrets: Mapping[str, str] | None = None):
        super().__init__(channel, timeout)
        from flyteidl2.connector import service_pb2_grpc

        self.v2_stub = service_pb2_grpc.AsyncConnectorServiceStub(channel)
        self.v2_metadata = service_pb2_grpc.ConnectorMetadataServiceStub(channel)
        self.secrets = dict(secrets or {})

    def _connection(self, template: Any) -> Any:
        from flyteidl2.core import security_pb2

        return security_pb2.Connection(task_type=template.type, secrets=self.secrets)

    @staticmethod
    def _category(template: Any) -> Any:
        from flyteidl2.connector import connector_pb2

        return connector_pb2.TaskCategory(name=template.type, version=template.task_type_version)

    def create(self, template: Any, inputs: Mapping[str, Any] | None = None, **kw: Any) -> bytes:
        import random

        from flyteidl2.connector import connector_pb2
        from flyteidl2.core import literals_pb2, tasks_pb2
        from flyteidl2.task import common_pb2

        v1 = builders.create_request(template, inputs, **kw)
        named = [common_pb2.NamedLiteral(name=n, value=literals_pb2.Literal.FromString(lit.SerializeToString()))
                 for n, lit in v1.inputs.literals.items()]
        random.shuffle(named)
        request = connector_pb2.CreateTaskRequest(
            inputs=common_pb2.Inputs(literals=named),
            template=tasks_pb2.TaskTemplate.FromString(template.SerializeToString()),
            output_prefix=v1.output_prefix,
            task_execution_metadata=connector_pb2.TaskExecutionMetadata.FromString(
                v1.task_execution_metadata.SerializeToString()),
            connection=self._connection(template),
        )
        return self.v2_stub.CreateTask(request, timeout=self.timeout).resource_meta  # type: ignore[no-any-return]

    def get(self, template: Any, meta: bytes, output_prefix: str = builders.OUTPUT_PREFIX) -> agent_pb2.Resource:
        from flyteidl2.connector import connector_pb2

        answer = self.v2_stub.GetTask(
            connector_pb2.GetTaskRequest(resource_meta=meta, task_category=self._category(template),
                                         output_prefix=output_prefix,
                                         connection=self._connection(template)),
            timeout=self.timeout,
        )
        # flyteidl2's Resource is wire-compatible with v1's (Outputs' named literals encode like a map).
        return agent_pb2.Resource.FromString(answer.resource.SerializeToString())

    def delete(self, template: Any, meta: bytes) -> None:
        from flyteidl2.connector import connector_pb2

        self.v2_stub.DeleteTask(
            connector_pb2.DeleteTaskRequest(resource_meta=meta, task_category=self._category(template),
                                            connection=self._connection(template)),
            timeout=self.timeout,
        )

    def list_connectors(self) -> list[Any]:
        from flyteidl2.connector import connector_pb2

        return list(self.v2_metadata.ListConnectors(connector_pb2.ListConnectorsRequest(), timeout=self.timeout)
                    .connectors)
