"""Connector task types: what `pyflyte register` serializes is exactly what the connector's config model validates."""

from __future__ import annotations

import pytest
from flyteidl.core import tasks_pb2
from flytekit import task
from local_examples.toy_service import ToyJob, ToyJobConfig, ToyQuery, ToyQueryConfig, ToyRunConfig
from local_examples.toy_tasks import ToyRunTask

from flyteconnectors.core import InvalidTaskConfig, TaskConfig
from flyteconnectors.core.connector import Connector
from flyteconnectors.core.host.wire_v1 import request_from_template
from flyteconnectors.core.local import ConnectorTask, SQLConnectorTask, serialize


def over_the_wire(template: tasks_pb2.TaskTemplate) -> tasks_pb2.TaskTemplate:
    """The template as the host receives it: serialized bytes, parsed again."""
    return tasks_pb2.TaskTemplate.FromString(template.SerializeToString())


def validated(template: tasks_pb2.TaskTemplate, connector: type[Connector]) -> TaskConfig:
    """The config the dispatcher hands the connector for this template (custom + config + sql)."""
    req = request_from_template(template, None, "s3://bucket/prefix", None, None)
    return connector.config_model.from_template_parts(req.custom, req.config, req.sql)


def test_config_task_round_trips_through_its_connectors_config_model() -> None:
    class ToyJobV3(ToyJob):
        task_version = 3

    config = ToyJobConfig(payload="weekly", steps=["QUEUED", "SUCCEEDED"])
    t = ConnectorTask("weekly_report", ToyJobV3, config, inputs={"week": int}, outputs={"result": str})

    template = over_the_wire(serialize(t))

    assert (template.type, template.task_type_version) == ("toy-job", 3)
    assert validated(template, ToyJobV3) == config
    assert set(template.interface.inputs.variables) == {"week"}
    assert not template.HasField("container")


def test_sql_task_carries_the_query_in_template_sql_and_the_rest_in_custom() -> None:
    query = "SELECT * FROM events\n  WHERE day = '{{ .inputs.day }}'"
    t = SQLConnectorTask("events_of_day", ToyQuery, query, {"warehouse": "wh7"}, inputs={"day": str},
                         outputs={"result": str})

    template = over_the_wire(serialize(t))

    assert template.type == "toy-query"
    assert template.sql.statement == "SELECT * FROM events WHERE day = '{{ .inputs.day }}'"
    assert "query" not in template.custom.fields
    config = validated(template, ToyQuery)
    assert config == ToyQueryConfig(query=template.sql.statement, warehouse="wh7")
    assert config == t.task_config


def test_decorated_function_task_serializes_the_flytekit_entrypoint_and_its_config() -> None:
    @task(task_config=ToyRunConfig(cluster="gpu"))
    def train(epochs: int) -> float:
        return epochs / 10

    template = over_the_wire(serialize(train))

    assert isinstance(train, ToyRunTask)
    assert template.type == "toy-run"
    assert validated(template, ToyRunTask.connector) == ToyRunConfig(cluster="gpu")
    args = list(template.container.args)
    assert args[0] == "pyflyte-execute" and "{{.input}}" in args and "{{.outputPrefix}}" in args
    assert args[args.index("task-name") + 1] == "train"


def test_invalid_config_is_refused_when_the_task_is_defined_naming_the_field() -> None:
    with pytest.raises(InvalidTaskConfig, match="stepz"):
        ConnectorTask("typo", ToyJob, {"payload": "p", "stepz": ["RUNNING"]})
    with pytest.raises(InvalidTaskConfig, match="query"):
        ConnectorTask("no_query", ToyQuery, {"warehouse": "wh"})


def test_a_config_of_another_connector_is_refused() -> None:
    with pytest.raises(TypeError, match="ToyJobConfig"):
        ConnectorTask("wrong", ToyJob, ToyRunConfig())


def test_sql_task_needs_a_connector_that_takes_sql() -> None:
    with pytest.raises(TypeError, match="sql_field"):
        SQLConnectorTask("not_sql", ToyJob, "SELECT 1", {})


def test_timeout_keyword_becomes_the_templates_timeout() -> None:
    t = ConnectorTask("bounded", ToyJob, ToyJobConfig(), timeout=90, retries=2)

    template = serialize(t)

    assert template.metadata.timeout.seconds == 90
    assert template.metadata.retries.retries == 2
