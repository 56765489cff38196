"""flytekitplugins-bigquery's ``BigQueryTask`` templates, served by flyteconnectors-bigquery against its fake."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator

import grpc
import pytest

pytest.importorskip("flytekitplugins.bigquery", reason="needs flytekitplugins-bigquery: nox -s compat-flytekit")

from flytekit import StructuredDataset, kwtypes
from flytekit_compat_helpers import FAILED, SUCCEEDED, our_host, serialize
from flytekitplugins.bigquery import BigQueryConfig, BigQueryTask
from google.cloud import bigquery

from flyteconnectors.bigquery.fake import BigQueryFake
from flyteconnectors.core.testing import builders
from flyteconnectors.core.testing.host import PropellerClient

KEY = builders.identity().idempotency_key


@pytest.fixture
def fake() -> Iterator[BigQueryFake]:
    with BigQueryFake().serve() as service:
        yield service  # type: ignore[misc]


@pytest.fixture
def propeller(fake: BigQueryFake) -> Iterator[PropellerClient]:
    settings = {"endpoint": fake.url, "anonymous": True, "retry_initial_delay": 0.01, "retry_budget": 0.3}
    with our_host("bigquery", settings) as host:
        yield PropellerClient(host.channel)


def inserted(fake: BigQueryFake) -> list[dict]:
    return [r.json() for r in fake.requests("POST", r"/projects/[^/]+/jobs$")]


def bigquery_task(name: str = "compat.bq", **config: object) -> BigQueryTask:
    return BigQueryTask(
        name=name,
        inputs=kwtypes(ds=str, n=int, since=dt.datetime),
        query_template="SELECT * FROM `my-proj.events.daily` WHERE ds = @ds AND at > @since LIMIT @n",
        output_structured_dataset_type=StructuredDataset,
        task_config=BigQueryConfig(ProjectID="my-proj", **config),  # type: ignore[arg-type]
    )


def test_flytekit_task_runs_with_its_job_options_and_returns_results_as_flytekit_did(propeller, fake):
    task = serialize(bigquery_task(Location="EU", QueryJobConfig=bigquery.QueryJobConfig(
        destination="my-proj.reports.daily_out", write_disposition="WRITE_TRUNCATE",
        maximum_bytes_billed=10**12, priority="BATCH", use_query_cache=False)))
    assert (task.type, task.task_type_version) == ("bigquery_query_job_task", 0)
    since = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc)

    final = propeller.run(task, {"ds": "2024-05-01", "n": 10, "since": since})

    assert final.phase == SUCCEEDED, final.message
    # The output flytekit's connector produced: the destination table as a bq:// structured dataset.
    assert builders.outputs_to_python(final) == {"results": "bq://my-proj:reports.daily_out"}
    [job] = inserted(fake)
    assert job["jobReference"]["projectId"] == "my-proj" and job["jobReference"]["location"] == "EU"
    query = job["configuration"]["query"]
    # flytekit's connector dropped every QueryJobConfig option; they are honoured now.
    assert query["destinationTable"] == {"projectId": "my-proj", "datasetId": "reports", "tableId": "daily_out"}
    assert (query["writeDisposition"], query["priority"], query["useQueryCache"]) == ("WRITE_TRUNCATE", "BATCH", False)
    assert query["maximumBytesBilled"] == str(10**12)
    assert query["query"] == task.sql.statement
    types = {p["name"]: p["parameterType"]["type"] for p in query["queryParameters"]}
    # The types flytekit gave its inputs (a datetime stays DATETIME, as queries written for flytekit expect).
    assert types == {"ds": "STRING", "n": "INT64", "since": "DATETIME"}


def test_task_without_job_config_or_output_runs_in_the_tasks_project(propeller, fake):
    task = serialize(BigQueryTask(name="compat.bq.ddl", query_template="SELECT 1", inputs=None,
                                  task_config=BigQueryConfig(ProjectID="other-proj")))

    final = propeller.run(task)

    assert final.phase == SUCCEEDED, final.message
    assert [j["jobReference"]["projectId"] for j in inserted(fake)] == ["other-proj"]


def test_list_input_is_a_typed_array_parameter(propeller, fake):
    # flytekit's connector sent ScalarQueryParameter(type "ARRAY"), which BigQuery refuses.
    task = serialize(BigQueryTask(name="compat.bq.ids", query_template="SELECT * FROM t WHERE id IN UNNEST(@ids)",
                                  inputs=kwtypes(ids=list[int]), task_config=BigQueryConfig(ProjectID="my-proj")))

    assert propeller.run(task, {"ids": [3, 4]}).phase == SUCCEEDED
    [param] = inserted(fake)[0]["configuration"]["query"]["queryParameters"]
    assert param["parameterType"] == {"type": "ARRAY", "arrayType": {"type": "INT64"}}


def test_job_option_this_connector_cannot_run_fails_naming_it_without_a_job(propeller, fake):
    task = serialize(bigquery_task(QueryJobConfig=bigquery.QueryJobConfig(
        time_partitioning=bigquery.TimePartitioning(field="ds"), destination="my-proj.reports.part")))

    final = propeller.run(task, {"ds": "x", "n": 1, "since": dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)})

    assert final.phase == FAILED
    assert "custom.timePartitioning" in final.message and "not supported" in final.message
    assert fake.job_count() == 0


def test_input_type_bigquery_cannot_bind_fails_naming_it(propeller, fake):
    # flytekit's connector raised KeyError (a gRPC INTERNAL error, retried by Propeller) for such an input.
    task = serialize(BigQueryTask(name="compat.bq.dict", query_template="SELECT @cfg", inputs=kwtypes(cfg=dict),
                                  task_config=BigQueryConfig(ProjectID="my-proj")))

    final = propeller.run(task, {"cfg": {"a": 1}})

    assert final.phase == FAILED and "inputs.cfg" in final.message
    assert fake.job_count() == 0


def test_failed_job_reports_bigquerys_reason_not_a_list_repr(propeller, fake):
    fake.script_next_job({"state": "DONE",
                          "errorResult": {"reason": "invalidQuery", "message": "Unrecognized name: x"}})
    task = serialize(bigquery_task())

    final = propeller.run(task, {"ds": "x", "n": 1, "since": dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)})

    assert final.phase == FAILED
    assert final.message == "invalidQuery: Unrecognized name: x"


def test_job_started_by_flytekits_host_is_not_adopted_and_says_how_to_switch(propeller, fake):
    from flytekitplugins.bigquery.connector import BigQueryMetadata

    task = serialize(bigquery_task())
    flytekit_meta = BigQueryMetadata(job_id="bquxjob_1", project="my-proj", location="US").encode()
    assert json.loads(flytekit_meta)["job_id"] == "bquxjob_1"  # flytekit's JSON resource_meta

    resource = propeller.get(task, flytekit_meta)
    assert resource.phase == FAILED
    for words in ("flytekit", "cannot be adopted", "drain", "docs/migrating-from-flytekit.md"):
        assert words in resource.message
    with pytest.raises(grpc.RpcError) as aborted:
        propeller.delete(task, flytekit_meta)
    assert aborted.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "cannot be adopted" in aborted.value.details()
    assert fake.requests("GET", r".*") == [] and fake.job_count() == 0
