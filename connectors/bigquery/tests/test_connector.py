"""The BigQuery connector through the real gRPC host, against the fake speaking BigQuery's REST protocol."""

from __future__ import annotations

import base64
import datetime as dt
import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from bigquery_helpers import OUTPUTS, query_task, service_account_key, settings

from flyteconnectors.bigquery.connector import STATES, BigQueryQuery
from flyteconnectors.bigquery.fake import BigQueryFake
from flyteconnectors.core import Phase
from flyteconnectors.core.testing import builders
from flyteconnectors.core.testing.host import HostThread, PropellerClient

QUEUED, RUNNING, SUCCEEDED, ABORTED, FAILED, RETRYABLE = 1, 2, 3, 4, 5, 8
KEY = builders.identity().idempotency_key


def inserts(fake: BigQueryFake) -> list:
    return fake.requests("POST", r"/projects/[^/]+/jobs$")


# ------------------------------------------------------------------------------------------ the query task
def test_query_runs_with_typed_parameters_and_returns_table_job_id_and_bytes(propeller, fake):
    task = query_task(
        "SELECT * FROM t WHERE n = @n AND r > @ratio AND ok = @ok AND s = @s AND b = @b AND at < @at "
        "AND d = @day AND p = @price AND l = @local AND id IN UNNEST(@ids)",
        inputs={"n": int, "ratio": float, "ok": bool, "s": str, "b": bytes, "at": dt.datetime,
                "day": dt.datetime, "price": str, "local": dt.datetime, "ids": list[int]},
        parameter_types={"day": "DATE", "price": "NUMERIC", "local": "DATETIME"},
    )
    at = dt.datetime(2024, 5, 1, 12, 30, 15, tzinfo=dt.timezone.utc)
    final = propeller.run(task, {"n": 7, "ratio": 0.25, "ok": True, "s": "ada", "b": b"\x00\xff", "at": at,
                                 "day": at, "price": "19.99", "local": at, "ids": [1, 2]})

    assert final.phase == SUCCEEDED, final.message
    outputs = builders.outputs_to_python(final)
    table = fake.job(KEY)["configuration"]["query"]["destinationTable"]
    assert outputs == {"results": f"bq://proj:{table['datasetId']}.{table['tableId']}", "job_id": KEY,
                       "bytes_processed": fake.bytes_processed}
    sent = {p["name"]: (p["parameterType"], p["parameterValue"]) for p in inserts(fake)[0].json()["configuration"][
        "query"]["queryParameters"]}
    assert sent == {
        "n": ({"type": "INT64"}, {"value": "7"}),
        "ratio": ({"type": "FLOAT64"}, {"value": 0.25}),
        "ok": ({"type": "BOOL"}, {"value": "true"}),
        "s": ({"type": "STRING"}, {"value": "ada"}),
        "b": ({"type": "BYTES"}, {"value": base64.b64encode(b"\x00\xff").decode()}),
        "at": ({"type": "TIMESTAMP"}, {"value": "2024-05-01 12:30:15+00:00"}),
        "day": ({"type": "DATE"}, {"value": "2024-05-01"}),
        "price": ({"type": "NUMERIC"}, {"value": "19.99"}),
        "local": ({"type": "DATETIME"}, {"value": "2024-05-01T12:30:15.000000"}),
        "ids": ({"type": "ARRAY", "arrayType": {"type": "INT64"}}, {"arrayValues": [{"value": "1"}, {"value": "2"}]}),
    }


def test_sql_comes_from_the_template_and_is_sent_verbatim(propeller, fake):
    sql = "-- daily report\nSELECT @n AS n"
    assert propeller.run(query_task(sql, inputs={"n": int}), {"n": 1}).phase == SUCCEEDED
    assert inserts(fake)[0].json()["configuration"]["query"]["query"] == sql


def test_unsupported_input_type_fails_naming_the_input_without_a_job(propeller, fake):
    # flytekit's connector raised KeyError here (wire reference §4, BigQuery).
    final = propeller.run(query_task("SELECT @cfg", inputs={"cfg": dict}), {"cfg": {"a": 1}})
    assert final.phase == FAILED
    assert "inputs.cfg" in final.message and "cannot be a BigQuery query parameter" in final.message
    assert fake.job_count() == 0


