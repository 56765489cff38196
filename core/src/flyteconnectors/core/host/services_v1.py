"""The Flyte 1 services, exactly as FlytePropeller calls them (wire reference §2)."""

from __future__ import annotations

import logging
from typing import Any

import grpc
from flyteidl.admin import agent_pb2
from flyteidl.service import agent_pb2_grpc

from flyteconnectors.core.dispatcher import CallFailed, Dispatcher
from flyteconnectors.core.errors import (
    ConnectorError,
    ConnectorNotFound,
    DeadlineTooShort,
    InvalidResourceMeta,
    InvalidTaskConfig,
    JobNotFound,
    JobRejected,
    TransientServiceError,
)
from flyteconnectors.core.host import wire_v1
from flyteconnectors.core.secrets import redact

log = logging.getLogger("flyteconnectors.host")

SERVICE_NAMES = (
    "flyteidl.service.AsyncAgentService",
    "flyteidl.service.SyncAgentService",
    "flyteidl.service.AgentMetadataService",
)


# Which gRPC code a failure gets. Propeller treats every non-OK code alike (wire reference §2.4, §2.6): the code
# is for humans and dashboards, the one-line message is what users read.
_CODES: tuple[tuple[type[BaseException], grpc.StatusCode], ...] = (
    (ConnectorNotFound, grpc.StatusCode.NOT_FOUND),
    (InvalidResourceMeta, grpc.StatusCode.INVALID_ARGUMENT),
    (InvalidTaskConfig, grpc.StatusCode.INVALID_ARGUMENT),
    (DeadlineTooShort, grpc.StatusCode.DEADLINE_EXCEEDED),
    (TransientServiceError, grpc.StatusCode.UNAVAILABLE),
    (JobNotFound, grpc.StatusCode.NOT_FOUND),
    (JobRejected, grpc.StatusCode.FAILED_PRECONDITION),
)


def status_for(err: BaseException) -> tuple[grpc.StatusCode, str]:
    """The gRPC code and one-line message for an exception. Never a traceback, never a secret."""
    if isinstance(err, CallFailed):
        code = getattr(grpc.StatusCode, err.code, grpc.StatusCode.INTERNAL)
    elif isinstance(err, ConnectorError):
        code = next((c for kind, c in _CODES if isinstance(err, kind)), grpc.StatusCode.INTERNAL)
    else:
        log.error("unexpected error", exc_info=err)
        code = grpc.StatusCode.INTERNAL
        err = CallFailed(f"{type(err).__name__}: {err}")
    return code, redact(" ".join(str(err).split()))[:1000]


async def abort_for(context: grpc.aio.ServicerContext, err: BaseException) -> None:
    """End the RPC with the status for ``err`` (raises grpc's abort exception)."""
    code, message = status_for(err)
    await context.abort(code, message)


def _category(request: Any) -> tuple[str, int]:
    if request.HasField("task_category") and request.task_category.name:
        return request.task_category.name, request.task_category.version
    return request.task_type, 0


class AsyncAgentService(agent_pb2_grpc.AsyncAgentServiceServicer):
    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher

    async def CreateTask(self, request: agent_pb2.CreateTaskRequest, context: Any) -> agent_pb2.CreateTaskResponse:
        try:
            req = wire_v1.request_from_template(
                request.template,
                request.inputs,
                request.output_prefix,
                request.task_execution_metadata,
                wire_v1.deadline_of(context),
            )
            meta = await self.dispatcher.create(req)
        except Exception as err:
            await abort_for(context, err)
            raise
        return agent_pb2.CreateTaskResponse(resource_meta=meta)

    async def GetTask(self, request: agent_pb2.GetTaskRequest, context: Any) -> agent_pb2.GetTaskResponse:
        name, version = _category(request)
        try:
            resource = await self.dispatcher.get(
                name, version, request.resource_meta, output_prefix=request.output_prefix,
                deadline=wire_v1.deadline_of(context),
            )
        except Exception as err:
            await abort_for(context, err)
            raise
        return agent_pb2.GetTaskResponse(resource=wire_v1.resource_to_v1(resource))

    async def DeleteTask(self, request: agent_pb2.DeleteTaskRequest, context: Any) -> agent_pb2.DeleteTaskResponse:
        name, version = _category(request)
        try:
            await self.dispatcher.delete(name, version, request.resource_meta, deadline=wire_v1.deadline_of(context))
        except Exception as err:
            await abort_for(context, err)
            raise
        return agent_pb2.DeleteTaskResponse()

    async def GetTaskMetrics(self, request: agent_pb2.GetTaskMetricsRequest, context: Any) -> Any:
        name, version = _category(request)
        try:
            result = await self.dispatcher.metrics(name, version, request.resource_meta)
        except Exception as err:
            await abort_for(context, err)
            raise
        if isinstance(result, agent_pb2.GetTaskMetricsResponse):
            return result
        return agent_pb2.GetTaskMetricsResponse()

    async def GetTaskLogs(self, request: agent_pb2.GetTaskLogsRequest, context: Any) -> Any:
        name, version = _category(request)
        try:
            lines = self.dispatcher.logs(name, version, request.resource_meta, deadline=wire_v1.deadline_of(context))
            first = await _next(lines)  # surfaces UNIMPLEMENTED or a bad resource_meta before the header
            yield agent_pb2.GetTaskLogsResponse(header=agent_pb2.GetTaskLogsResponseHeader(token=""))
            async for batch in log_batches(_prepend(first, lines), request.lines or 0):
                yield _log_body(batch)
        except Exception as err:
            await abort_for(context, err)
            raise


