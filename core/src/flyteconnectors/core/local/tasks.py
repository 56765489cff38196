"""flytekit task types backed by a connector, for workflow authors.

* :class:`ConnectorTask`: the task is its config (e.g. a SageMaker endpoint, an OpenAI batch).
* :class:`SQLConnectorTask`: a query template with typed inputs (BigQuery, Snowflake); the query travels in
  ``TaskTemplate.sql`` and the connector's config model receives it in its ``sql_field``.
* :class:`FunctionConnectorTask`: a decorated function whose body runs at the service (Databricks); connector
  packages subclass it and register it for their config type, so users write ``@task(task_config=Cfg(...))``.

``pyflyte register`` / ``pyflyte run --remote`` serialize them with ``task_type`` / ``task_type_version`` of the
connector and ``custom = config.to_custom()``, which is exactly what the connector's config model validates.
``pyflyte run`` (or calling the workflow in Python) serializes the same template and runs it in-process
through the dispatcher (see :mod:`flyteconnectors.core.local.runner`).
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Generic, TypeVar

from flyteidl.core import literals_pb2, tasks_pb2
from flytekit import FlyteContextManager, PythonFunctionTask
from flytekit.configuration import ImageConfig, SerializationSettings
from flytekit.core import utils as flytekit_utils
from flytekit.core.base_sql_task import SQLTask
from flytekit.core.base_task import PythonTask, TaskMetadata
from flytekit.core.interface import Interface
from flytekit.core.type_engine import TypeEngine
from flytekit.exceptions.user import FlyteTimeout, FlyteUserException
from flytekit.models import task as task_models
from flytekit.models.literals import LiteralMap

from flyteconnectors.core.config import TaskConfig
from flyteconnectors.core.connector import Connector
from flyteconnectors.core.errors import ConnectorError
from flyteconnectors.core.host.wire_v1 import request_from_template
from flyteconnectors.core.identity import ExecutionIdentity
from flyteconnectors.core.local.display import display_for
from flyteconnectors.core.local.runner import LocalCallFailed, LocalTimeout, local_runner
from flyteconnectors.core.resource import Phase
from flyteconnectors.core.sql import find_line_comment

C = TypeVar("C", bound=TaskConfig)


class ConnectorTaskFailed(FlyteUserException):
    """The connector job of a local run did not succeed; the message is the service's."""


class ConnectorTaskTimedOut(FlyteTimeout):
    """A local run passed the task's timeout; the remote job was deleted."""


# ============================================================================================ task types
class ConnectorTask(PythonTask[TaskConfig]):
    """A task that is nothing but a connector config: ``ConnectorTask("name", MyConnector, MyConfig(...))``."""

    def __init__(
        self,
        name: str,
        connector: type[Connector[Any]],
        config: TaskConfig | Mapping[str, Any],
        inputs: dict[str, type] | None = None,
        outputs: dict[str, type] | None = None,
        **task_kwargs: Any,
    ) -> None:
        self.connector = connector
        super().__init__(
            task_type=connector.task_type,
            task_type_version=connector.task_version,
            name=name,
            task_config=_config_for(connector, config),
            interface=Interface(inputs=inputs or {}, outputs=outputs or {}),
            **_with_metadata(task_kwargs),
        )

    def get_custom(self, settings: SerializationSettings) -> dict[str, Any]:
        return self.task_config.to_custom()  # type: ignore[no-any-return]

    def execute(self, **kwargs: Any) -> LiteralMap:
        return execute_locally(self, self.connector, kwargs)


