"""The Flyte 2 services (``flyteidl2.connector``), served next to the v1 services when flyteidl2 is installed.

flyteidl2's core messages (TaskTemplate, Literal, TaskExecutionIdentifier, ...) keep flyteidl v1's field numbers,
so requests are transcoded to the v1 types through their bytes and go through the same dispatcher. What
differs (wire reference §5): inputs and outputs are lists of named literals in random order, a
``Connection`` carries secrets on every call (used for that call only, never persisted), there is no sync
service and no ``state`` field. Sync task types are served on the v1 wire only.
"""

from __future__ import annotations

from typing import Any

import grpc
from flyteidl.admin import agent_pb2 as v1_admin
from flyteidl.core import literals_pb2 as v1_literals
from flyteidl.core import tasks_pb2 as v1_tasks
from flyteidl2.connector import connector_pb2 as c2
from flyteidl2.connector import service_pb2_grpc as s2
from flyteidl2.core import execution_pb2 as e2
from flyteidl2.core import literals_pb2 as l2
from flyteidl2.task import common_pb2 as t2

from flyteconnectors.core import literals
from flyteconnectors.core.dispatcher import Dispatcher, WireResource
from flyteconnectors.core.host import wire_v1
from flyteconnectors.core.host.services_v1 import _next, _prepend, abort_for, log_batches

SERVICE_NAMES = ["flyteidl2.connector.AsyncConnectorService", "flyteidl2.connector.ConnectorMetadataService"]


def _transcode(message: Any, target: type[Any]) -> Any:
    return target.FromString(message.SerializeToString())


def _secrets(request: Any) -> dict[str, str] | None:
    if not request.HasField("connection"):
        return None
    return dict(request.connection.secrets) or None


def _category(request: Any) -> tuple[str, int]:
    return request.task_category.name, request.task_category.version


def resource_to_v2(resource: WireResource) -> c2.Resource:
    msg = c2.Resource(
        phase=int(resource.phase),
        message=resource.message,
        log_links=[e2.TaskLog(name=link.name, uri=link.uri, message_format=e2.TaskLog.JSON)
                   for link in resource.log_links],
    )
    if resource.outputs is not None:
        msg.outputs.CopyFrom(
            t2.Outputs(literals=[t2.NamedLiteral(name=name, value=_transcode(lit, l2.Literal))
                                 for name, lit in resource.outputs.items()])
        )
    if resource.custom_info:
        msg.custom_info.CopyFrom(literals.to_struct(resource.custom_info))
    return msg


class AsyncConnectorService(s2.AsyncConnectorServiceServicer):
    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher

    async def CreateTask(self, request: c2.CreateTaskRequest, context: Any) -> c2.CreateTaskResponse:
        try:
            template = _transcode(request.template, v1_tasks.TaskTemplate)
            # Named literals arrive in random order; match them by name.
            inputs = v1_literals.LiteralMap(
                literals={nl.name: _transcode(nl.value, v1_literals.Literal) for nl in request.inputs.literals}
            )
            meta = _transcode(request.task_execution_metadata, v1_admin.TaskExecutionMetadata)
            req = wire_v1.request_from_template(template, inputs, request.output_prefix, meta,
                                                wire_v1.deadline_of(context), secrets=_secrets(request))
            resource_meta = await self.dispatcher.create(req)
        except Exception as err:
            await abort_for(context, err)
            raise
        return c2.CreateTaskResponse(resource_meta=resource_meta)

    async def GetTask(self, request: c2.GetTaskRequest, context: Any) -> c2.GetTaskResponse:
        name, version = _category(request)
        try:
            resource = await self.dispatcher.get(name, version, request.resource_meta,
                                                 output_prefix=request.output_prefix,
                                                 deadline=wire_v1.deadline_of(context), secrets=_secrets(request))
        except Exception as err:
            await abort_for(context, err)
            raise
        return c2.GetTaskResponse(resource=resource_to_v2(resource))

    async def DeleteTask(self, request: c2.DeleteTaskRequest, context: Any) -> c2.DeleteTaskResponse:
        name, version = _category(request)
        try:
            await self.dispatcher.delete(name, version, request.resource_meta,
                                         deadline=wire_v1.deadline_of(context), secrets=_secrets(request))
        except Exception as err:
            await abort_for(context, err)
            raise
        return c2.DeleteTaskResponse()

    async def GetTaskMetrics(self, request: Any, context: Any) -> Any:
        name, version = _category(request)
        try:
            await self.dispatcher.metrics(name, version, request.resource_meta)
        except Exception as err:
            await abort_for(context, err)
            raise
        return c2.GetTaskMetricsResponse()

    async def GetTaskLogs(self, request: Any, context: Any) -> Any:
        name, version = _category(request)
        try:
            lines = self.dispatcher.logs(name, version, request.resource_meta,
                                         deadline=wire_v1.deadline_of(context))
            first = await _next(lines)  # surfaces UNIMPLEMENTED or a bad resource_meta before the header
            yield c2.GetTaskLogsResponse(header=c2.GetTaskLogsResponseHeader(token=""))
            async for batch in log_batches(_prepend(first, lines)):
                yield c2.GetTaskLogsResponse(body=c2.GetTaskLogsResponseBody(results=batch))
        except Exception as err:
            await abort_for(context, err)
            raise


class ConnectorMetadataService(s2.ConnectorMetadataServiceServicer):
    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher

    def connectors(self) -> list[c2.Connector]:
        by_name: dict[str, c2.Connector] = {}
        for category, klass in self.dispatcher.registry.categories():
            if klass.is_sync:  # Flyte 2 has no sync service
                continue
            connector = by_name.setdefault(klass.name, c2.Connector(name=klass.name))
            connector.supported_task_categories.append(c2.TaskCategory(name=category.name, version=category.version))
        return list(by_name.values())

    async def ListConnectors(self, request: Any, context: Any) -> c2.ListConnectorsResponse:
        return c2.ListConnectorsResponse(connectors=self.connectors())

    async def GetConnector(self, request: c2.GetConnectorRequest, context: Any) -> c2.GetConnectorResponse:
        for connector in self.connectors():
            if connector.name == request.name:
                return c2.GetConnectorResponse(connector=connector)
        await context.abort(grpc.StatusCode.NOT_FOUND, f"no connector named {request.name!r}")
        raise AssertionError("unreachable")


def add_v2_services(server: grpc.aio.Server, dispatcher: Dispatcher) -> list[str]:
    from flyteidl2.connector import service_pb2

    from flyteconnectors.core.host.registration import add_servicer

    services = service_pb2.DESCRIPTOR.services_by_name
    add_servicer(server, services["AsyncConnectorService"], AsyncConnectorService(dispatcher))
    add_servicer(server, services["ConnectorMetadataService"], ConnectorMetadataService(dispatcher))
    return list(SERVICE_NAMES)