_LOG_BATCH = 100


async def log_batches(lines: Any, limit: int = 0) -> Any:
    """Log lines in batches of ``_LOG_BATCH`` for the body messages; stops after ``limit`` lines (0: all)."""
    batch: list[str] = []
    sent = 0
    async for line in lines:
        batch.append(line)
        sent += 1
        if len(batch) >= _LOG_BATCH:
            yield batch
            batch = []
        if limit and sent >= limit:
            break
    if batch:
        yield batch


def _log_body(lines: list[str]) -> agent_pb2.GetTaskLogsResponse:
    # ``results`` is deprecated but is what flytekit-era clients read; ``structured_lines`` is its successor.
    body = agent_pb2.GetTaskLogsResponseBody(results=lines)
    if "structured_lines" in agent_pb2.GetTaskLogsResponseBody.DESCRIPTOR.fields_by_name:
        body.structured_lines.extend(agent_pb2.LogLine(message=line) for line in lines)
    return agent_pb2.GetTaskLogsResponse(body=body)


class SyncAgentService(agent_pb2_grpc.SyncAgentServiceServicer):
    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher

    async def ExecuteTaskSync(self, request_iterator: Any, context: Any) -> Any:
        try:
            header_msg = await _next(request_iterator)
            if header_msg is None or not header_msg.HasField("header"):
                raise InvalidTaskConfig("header", "the first ExecuteTaskSync message must be the header")
            inputs_msg = await _next(request_iterator)
            if inputs_msg is not None and inputs_msg.HasField("header"):
                raise InvalidTaskConfig("header", "ExecuteTaskSync got a second header; send the inputs next")
            header = header_msg.header
            if inputs_msg is None and header.template.interface.inputs.variables:
                raise InvalidTaskConfig(
                    "inputs", "the stream ended after the header; the task declares inputs, send them next"
                )
            req = wire_v1.request_from_template(
                header.template,
                inputs_msg.inputs if inputs_msg is not None else None,
                header.output_prefix,
                header.task_execution_metadata,
                wire_v1.deadline_of(context),
            )
            resource = await self.dispatcher.do(req)
        except Exception as err:
            await abort_for(context, err)
            raise
        yield agent_pb2.ExecuteTaskSyncResponse(
            header=agent_pb2.ExecuteTaskSyncResponseHeader(resource=wire_v1.resource_to_v1(resource))
        )


async def _prepend(first: Any, rest: Any) -> Any:
    if first is None:
        return
    yield first
    async for item in rest:
        yield item


async def _next(iterator: Any) -> Any:
    try:
        return await iterator.__anext__()
    except StopAsyncIteration:
        return None


class AgentMetadataService(agent_pb2_grpc.AgentMetadataServiceServicer):
    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        self._agents: list[agent_pb2.Agent] | None = None

    def agents(self) -> list[agent_pb2.Agent]:
        if self._agents is None:
            by_name: dict[tuple[str, bool], agent_pb2.Agent] = {}
            for category, klass in self.dispatcher.registry.categories():
                key = (klass.name, klass.is_sync)
                agent = by_name.setdefault(key, agent_pb2.Agent(name=klass.name, is_sync=klass.is_sync))
                # Propeller still reads the deprecated list (wire reference §2.3); list each name once.
                if category.name not in agent.supported_task_types:
                    agent.supported_task_types.append(category.name)
                agent.supported_task_categories.append(
                    agent_pb2.TaskCategory(name=category.name, version=category.version)
                )
            self._agents = list(by_name.values())
        return self._agents

    async def ListAgents(self, request: Any, context: Any) -> agent_pb2.ListAgentsResponse:
        return agent_pb2.ListAgentsResponse(agents=self.agents())

    async def GetAgent(self, request: agent_pb2.GetAgentRequest, context: Any) -> agent_pb2.GetAgentResponse:
        for agent in self.agents():
            if agent.name == request.name:
                return agent_pb2.GetAgentResponse(agent=agent)
        await context.abort(grpc.StatusCode.NOT_FOUND, f"no connector named {request.name!r}")
        raise AssertionError("unreachable")


def add_v1_services(server: grpc.aio.Server, dispatcher: Dispatcher) -> None:
    from flyteidl.service import agent_pb2 as service_pb2

    from flyteconnectors.core.host.registration import add_servicer

    services = service_pb2.DESCRIPTOR.services_by_name
    add_servicer(server, services["AsyncAgentService"], AsyncAgentService(dispatcher))
    add_servicer(server, services["SyncAgentService"], SyncAgentService(dispatcher))
    add_servicer(server, services["AgentMetadataService"], AgentMetadataService(dispatcher))