class SQLConnectorTask(SQLTask[TaskConfig]):
    """A query template with typed inputs: ``{{ .inputs.name }}`` placeholders, bound by the connector."""

    #: Line-comment tokens of the dialect. flytekit joins the template into one line, so they are refused.
    line_comments: tuple[str, ...] = ("--",)

    def __init__(
        self,
        name: str,
        connector: type[Connector[Any]],
        query_template: str,
        config: TaskConfig | Mapping[str, Any] | None = None,
        inputs: dict[str, Any] | None = None,
        outputs: dict[str, type] | None = None,
        **task_kwargs: Any,
    ) -> None:
        token = find_line_comment(query_template, self.line_comments)
        if token:
            raise ValueError(f"{name}: use /* ... */ comments in query_template; flytekit joins the query into one "
                             f"line, so a {token} comment would comment out everything after it")
        model = connector.config_model
        if not model.sql_field:
            raise TypeError(f"{model.__name__} declares no sql_field, so {connector.__name__} takes no query; "
                            "use ConnectorTask")
        self.connector = connector
        super().__init__(
            name=name,
            query_template=query_template,
            task_config=None,
            task_type=connector.task_type,
            task_type_version=connector.task_version,
            inputs=inputs,
            outputs=outputs,
            **_with_metadata(task_kwargs),
        )
        # Validated with the query as the service will see it (flytekit normalises the template's whitespace).
        self._task_config = _config_for(connector, config or {}, sql=self.query_template)

    def get_custom(self, settings: SerializationSettings) -> dict[str, Any]:
        return self.task_config.to_custom()  # type: ignore[no-any-return]

    def get_sql(self, settings: SerializationSettings) -> task_models.Sql:
        return task_models.Sql(statement=self.query_template, dialect=task_models.Sql.Dialect.ANSI)

    def execute(self, **kwargs: Any) -> LiteralMap:
        return execute_locally(self, self.connector, kwargs)


class FunctionConnectorTask(PythonFunctionTask[C], Generic[C]):
    """A function whose body runs at the service. Subclass per connector::

        class DatabricksTask(FunctionConnectorTask[DatabricksConfig]):
            connector = DatabricksJob

        TaskPlugins.register_pythontask_plugin(DatabricksConfig, DatabricksTask)

    The template carries the normal flytekit container (the service runs ``pyflyte-execute``) and
    ``custom = config.to_custom()``. Locally the inputs are written to ``<output_prefix>/inputs.pb`` and the
    container arguments are rendered, as Propeller would, before the connector is called.
    """

    connector: ClassVar[type[Connector[Any]]]

    def __init__(self, task_config: C, task_function: Callable[..., Any], **kwargs: Any) -> None:
        connector = getattr(type(self), "connector", None)
        if connector is None:
            raise TypeError(f"{type(self).__name__} must set the class attribute `connector`")
        kwargs.pop("task_type", None)
        super().__init__(
            task_config=_config_for(connector, task_config),
            task_function=task_function,
            task_type=connector.task_type,
            task_type_version=connector.task_version,
            **kwargs,
        )

    def get_custom(self, settings: SerializationSettings) -> dict[str, Any]:
        return self.task_config.to_custom()  # type: ignore[no-any-return]

    def execute(self, **kwargs: Any) -> Any:
        ctx = FlyteContextManager.current_context()
        state = ctx.execution_state
        if state is not None and state.is_local_execution():
            return execute_locally(self, self.connector, kwargs)
        # In the service's container (pyflyte-execute): run the function body itself.
        return super().execute(**kwargs)


# ============================================================================================ local runs
_RUN_ID = f"local-{uuid.uuid4().hex[:10]}"
_CALLS = itertools.count(1)
_PLACEHOLDERS = ("{{.input}}", "{{.outputPrefix}}", "{{.rawOutputDataPrefix}}", "{{.checkpointOutputPrefix}}",
                 "{{.prevCheckpointPrefix}}")


def execute_locally(task: PythonTask[Any], connector: type[Connector[Any]], inputs: dict[str, Any]) -> LiteralMap:
    """Run ``task`` through its connector in-process and return its outputs as a LiteralMap."""
    ctx = FlyteContextManager.current_context()
    template = serialize(task)
    output_prefix = ctx.file_access.get_random_remote_directory().rstrip("/")
    literal_map = TypeEngine.dict_to_literal_map(ctx, inputs, task.get_input_types()).to_flyte_idl()
    if isinstance(task, PythonFunctionTask):
        local = ctx.file_access.get_random_local_path()
        flytekit_utils.write_proto_to_file(literal_map, local)
        ctx.file_access.put_data(local, f"{output_prefix}/inputs.pb")
        render_container_args(template, output_prefix)

    req = request_from_template(template, literal_map, output_prefix, None, None)
    req.identity = _identity(task.name)
    timeout = template.metadata.timeout.ToTimedelta().total_seconds() if template.metadata.HasField("timeout") else 0

    runner = local_runner()
    runner.ensure_served(connector)
    try:
        resource = runner.run(req, timeout=timeout or None, display=display_for(task.name.rsplit(".", 1)[-1]))
    except LocalTimeout as err:
        raise ConnectorTaskTimedOut(f"{task.name} ({req.task_type}) {err}") from None
    except (LocalCallFailed, ConnectorError) as err:  # ConnectorError: e.g. bad FLYTECONNECTORS_<PKG>_* settings
        raise ConnectorTaskFailed(f"{task.name} ({req.task_type}) failed: {err}") from None
    if resource.phase is not Phase.SUCCEEDED:
        message = resource.message or "the service gave no reason"
        raise ConnectorTaskFailed(f"{task.name} ({req.task_type}) {resource.phase.name}: {message}")

    outputs = resource.outputs
    declared = task.python_interface.outputs
    if outputs is None and declared:
        outputs = _read_outputs_file(ctx, output_prefix)
    missing = [name for name in declared if name not in (outputs or {})]
    if missing:
        raise ConnectorTaskFailed(f"{task.name} ({req.task_type}) succeeded but returned no value for "
                                  f"{', '.join(missing)}")
    return LiteralMap.from_flyte_idl(literals_pb2.LiteralMap(literals=outputs or {}))


