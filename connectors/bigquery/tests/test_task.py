"""The flytekit task type: what `pyflyte register` serializes, and local runs of the example against the fake."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("flytekit")

from flyteidl.core import tasks_pb2
from flytekit import StructuredDataset, kwtypes

from flyteconnectors.bigquery import BigQueryQueryConfig
from flyteconnectors.bigquery.connector import BigQueryQuery
from flyteconnectors.bigquery.fake import BigQueryFake
from flyteconnectors.bigquery.task import BigQueryQueryTask
from flyteconnectors.core.dispatcher import Dispatcher
from flyteconnectors.core.host.wire_v1 import request_from_template
from flyteconnectors.core.local import LocalRunner, PollPolicy, serialize, set_local_runner
from flyteconnectors.core.registry import Registry

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def registered(task: BigQueryQueryTask) -> tasks_pb2.TaskTemplate:
    """The template as the host receives it after `pyflyte register`."""
    return tasks_pb2.TaskTemplate.FromString(serialize(task).SerializeToString())


def test_query_task_serializes_to_what_the_connector_validates():
    task = BigQueryQueryTask(
        name="reports.big_orders",
        query_template="SELECT * FROM `shop.orders`\n  WHERE day = @day AND total > {{ .inputs.min_total }}",
        config=BigQueryQueryConfig(project="p", location="EU", priority="BATCH", labels={"team": "a"}),
        inputs=kwtypes(day=dt.date, min_total=float, days=list[dt.date]),
        outputs={"results": StructuredDataset, "job_id": str},
    )
    template = registered(task)

    assert (template.type, template.task_type_version) == ("bigquery-query", 0)
    assert template.sql.statement == "SELECT * FROM `shop.orders` WHERE day = @day AND total > {{ .inputs.min_total }}"
    assert "query" not in template.custom.fields
    req = request_from_template(template, None, "s3://bucket/prefix", None, None)
    config = BigQueryQuery.config_model.from_template_parts(req.custom, req.config, req.sql)
    assert config == task.task_config
    assert (config.project, config.location, config.priority.value) == ("p", "EU", "BATCH")
    # A date travels as a Flyte datetime: the annotation is what makes it a DATE parameter.
    assert config.parameter_types == {"day": "DATE", "days": "ARRAY<DATE>"}


def test_explicit_parameter_types_win_over_annotations():
    task = BigQueryQueryTask(name="t", query_template="SELECT @day",
                             config={"parameter_types": {"day": "TIMESTAMP"}}, inputs=kwtypes(day=dt.date))
    assert task.task_config.parameter_types == {"day": "TIMESTAMP"}


def test_line_comments_are_refused_because_flytekit_joins_the_query_into_one_line():
    with pytest.raises(ValueError, match=r"/\* ... \*/ comments"):
        BigQueryQueryTask(name="t", query_template="-- totals\nSELECT 1")


def test_invalid_config_fails_when_the_task_is_defined():
    with pytest.raises(Exception, match="write_disposition"):
        BigQueryQueryTask(name="t", query_template="SELECT 1", config={"write_disposition": "WRITE_APPEND"})


@pytest.fixture
def local_fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[BigQueryFake]:
    with BigQueryFake().serve() as fake:
        monkeypatch.setenv("FLYTECONNECTORS_BIGQUERY_ENDPOINT", fake.url)
        monkeypatch.setenv("FLYTECONNECTORS_BIGQUERY_ANONYMOUS", "true")
        yield fake  # type: ignore[misc]


def test_example_workflow_runs_in_process(local_fake: BigQueryFake):
    registry = Registry()
    registry.register(BigQueryQuery, package="bigquery")
    runner = LocalRunner(Dispatcher(registry), PollPolicy(initial=0.005, cap=0.05))
    previous = set_local_runner(runner)
    try:
        sys.path.insert(0, str(EXAMPLES))
        from daily_orders import daily_orders

        summary = daily_orders(day=dt.date(2024, 5, 1), min_total=20.5)
    finally:
        sys.path.remove(str(EXAMPLES))
        set_local_runner(previous)
        runner.close()
    assert summary.startswith("bq://flyte-demo:reports.orders_of_day written by fc-local-")
    assert local_fake.job_count() == 1  # the dry run created none
    [job] = local_fake.jobs.values()
    params = {p["name"]: p["parameterType"] for p in job["resource"]["configuration"]["query"]["queryParameters"]}
    assert params == {"day": {"type": "DATE"}, "min_total": {"type": "FLOAT64"},
                      "regions": {"type": "ARRAY", "arrayType": {"type": "STRING"}}}


def test_example_runs_with_pyflyte_run_against_the_fake(local_fake: BigQueryFake, tmp_path: Path):
    pyflyte = Path(sys.executable).with_name("pyflyte")
    env = {**os.environ, "HOME": str(tmp_path)}
    result = subprocess.run(
        [str(pyflyte), "run", str(EXAMPLES / "daily_orders.py"), "daily_orders", "--day", "2024-05-01"],
        env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "bq://flyte-demo:reports.orders_of_day written by" in result.stdout
    assert local_fake.job_count() == 1