@pytest.mark.parametrize(("custom", "field"), [
    ({"write_disposition": "WRITE_APPEND"}, "write_disposition"),
    ({"destination_table": "no dots here"}, "destination_table"),
    ({"priority": "URGENT"}, "priority"),
    ({"maximum_bytes_billed": 0}, "maximum_bytes_billed"),
    ({"labels": {"Team": "x"}}, "labels"),
    ({"labels": {"flyte-project": "x"}}, "labels"),
    ({"parameter_types": {"x": "GEOGRAPHY"}}, "parameter_types"),
    ({"destination": "ds.t"}, "destination"),
])
def test_bad_config_fails_once_naming_the_field(propeller, fake, custom, field):
    final = propeller.run(query_task("SELECT 1", **custom))
    assert final.phase == FAILED
    assert f"invalid task config: {field}" in final.message
    assert fake.job_count() == 0


def test_sql_bigquery_refuses_fails_with_its_reason_and_message(propeller, fake):
    final = propeller.run(query_task("SELEC 1"))
    assert final.phase == FAILED
    assert "invalidQuery" in final.message and 'Syntax error: Unexpected identifier "SELEC"' in final.message
    assert fake.job_count() == 0


def test_parameter_missing_from_the_inputs_is_bigquerys_error(propeller):
    final = propeller.run(query_task("SELECT @missing"))
    assert final.phase == FAILED
    assert "Query parameter 'missing' not found at [1:8]" in final.message


# ------------------------------------------------------------------------------------------ job options
def test_every_job_option_reaches_bigquery(propeller, fake):
    task = query_task(
        "SELECT 1", project="analytics", location="EU", destination_table="reports.daily",
        write_disposition="WRITE_TRUNCATE", create_disposition="CREATE_IF_NEEDED", default_dataset="raw",
        labels={"team": "growth"}, maximum_bytes_billed=50_000_000, priority="BATCH", use_query_cache=False,
    )
    final = propeller.run(task)

    assert final.phase == SUCCEEDED, final.message
    assert builders.outputs_to_python(final)["results"] == "bq://analytics:reports.daily"
    [insert] = inserts(fake)
    assert insert.path == "/bigquery/v2/projects/analytics/jobs"
    body = insert.json()
    assert body["jobReference"] == {"projectId": "analytics", "jobId": KEY, "location": "EU"}
    query = body["configuration"]["query"]
    assert query["destinationTable"] == {"projectId": "analytics", "datasetId": "reports", "tableId": "daily"}
    assert query["defaultDataset"] == {"projectId": "analytics", "datasetId": "raw"}
    assert (query["writeDisposition"], query["createDisposition"], query["priority"]) == (
        "WRITE_TRUNCATE", "CREATE_IF_NEEDED", "BATCH")
    assert (query["maximumBytesBilled"], query["useQueryCache"], query["useLegacySql"]) == ("50000000", False, False)
    assert body["configuration"]["labels"]["team"] == "growth"
    assert fake.tables[("analytics", "reports", "daily")] == list(fake.rows)


def test_status_and_cancel_go_to_the_jobs_own_project_and_location(propeller, fake):
    # flytekit's get/delete used bigquery.Client() with the ADC default project (wire reference §4).
    task = query_task("SELECT 1", project="other-proj", location="asia-northeast1")
    fake.script_next_job("RUNNING")
    meta = propeller.create(task)
    assert propeller.get(task, meta).phase == RUNNING
    propeller.delete(task, meta)
    calls = fake.requests("GET", "/jobs/") + fake.requests("POST", "/cancel")
    assert calls and all(c.path.startswith("/bigquery/v2/projects/other-proj/jobs/") for c in calls)
    assert all(c.query.get("location") == "asia-northeast1" for c in calls)


