"""Builders so tests never hand-build protobufs: templates, inputs, identities and Propeller-shaped requests."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from flyteidl.admin import agent_pb2
from flyteidl.core import identifier_pb2, interface_pb2, literals_pb2, tasks_pb2, types_pb2

from flyteconnectors.core import literals
from flyteconnectors.core.identity import ExecutionIdentity

S = types_pb2.SimpleType
#: The output_prefix the builders use unless told otherwise (Propeller's node-attempt data dir).
OUTPUT_PREFIX = "s3://bucket/metadata/n0/0"

_PY_TYPES: dict[Any, types_pb2.LiteralType] = {
    int: types_pb2.LiteralType(simple=S.INTEGER),
    float: types_pb2.LiteralType(simple=S.FLOAT),
    str: types_pb2.LiteralType(simple=S.STRING),
    bool: types_pb2.LiteralType(simple=S.BOOLEAN),
    dt.datetime: types_pb2.LiteralType(simple=S.DATETIME),
    dt.timedelta: types_pb2.LiteralType(simple=S.DURATION),
    dict: types_pb2.LiteralType(simple=S.STRUCT),
    bytes: types_pb2.LiteralType(simple=S.BINARY),
}

#: Named literal types for the things connectors output most often.
FILE = types_pb2.LiteralType(blob=types_pb2.BlobType(dimensionality=types_pb2.BlobType.SINGLE))
DIRECTORY = types_pb2.LiteralType(blob=types_pb2.BlobType(dimensionality=types_pb2.BlobType.MULTIPART))
STRUCTURED_DATASET = types_pb2.LiteralType(structured_dataset_type=types_pb2.StructuredDatasetType(format=""))


def literal_type(py: Any) -> types_pb2.LiteralType:
    """A LiteralType from a Python type (int, str, list[int], dict[str, float], ...) or a LiteralType."""
    if isinstance(py, types_pb2.LiteralType):
        return py
    if py in _PY_TYPES:
        return _PY_TYPES[py]
    origin = getattr(py, "__origin__", None)
    args: tuple[Any, ...] = tuple(getattr(py, "__args__", ()))
    if origin is list:
        return types_pb2.LiteralType(collection_type=literal_type(args[0]))
    if origin is dict:
        return types_pb2.LiteralType(map_value_type=literal_type(args[1]))
    raise TypeError(f"no literal type for {py!r}; pass a LiteralType")


def variable_map(types: Mapping[str, Any]) -> interface_pb2.VariableMap:
    return interface_pb2.VariableMap(
        variables={name: interface_pb2.Variable(type=literal_type(t)) for name, t in types.items()}
    )


def task_template(
    task_type: str,
    custom: Mapping[str, Any] | None = None,
    *,
    version: int = 0,
    inputs: Mapping[str, Any] | None = None,
    outputs: Mapping[str, Any] | None = None,
    sql: str | None = None,
    config: Mapping[str, str] | None = None,
    container_args: list[str] | None = None,
    image: str = "ghcr.io/flyteorg/flytekit:py3.11-latest",
    name: str = "example.task",
) -> tasks_pb2.TaskTemplate:
    """A TaskTemplate as ``pyflyte register`` would produce for a connector task."""
    template = tasks_pb2.TaskTemplate(
        id=identifier_pb2.Identifier(
            resource_type=identifier_pb2.TASK, project="flytesnacks", domain="development", name=name, version="v1"
        ),
        type=task_type,
        task_type_version=version,
        interface=interface_pb2.TypedInterface(
            inputs=variable_map(inputs or {}), outputs=variable_map(outputs or {})
        ),
        config=dict(config or {}),
    )
    if custom is not None:
        template.custom.CopyFrom(literals.to_struct(custom))
    if sql is not None:
        template.sql.CopyFrom(tasks_pb2.Sql(statement=sql, dialect=tasks_pb2.Sql.ANSI))
    if container_args is not None:
        template.container.CopyFrom(tasks_pb2.Container(image=image, args=container_args))
    return template


def literal_map(values: Mapping[str, Any], types: Mapping[str, Any] | None = None) -> literals_pb2.LiteralMap:
    """Inputs from Python values, typed by ``types`` when given (else guessed from the values)."""
    out = {}
    for name, value in values.items():
        ltype = literal_type(types[name]) if types and name in types else None
        out[name] = literals.to_literal(value, ltype, name)
    return literals_pb2.LiteralMap(literals=out)


def identity(
    execution: str = "f8a1b2c3d4", node_id: str = "n0", retry_attempt: int = 0, project: str = "flytesnacks",
    domain: str = "development",
) -> ExecutionIdentity:
    return ExecutionIdentity(project, domain, execution, node_id, retry_attempt, "example.task", "v1")


def execution_metadata(ident: ExecutionIdentity | None = None, **labels: str) -> agent_pb2.TaskExecutionMetadata:
    """TaskExecutionMetadata with the fields Propeller sets (wire reference §2.4)."""
    ident = ident or identity()
    return agent_pb2.TaskExecutionMetadata(
        task_execution_id=identifier_pb2.TaskExecutionIdentifier(
            task_id=identifier_pb2.Identifier(
                resource_type=identifier_pb2.TASK, project=ident.project, domain=ident.domain,
                name=ident.task_name or "example.task", version=ident.task_version or "v1",
            ),
            node_execution_id=identifier_pb2.NodeExecutionIdentifier(
                node_id=ident.node_id,
                execution_id=identifier_pb2.WorkflowExecutionIdentifier(
                    project=ident.project, domain=ident.domain, name=ident.execution, org=ident.org
                ),
            ),
            retry_attempt=ident.retry_attempt,
        ),
        namespace=f"{ident.project}-{ident.domain}",
        labels=dict(labels),
        k8s_service_account="default",
    )


def create_request(
    template: tasks_pb2.TaskTemplate,
    inputs: Mapping[str, Any] | literals_pb2.LiteralMap | None = None,
    *,
    ident: ExecutionIdentity | None = None,
    output_prefix: str = OUTPUT_PREFIX,
) -> agent_pb2.CreateTaskRequest:
    if not isinstance(inputs, literals_pb2.LiteralMap):
        types = {n: v.type for n, v in template.interface.inputs.variables.items()}
        inputs = literal_map(inputs or {}, types)
    return agent_pb2.CreateTaskRequest(
        inputs=inputs, template=template, output_prefix=output_prefix,
        task_execution_metadata=execution_metadata(ident),
    )


def get_request(template: tasks_pb2.TaskTemplate, resource_meta: bytes,
                output_prefix: str = OUTPUT_PREFIX) -> agent_pb2.GetTaskRequest:
    """GetTask exactly as Propeller sends it: deprecated task_type still filled, plus task_category."""
    return agent_pb2.GetTaskRequest(
        task_type=template.type,
        task_category=agent_pb2.TaskCategory(name=template.type, version=template.task_type_version),
        resource_meta=resource_meta,
        output_prefix=output_prefix,
    )


def delete_request(template: tasks_pb2.TaskTemplate, resource_meta: bytes) -> agent_pb2.DeleteTaskRequest:
    return agent_pb2.DeleteTaskRequest(
        task_type=template.type,
        task_category=agent_pb2.TaskCategory(name=template.type, version=template.task_type_version),
        resource_meta=resource_meta,
    )


def sync_messages(
    template: tasks_pb2.TaskTemplate,
    inputs: Mapping[str, Any] | None = None,
    *,
    ident: ExecutionIdentity | None = None,
    output_prefix: str = OUTPUT_PREFIX,
) -> list[agent_pb2.ExecuteTaskSyncRequest]:
    """The two ExecuteTaskSync messages Propeller sends: the header, then the inputs (wire reference §2.5)."""
    req = create_request(template, inputs, ident=ident, output_prefix=output_prefix)
    return [
        agent_pb2.ExecuteTaskSyncRequest(
            header=agent_pb2.CreateRequestHeader(
                template=template, output_prefix=output_prefix, task_execution_metadata=req.task_execution_metadata
            )
        ),
        agent_pb2.ExecuteTaskSyncRequest(inputs=req.inputs),
    ]


def outputs_to_python(resource: agent_pb2.Resource) -> dict[str, Any]:
    return literals.inputs_to_python(resource.outputs.literals)