def serialize(task: PythonTask[Any], settings: SerializationSettings | None = None) -> tasks_pb2.TaskTemplate:
    """The TaskTemplate ``pyflyte register`` would produce for ``task``."""
    from flytekit.tools.translator import get_serializable

    ctx = FlyteContextManager.current_context()
    settings = settings or ctx.serialization_settings or SerializationSettings(ImageConfig.auto_default_image())
    return get_serializable(OrderedDict(), settings, task).template.to_flyte_idl()  # type: ignore[no-any-return]


def render_container_args(template: tasks_pb2.TaskTemplate, prefix: str) -> None:
    """Fill the container's placeholders the way Propeller does for the attempt's output prefix."""
    values = {
        "{{.input}}": f"{prefix}/inputs.pb",
        "{{.outputPrefix}}": prefix,
        "{{.rawOutputDataPrefix}}": f"{prefix}/raw_output",
        "{{.checkpointOutputPrefix}}": f"{prefix}/checkpoint_output",
        "{{.prevCheckpointPrefix}}": f"{prefix}/prev_checkpoint",
    }
    if not template.HasField("container"):
        return
    args = list(template.container.args)
    for i, arg in enumerate(args):
        for placeholder in _PLACEHOLDERS:
            arg = arg.replace(placeholder, values[placeholder])
        args[i] = arg
    del template.container.args[:]
    template.container.args.extend(args)


def _read_outputs_file(ctx: Any, prefix: str) -> dict[str, literals_pb2.Literal]:
    remote = f"{prefix}/outputs.pb"
    if not ctx.file_access.exists(remote):
        return {}
    local = ctx.file_access.get_random_local_path()
    ctx.file_access.get_data(remote, local)
    return dict(flytekit_utils.load_proto_from_file(literals_pb2.LiteralMap, local).literals)


def _identity(task_name: str) -> ExecutionIdentity:
    """Unique per call: a workflow that calls the same task twice must start two jobs, not adopt one."""
    node = re.sub(r"[^a-z0-9]+", "-", task_name.rsplit(".", 1)[-1].lower()).strip("-") or "task"
    return ExecutionIdentity(project="local", domain="local", execution=_RUN_ID, node_id=f"{node}-{next(_CALLS)}",
                             task_name=task_name, task_version="local")


def _config_for(connector: type[Connector[Any]], config: TaskConfig | Mapping[str, Any],
                sql: str | None = None) -> TaskConfig:
    """The connector's config model instance for ``config`` (validated, with the query when given)."""
    model = connector.config_model
    if isinstance(config, TaskConfig):
        if not isinstance(config, model):
            raise TypeError(f"{connector.__name__} takes a {model.__name__}, not a {type(config).__name__}")
        if sql is None:
            return config
        data = config.model_dump(by_alias=True, exclude_unset=True)
    else:
        data = dict(config)
    if sql is not None and model.sql_field:
        data[model.sql_field] = sql
    return model.parse(data)


def _with_metadata(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Accept ``timeout=`` / ``retries=`` like ``@task`` does, folding them into TaskMetadata."""
    timeout = kwargs.pop("timeout", None)
    retries = kwargs.pop("retries", None)
    if timeout is None and retries is None:
        return kwargs
    metadata: TaskMetadata = kwargs.get("metadata") or TaskMetadata()
    if timeout is not None:
        metadata.timeout = dt.timedelta(seconds=timeout) if isinstance(timeout, (int, float)) else timeout
    if retries is not None:
        metadata.retries = retries
    kwargs["metadata"] = metadata
    return kwargs