def test_labels_carry_the_flyte_execution_identity(propeller, fake):
    ident = builders.identity(execution="ExecA7", node_id="n3", retry_attempt=2, project="Flytesnacks")
    propeller.run(query_task("SELECT 1", labels={"team": "growth"}), ident=ident)
    job_id = ident.idempotency_key
    assert fake.job(job_id)["configuration"]["labels"] == {
        "team": "growth", "flyte-project": "flytesnacks", "flyte-domain": "development",
        "flyte-execution": "execa7", "flyte-node": "n3", "flyte-attempt": "2",
    }


def test_dry_run_reports_bytes_processed_and_runs_nothing(propeller, fake):
    task = query_task("SELECT @n", inputs={"n": int}, outputs={"job_id": str, "bytes_processed": int},
                      dry_run=True)
    final = propeller.run(task, {"n": 1})
    assert final.phase == SUCCEEDED
    assert builders.outputs_to_python(final)["bytes_processed"] == fake.bytes_processed
    assert "would process 10.0 MiB" in final.message
    assert inserts(fake)[0].json()["configuration"]["dryRun"] is True
    assert fake.job_count() == 0
    assert fake.requests("GET") == []


def test_dry_run_of_invalid_sql_fails_with_bigquerys_message(propeller):
    final = propeller.run(query_task("DESCRIBE t", dry_run=True, outputs={}))
    assert final.phase == FAILED and "invalidQuery" in final.message


def test_maximum_bytes_billed_stops_an_expensive_query(propeller, fake):
    final = propeller.run(query_task("SELECT 1", maximum_bytes_billed=1000))
    assert final.phase == FAILED
    assert final.message.startswith("bytesBilledLimitExceeded: Query exceeded limit for bytes billed: 1000.")


def test_write_dispositions_append_truncate_and_refuse(propeller, fake):
    def run(disposition: str, attempt: int):
        task = query_task("SELECT 1", destination_table="proj.ds.out", write_disposition=disposition)
        return propeller.run(task, ident=builders.identity(retry_attempt=attempt))

    assert run("WRITE_APPEND", 0).phase == SUCCEEDED
    assert run("WRITE_APPEND", 1).phase == SUCCEEDED
    assert len(fake.tables[("proj", "ds", "out")]) == 2 * len(fake.rows)
    assert run("WRITE_TRUNCATE", 2).phase == SUCCEEDED
    assert len(fake.tables[("proj", "ds", "out")]) == len(fake.rows)
    refused = run("WRITE_EMPTY", 3)
    assert refused.phase == FAILED and "duplicate: Already Exists: Table proj:ds.out" in refused.message


# ------------------------------------------------------------------------------------------ states
@pytest.mark.parametrize(("steps", "phases", "words"), [
    (["PENDING", "RUNNING", "DONE"], [QUEUED, RUNNING, SUCCEEDED], "processed 10.0 MiB"),
    (["RUNNING", {"state": "DONE", "errorResult": {"reason": "invalidQuery", "message": "Unrecognized name: foo"}}],
     [RUNNING, FAILED], "invalidQuery: Unrecognized name: foo"),
    (["PENDING", {"state": "DONE", "errorResult": {"reason": "stopped", "message": "Job execution was cancelled"}}],
     [QUEUED, ABORTED], "the job was cancelled: stopped: Job execution was cancelled"),
    ([{"state": "DONE", "errorResult": {"reason": "jobBackendError", "message": "The job encountered an error"}}],
     [RETRYABLE], "jobBackendError: The job encountered an error"),
    (["SUSPENDED", "DONE"], [RUNNING, SUCCEEDED], ""),
])
def test_every_bigquery_state_maps_to_its_phase(propeller, fake, steps, phases, words):
    fake.script_next_job(*steps)
    task = query_task()
    final, seen = propeller.poll(task, propeller.create(task))
    assert [r.phase for r in seen] == phases
    assert words in final.message


def test_state_map_covers_every_state_the_sdk_documents():
    # google-cloud-bigquery 3.x _AsyncJob.state: "Valid states include 'PENDING', 'RUNNING', and 'DONE'."
    assert {"PENDING", "RUNNING", "DONE"} <= set(STATES.states)
    assert {STATES.phase(s) for s in STATES.states} >= {Phase.QUEUED, Phase.RUNNING, Phase.SUCCEEDED, Phase.FAILED,
                                                        Phase.ABORTED, Phase.RETRYABLE_FAILED}


