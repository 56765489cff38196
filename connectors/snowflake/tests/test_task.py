"""The flytekit task type: what `pyflyte register` serializes, and local runs of the example against the fake."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("flytekit")

from flyteidl.core import tasks_pb2
from flytekit import StructuredDataset, kwtypes

from flyteconnectors.core.dispatcher import Dispatcher
from flyteconnectors.core.host.wire_v1 import request_from_template
from flyteconnectors.core.local import LocalRunner, PollPolicy, serialize, set_local_runner
from flyteconnectors.core.registry import Registry
from flyteconnectors.snowflake import SnowflakeQueryConfig, SnowflakeQueryTask
from flyteconnectors.snowflake.connector import SnowflakeQuery
from flyteconnectors.snowflake.fake import SnowflakeFake

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def registered(task: SnowflakeQueryTask) -> tasks_pb2.TaskTemplate:
    """The template as the host receives it after `pyflyte register`."""
    return tasks_pb2.TaskTemplate.FromString(serialize(task).SerializeToString())


def test_query_task_serializes_to_what_the_connector_validates():
    task = SnowflakeQueryTask(
        name="growth.signups",
        query_template="SELECT plan, COUNT(*)\n  FROM signups WHERE day = :day AND plan = {{ .inputs.plan }}",
        config=SnowflakeQueryConfig(account="myorg-analytics", user="SVC", warehouse="WH", database="DB",
                                    schema="PUBLIC", query_tag="team=growth", multi_statement=False),
        inputs=kwtypes(day=str, plan=str),
        outputs={"results": StructuredDataset, "query_id": str},
    )
    template = registered(task)

    assert (template.type, template.task_type_version) == ("snowflake-query", 0)
    assert template.sql.statement == "SELECT plan, COUNT(*) FROM signups WHERE day = :day AND plan = {{ .inputs.plan }}"
    assert "query" not in template.custom.fields
    assert template.custom["schema"] == "PUBLIC"
    req = request_from_template(template, None, "s3://bucket/prefix", None, None)
    config = SnowflakeQuery.config_model.from_template_parts(req.custom, req.config, req.sql)
    assert config == task.task_config
    assert (config.account, config.schema_, config.query_tag) == ("myorg-analytics", "PUBLIC", "team=growth")


def test_line_comments_are_refused_because_flytekit_joins_the_query_into_one_line():
    with pytest.raises(ValueError, match=r"/\* ... \*/ comments"):
        SnowflakeQueryTask(name="t", query_template="-- totals\nSELECT 1")
    SnowflakeQueryTask(name="t", query_template="SELECT 'a -- b', 's3://bucket/x' /* fine */")


def test_invalid_config_fails_when_the_task_is_defined():
    with pytest.raises(Exception, match="statement_timeout"):
        SnowflakeQueryTask(name="t", query_template="SELECT 1", config={"statement_timeout": 0})


@pytest.fixture
def local_fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[SnowflakeFake]:
    with SnowflakeFake().serve() as fake:
        monkeypatch.setenv("FLYTECONNECTORS_SNOWFLAKE_HOST", "127.0.0.1")
        monkeypatch.setenv("FLYTECONNECTORS_SNOWFLAKE_PORT", str(fake.port))
        monkeypatch.setenv("FLYTECONNECTORS_SNOWFLAKE_PROTOCOL", "http")
        monkeypatch.setenv("SNOWFLAKE_PASSWORD", "any-password")
        yield fake  # type: ignore[misc]


def test_example_workflow_runs_in_process(local_fake: SnowflakeFake):
    registry = Registry()
    registry.register(SnowflakeQuery, package="snowflake")
    runner = LocalRunner(Dispatcher(registry), PollPolicy(initial=0.005, cap=0.05))
    previous = set_local_runner(runner)
    try:
        sys.path.insert(0, str(EXAMPLES))
        from signups import signups

        summary = signups(email="x'); DROP TABLE signups; --", plan="pro")
    finally:
        sys.path.remove(str(EXAMPLES))
        set_local_runner(previous)
        runner.close()

    create, insert, select = local_fake.submissions()
    assert create.sql.startswith("CREATE TABLE IF NOT EXISTS signups")
    assert insert.sql == "INSERT INTO signups (email, plan) VALUES (?, ?)"
    assert summary == (f"signup recorded by query {insert.id}; counts in "
                       f"snowflake://FLYTE_SVC:myorg-analytics/COMPUTE_WH/ANALYTICS/PUBLIC/{select.id} "
                       f"(query {select.id})")
    assert local_fake.sql("SELECT email, plan FROM signups") == [("x'); DROP TABLE signups; --", "pro")]


def test_example_runs_with_pyflyte_run_against_the_fake(tmp_path: Path):
    pyflyte = Path(sys.executable).with_name("pyflyte")
    with SnowflakeFake().serve() as fake:
        env = {**os.environ, "HOME": str(tmp_path), "FLYTECONNECTORS_SNOWFLAKE_HOST": "127.0.0.1",
               "FLYTECONNECTORS_SNOWFLAKE_PORT": str(fake.port), "FLYTECONNECTORS_SNOWFLAKE_PROTOCOL": "http",
               "SNOWFLAKE_PASSWORD": "any-password"}
        result = subprocess.run(
            [str(pyflyte), "run", str(EXAMPLES / "signups.py"), "signups", "--email", "ada@example.com"],
            env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path,
        )
        rows = fake.sql("SELECT email, plan FROM signups")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "signup recorded by query" in result.stdout
    assert rows == [("ada@example.com", "pro")]
