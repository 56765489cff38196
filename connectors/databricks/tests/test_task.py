"""Task types for workflow authors: what they serialize is what the connectors validate, and local runs work."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import TOKEN, WORKSPACE
from flyteidl.core import tasks_pb2
from flytekit import task

from flyteconnectors.core import InvalidTaskConfig
from flyteconnectors.core.host.wire_v1 import request_from_template
from flyteconnectors.core.local import serialize
from flyteconnectors.core.local.runner import local_runner, set_local_runner
from flyteconnectors.databricks import (
    DatabricksFunctionConfig,
    DatabricksFunctionTask,
    DatabricksJobTask,
    DatabricksSQLTask,
)
from flyteconnectors.databricks.connector import CONNECTORS
from flyteconnectors.databricks.fake import DatabricksFake

EXAMPLES = Path(__file__).parent.parent / "examples"


def config_seen_by_the_connector(template: tasks_pb2.TaskTemplate) -> object:
    template = tasks_pb2.TaskTemplate.FromString(template.SerializeToString())
    [connector] = [c for c in CONNECTORS if c.task_type == template.type]
    req = request_from_template(template, None, "s3://bucket/prefix", None, None)
    return connector.config_model.from_template_parts(req.custom, req.config, req.sql)


def test_decorated_function_becomes_a_databricks_function_task() -> None:
    config = DatabricksFunctionConfig(new_cluster={"spark_version": "15.4.x-scala2.12", "num_workers": 1},
                                      spark_conf={"spark.speculation": "true"}, connection="prod")

    @task(task_config=config)
    def train(epochs: int) -> float:
        return epochs / 10

    template = serialize(train)
    assert isinstance(train, DatabricksFunctionTask)
    assert template.type == "databricks-function"
    assert config_seen_by_the_connector(template) == config
    assert template.container.args[0] == "pyflyte-execute"


def test_job_and_sql_tasks_serialize_what_their_connectors_validate() -> None:
    job = DatabricksJobTask("nightly", job_id=77, inputs={"day": str}, outputs={"run_id": int},
                            job_parameters={"env": "prod"})
    query = DatabricksSQLTask("orders", "SELECT * FROM orders WHERE day = {{ .inputs.day }}", warehouse_id="wh-9",
                              inputs={"day": str}, outputs={"rows": list[dict]}, catalog="main")

    job_config = config_seen_by_the_connector(serialize(job))
    sql_template = serialize(query)
    sql_config = config_seen_by_the_connector(sql_template)

    assert (job_config.job_id, job_config.job_parameters) == (77, {"env": "prod"})  # type: ignore[attr-defined]
    assert sql_template.type == "databricks-sql"
    assert sql_config.statement == "SELECT * FROM orders WHERE day = {{ .inputs.day }}"  # type: ignore[attr-defined]
    assert (sql_config.warehouse_id, sql_config.catalog) == ("wh-9", "main")  # type: ignore[attr-defined]


def test_bad_config_is_refused_when_the_workflow_is_written() -> None:
    with pytest.raises(InvalidTaskConfig, match="serverless"):
        DatabricksFunctionConfig(existing_cluster_id="c-1", serverless=True)
    with pytest.raises(InvalidTaskConfig, match="job_id"):
        DatabricksJobTask("broken", job_id=0)


@pytest.fixture
def local_env(fake: DatabricksFake, monkeypatch: pytest.MonkeyPatch) -> Iterator[DatabricksFake]:
    """`pyflyte run` settings: the workspace, the fake as endpoint override, and a token in the environment."""
    monkeypatch.setenv("FLYTECONNECTORS_DATABRICKS_HOST", WORKSPACE)
    monkeypatch.setenv("FLYTECONNECTORS_DATABRICKS_HOST_OVERRIDE", fake.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", TOKEN)
    monkeypatch.syspath_prepend(str(EXAMPLES))
    fake.python_path.append(str(EXAMPLES))
    previous = set_local_runner(None)
    yield fake
    local_runner().close()
    set_local_runner(previous)
    sys.modules.pop("databricks_workflow", None)


def test_example_workflow_runs_locally_against_the_fake(local_env: DatabricksFake) -> None:
    import databricks_workflow

    tripled, count, message = databricks_workflow.report(n=2, day="2024-06-30")

    assert (tripled, count, message) == (6, 6, "hello from the example job")
    run_now = local_env.requests("POST", r"/jobs/run-now$")[0].json()
    assert run_now["job_parameters"] == {"day": "2024-06-30"}