def test_unknown_state_keeps_the_task_running_with_a_message(propeller, fake):
    fake.script_next_job("SUSPENDED")
    task = query_task()
    resource = propeller.get(task, propeller.create(task))
    assert resource.phase == RUNNING
    assert "'SUSPENDED'" in resource.message


def test_failure_lists_the_errors_not_their_repr(propeller, fake):
    # flytekit's message was the raw repr of job.errors (wire reference §4).
    fake.script_next_job({"state": "DONE", "errorResult": {"reason": "invalid", "message": "Error while reading"},
                          "errors": [{"reason": "invalid", "message": "Error while reading"},
                                     {"reason": "invalid", "message": "gs://b/f.csv: too many columns"}]})
    final = propeller.run(query_task())
    assert final.phase == FAILED
    assert final.message == "invalid: Error while reading; invalid: gs://b/f.csv: too many columns"


def test_log_link_opens_the_job_in_the_console(propeller, fake):
    final = propeller.run(query_task(location="EU"))
    [link] = final.log_links
    assert link.uri == (f"https://console.cloud.google.com/bigquery?project=proj&j=bq:EU:{KEY}&page=queryresults")


# ------------------------------------------------------------------------------------------ idempotency
def test_lost_create_response_creates_one_job(propeller, fake):
    fake.inject_fault(503, method="POST", path=r"/jobs$", after=True)  # the job is created; the answer is lost
    task = query_task()
    meta = propeller.create(task)
    assert propeller.poll(task, meta)[0].phase == SUCCEEDED
    assert fake.job_count() == 1
    assert [e.status for e in inserts(fake)] == [503, 409]


def test_create_retried_by_propeller_adopts_the_same_job(propeller, fake):
    task = query_task()
    first = propeller.create(task)
    second = propeller.create(task)
    assert fake.job_count() == 1
    assert json.loads(first)["m"] == json.loads(second)["m"]
    assert propeller.poll(task, second)[0].phase == SUCCEEDED


def test_each_attempt_gets_its_own_job(propeller, fake):
    task = query_task()
    for attempt in (0, 1):
        propeller.create(task, ident=builders.identity(retry_attempt=attempt))
    assert fake.job_count() == 2


def test_existing_job_with_another_query_is_not_adopted(propeller, fake):
    task = query_task("SELECT 1")
    propeller.create(task)
    final = propeller.run(query_task("SELECT 2"))
    assert final.phase == FAILED and "already exists with a different query" in final.message


# ------------------------------------------------------------------------------------------ delete
def test_delete_cancels_the_job_and_is_idempotent(propeller, fake):
    fake.script_next_job("PENDING", "RUNNING", "RUNNING", "RUNNING", "DONE")
    task = query_task()
    meta = propeller.create(task)
    assert propeller.get(task, meta).phase == QUEUED
    propeller.delete(task, meta)
    propeller.delete(task, meta)
    final = propeller.get(task, meta)
    assert final.phase == ABORTED and "cancelled" in final.message
    assert len(fake.requests("POST", "/cancel$")) == 2
    fake.reset()
    propeller.delete(task, meta)  # the job is gone: still success


def test_job_that_vanished_fails_clearly(propeller, fake):
    task = query_task()
    meta = propeller.create(task)
    fake.reset()
    final = propeller.get(task, meta)
    assert final.phase == FAILED and "no longer exists" in final.message and KEY in final.message


# ------------------------------------------------------------------------------------------ transient errors
def test_throttled_status_checks_are_retried_transparently(propeller, fake):
    fake.inject_fault(429, method="GET", path="/jobs/", count=2)
    final = propeller.run(query_task())
    assert final.phase == SUCCEEDED
    assert [e.status for e in fake.requests("GET", "/jobs/")][:3] == [429, 429, 200]


def test_unavailable_service_keeps_the_task_running_then_recovers(propeller, fake):
    task = query_task()
    meta = propeller.create(task)
    fake.inject_fault(503, method="GET", path="/jobs/", count=None)
    resource = propeller.get(task, meta)
    assert resource.phase == RUNNING and "backendError" in resource.message
    fake.clear_faults()
    assert propeller.poll(task, meta)[0].phase == SUCCEEDED


