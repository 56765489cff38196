"""flyteidl v1 messages <-> the dispatcher's plain values. The only module that knows the v1 admin types."""

from __future__ import annotations

import time
from typing import Any

from flyteidl.admin import agent_pb2
from flyteidl.core import execution_pb2, literals_pb2, tasks_pb2
from google.protobuf import json_format

from flyteconnectors.core import literals
from flyteconnectors.core.dispatcher import TaskRequest, WireResource
from flyteconnectors.core.errors import InvalidTaskConfig
from flyteconnectors.core.identity import ExecutionIdentity
from flyteconnectors.core.resource import Phase

# The deprecated ``state`` field, kept consistent for Propellers that still read it (wire reference §2.7).
_STATE_FOR_PHASE = {
    Phase.QUEUED: agent_pb2.PENDING,
    Phase.WAITING_FOR_RESOURCES: agent_pb2.PENDING,
    Phase.INITIALIZING: agent_pb2.PENDING,
    Phase.RUNNING: agent_pb2.RUNNING,
    Phase.SUCCEEDED: agent_pb2.SUCCEEDED,
    Phase.FAILED: agent_pb2.PERMANENT_FAILURE,
    Phase.ABORTED: agent_pb2.PERMANENT_FAILURE,
    Phase.RETRYABLE_FAILED: agent_pb2.RETRYABLE_FAILURE,
}


def identity_from(meta: agent_pb2.TaskExecutionMetadata) -> ExecutionIdentity:
    tid = meta.task_execution_id
    wf = tid.node_execution_id.execution_id
    return ExecutionIdentity(
        project=wf.project,
        domain=wf.domain,
        execution=wf.name,
        node_id=tid.node_execution_id.node_id,
        retry_attempt=tid.retry_attempt,
        task_name=tid.task_id.name,
        task_version=tid.task_id.version,
        org=wf.org,
    )


def custom_dict(template: tasks_pb2.TaskTemplate) -> dict[str, Any] | None:
    if not template.HasField("custom"):
        return None
    try:
        return json_format.MessageToDict(template.custom)
    except (json_format.Error, ValueError) as err:  # Infinity or NaN have no JSON form
        raise InvalidTaskConfig("custom", f"TaskTemplate.custom is not valid JSON: {err}") from None


def request_from_template(
    template: tasks_pb2.TaskTemplate,
    inputs: literals_pb2.LiteralMap | None,
    output_prefix: str,
    meta: agent_pb2.TaskExecutionMetadata | None,
    deadline: float | None,
    secrets: dict[str, str] | None = None,
) -> TaskRequest:
    meta = meta or agent_pb2.TaskExecutionMetadata()
    container = template.container if template.HasField("container") else None
    return TaskRequest(
        task_type=template.type,
        task_version=template.task_type_version,
        custom=custom_dict(template),
        config=_plain(template.config),
        sql=template.sql.statement if template.HasField("sql") else None,
        inputs=_plain(inputs.literals) if inputs is not None else {},
        input_types=literals.variable_types(template.interface.inputs),
        output_types=literals.variable_types(template.interface.outputs),
        output_prefix=output_prefix,
        identity=identity_from(meta),
        namespace=meta.namespace,
        labels=_plain(meta.labels),
        annotations=_plain(meta.annotations),
        service_account=meta.k8s_service_account,
        environment=_plain(meta.environment_variables),
        container_image=container.image if container else "",
        container_args=tuple(container.args) if container else (),
        container_env={kv.key: kv.value for kv in container.env} if container else {},
        deadline=deadline,
        secrets=secrets,
    )


def _plain(field: Any) -> dict[str, Any]:
    """A protobuf map as a dict; an empty one without copying (most are empty, and copying one costs a µs)."""
    return dict(field) if len(field) else {}


def deadline_of(context: Any) -> float | None:
    """The RPC's absolute deadline on the monotonic clock, from a grpc.aio ServicerContext."""
    remaining = context.time_remaining() if context is not None else None
    if remaining is None:
        return None
    return time.monotonic() + remaining


def resource_to_v1(resource: WireResource) -> agent_pb2.Resource:
    msg = agent_pb2.Resource(
        phase=int(resource.phase),
        state=_STATE_FOR_PHASE[resource.phase],
        message=resource.message,
        log_links=[
            _task_log(link.name, link.uri) for link in resource.log_links
        ],
    )
    if resource.outputs is not None:
        msg.outputs.CopyFrom(literals_pb2.LiteralMap(literals=resource.outputs))
    if resource.custom_info:
        msg.custom_info.CopyFrom(literals.to_struct(resource.custom_info))
    if resource.phase in (Phase.FAILED, Phase.RETRYABLE_FAILED):
        msg.agent_error.CopyFrom(
            agent_pb2.AgentError(
                code="ConnectorJobFailed",
                kind=agent_pb2.AgentError.RECOVERABLE
                if resource.phase is Phase.RETRYABLE_FAILED
                else agent_pb2.AgentError.NON_RECOVERABLE,
                origin=execution_pb2.ExecutionError.USER,
            )
        )
    return msg


def _task_log(name: str, uri: str) -> Any:
    from flyteidl.core import execution_pb2 as ex

    return ex.TaskLog(name=name, uri=uri, message_format=ex.TaskLog.JSON)