def test_throttled_create_is_retried_to_one_job(propeller, fake):
    fake.inject_fault(403, method="POST", path=r"/jobs$", count=2,
                      body={"error": {"code": 403, "message": "Exceeded rate limits", "errors": [
                          {"reason": "rateLimitExceeded", "message": "Exceeded rate limits"}]}})
    assert propeller.run(query_task()).phase == SUCCEEDED
    assert fake.job_count() == 1


def test_access_denied_is_a_permanent_failure(propeller, fake):
    fake.inject_fault(403, method="POST", path=r"/jobs$")
    final = propeller.run(query_task())
    assert final.phase == FAILED and "accessDenied" in final.message


# ------------------------------------------------------------------------------------------ credentials, clients
def test_service_account_secret_is_used_once_per_client_and_never_leaks(fake):
    key = service_account_key(fake)
    secret = json.dumps(key)
    config = {k: v for k, v in settings(fake).items() if k not in ("anonymous", "project")}
    with HostThread([BigQueryQuery], settings={"bigquery": config}, package="bigquery",
                    secrets={"bigquery_service_account_json": secret}) as host:
        propeller = PropellerClient(host.channel)
        fake.script_next_job("PENDING", "RUNNING", "RUNNING", "RUNNING", "DONE")
        task = query_task()
        meta = propeller.create(task)
        final, seen = propeller.poll(task, meta)
        propeller.delete(task, meta)
        [connector] = host.registry.instances()
        assert len(connector.clients) == 2  # the loaded key and one BigQuery client
    assert final.phase == SUCCEEDED
    assert len(fake.requests("POST", "^/token$")) == 1  # flytekit built a new client (and token) per call
    job_calls = fake.requests(path="^/bigquery/")
    assert {c.headers.get("authorization") for c in job_calls} == {"Bearer ya29.fake-token"}
    assert job_calls[0].path == "/bigquery/v2/projects/sa-proj/jobs"  # the key's project
    visible = [meta.decode(), *(r.message for r in seen), *(link.uri for r in seen for link in r.log_links),
               *(str(r.custom_info) for r in seen)]
    pem_line = key["private_key"].splitlines()[1]
    assert not any(pem_line in text or "private_key" in text for text in visible)
    assert len(connector.clients) == 0  # closed when the host drained


def test_many_polls_reuse_one_client(propeller, host, fake):
    fake.script_next_job(*(["RUNNING"] * 20), "DONE")
    task = query_task()
    _, seen = propeller.poll(task, propeller.create(task))
    [connector] = host.registry.instances()
    assert len(seen) == 21 and len(connector.clients) == 2  # the credentials and one BigQuery client


def test_missing_project_is_a_config_error_naming_it(fake):
    with HostThread([BigQueryQuery], settings={"bigquery": {**settings(fake), "project": None}},
                    package="bigquery", secrets={}) as host:
        final = PropellerClient(host.channel).run(query_task())
    assert final.phase == FAILED and "invalid task config: project" in final.message


def test_outputs_the_interface_declares_are_all_returned(propeller):
    final = propeller.run(query_task(outputs={"results": builders.STRUCTURED_DATASET}))
    assert final.phase == SUCCEEDED
    assert set(builders.outputs_to_python(final)) == {"results"}
    assert set(OUTPUTS) == {"results", "job_id", "bytes_processed"}


def test_concurrent_polls_share_the_clients_connections(propeller, fake, caplog):
    tasks = [(query_task(), builders.identity(execution=f"conc{i}")) for i in range(24)]
    fake.set_latency(0.05)  # keep the requests in flight together
    metas = [propeller.create(task, ident=ident) for task, ident in tasks]
    with caplog.at_level("WARNING", logger="urllib3"), ThreadPoolExecutor(24) as pool:
        phases = list(pool.map(lambda pair: propeller.get(pair[0], pair[1]).phase,
                               [(task, meta) for (task, _), meta in zip(tasks, metas, strict=True)]))
    assert phases == [QUEUED] * 24
    assert not [r for r in caplog.records if "pool is full" in r.getMessage()]
