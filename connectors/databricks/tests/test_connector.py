"""Behaviour specific to Databricks, through the real host against the fake workspace."""

from __future__ import annotations

import inspect
import json
from typing import Any

import pytest
from conftest import TOKEN, WORKSPACE, make_host

from flyteconnectors.core import Phase
from flyteconnectors.core.testing import builders
from flyteconnectors.core.testing.host import PropellerClient
from flyteconnectors.databricks.connector import CONNECTORS, DatabricksSettings
from flyteconnectors.databricks.fake import DatabricksFake

ARGS = ["pyflyte-execute", "--inputs", "s3://bucket/n0/inputs.pb", "--output-prefix", "s3://bucket/n0/0",
        "--resolver", "flytekit.core.python_auto_container.default_task_resolver", "--", "task-module", "wf",
        "task-name", "fn"]
IMAGE = "ghcr.io/acme/etl:1.4"


def function_task(**config: Any) -> Any:
    return builders.task_template("databricks-function", config, container_args=ARGS, image=IMAGE)


def sql_task(statement: str, inputs: dict[str, Any] | None = None, outputs: dict[str, Any] | None = None,
             **config: Any) -> Any:
    return builders.task_template("databricks-sql", {"warehouse_id": "wh-1", **config}, sql=statement,
                                  inputs=inputs or {}, outputs=outputs or {})


def submitted(fake: DatabricksFake) -> dict[str, Any]:
    return fake.requests("POST", r"/jobs/runs/submit$")[-1].json()  # type: ignore[no-any-return]


# ============================================================================================ function tasks
@pytest.fixture
def scripted(fake: DatabricksFake) -> DatabricksFake:
    """The fake follows state scripts instead of running Python (these tests look at requests, not outputs)."""
    fake.execute_python = False
    return fake


def test_new_job_cluster_runs_the_task_image_with_its_spark_conf_and_env(
    propeller: PropellerClient, scripted: DatabricksFake
) -> None:
    cluster = {"spark_version": "15.4.x-scala2.12", "node_type_id": "i3.xlarge", "num_workers": 2,
               "spark_conf": {"spark.sql.shuffle.partitions": "64"}}
    template = function_task(new_cluster=cluster, spark_conf={"spark.speculation": "true"}, env={"STAGE": "dev"},
                             timeout_seconds=3600)

    final, _ = propeller.poll(template, propeller.create(template))

    assert final.phase == Phase.SUCCEEDED
    body = submitted(scripted)
    task = body["tasks"][0]
    assert task["new_cluster"]["docker_image"] == {"url": IMAGE}
    assert task["new_cluster"]["spark_conf"] == {"spark.sql.shuffle.partitions": "64", "spark.speculation": "true"}
    assert task["new_cluster"]["spark_env_vars"] == {"STAGE": "dev", "FLYTE_FAIL_ON_ERROR": "true"}
    assert task["spark_python_task"] == {"python_file": "flytekitplugins/databricks/entrypoint.py",
                                         "parameters": ARGS, "source": "GIT"}
    assert body["git_source"]["git_url"] == "https://github.com/flyteorg/flytetools"
    assert body["timeout_seconds"] == 3600


def test_serverless_run_gets_an_environment_and_the_failure_flag(
    propeller: PropellerClient, scripted: DatabricksFake
) -> None:
    template = function_task(serverless=True, environment={"client": "2", "dependencies": ["pandas==2.2.2"]},
                             python_file="/Volumes/main/flyte/entrypoint.py", git_source={})

    propeller.poll(template, propeller.create(template))

    body = submitted(scripted)
    task = body["tasks"][0]
    assert task["environment_key"] == "flyte" and "existing_cluster_id" not in task and "new_cluster" not in task
    assert body["environments"] == [{"environment_key": "flyte",
                                     "spec": {"client": "2", "dependencies": ["pandas==2.2.2"]}}]
    assert body["environment_variables"][0]["spec"]["variables"] == {"FLYTE_FAIL_ON_ERROR": "true"}
    assert task["spark_python_task"] == {"python_file": "/Volumes/main/flyte/entrypoint.py", "parameters": ARGS}
    assert "git_source" not in body


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({}, "existing_cluster_id"),
        ({"existing_cluster_id": "c-1", "serverless": True}, "serverless"),
        ({"existing_cluster_id": "c-1", "spark_conf": {"a": "b"}}, "spark_conf"),
        ({"existing_cluster_id": "c-1", "environment": {"client": "2"}}, "environment"),
        ({"existing_cluster_id": "c-1", "connection": "Prod Workspace"}, "connection"),
        ({"existing_cluster_id": "c-1", "timeout_seconds": -1}, "timeout_seconds"),
    ],
)
def test_bad_function_config_fails_once_naming_the_field(
    propeller: PropellerClient, scripted: DatabricksFake, config: dict[str, Any], field: str
) -> None:
    template = function_task(**config)
    final = propeller.get(template, propeller.create(template))
    assert final.phase == Phase.FAILED
    assert field in final.message
    assert not scripted.runs


def test_a_task_without_pyflyte_execute_args_is_refused(propeller: PropellerClient, scripted: DatabricksFake) -> None:
    template = builders.task_template("databricks-function", {"existing_cluster_id": "c-1"}, container_args=["bash"])
    final = propeller.get(template, propeller.create(template))
    assert final.phase == Phase.FAILED and "container.args" in final.message
    assert not scripted.runs


def test_lost_submit_response_after_a_dropped_connection_adopts_the_run(
    propeller: PropellerClient, scripted: DatabricksFake
) -> None:
    template = function_task(existing_cluster_id="c-1")
    scripted.inject_fault(None, path=r"/jobs/runs/submit$", method="POST", drop=True)

    first = propeller.create(template)
    again = propeller.create(template)  # Propeller may send the same attempt again

    assert len(scripted.runs) == 1
    assert json.loads(first)["m"] == json.loads(again)["m"]
    tokens = {e.json()["idempotency_token"] for e in scripted.requests("POST", r"/jobs/runs/submit$")}
    assert len(tokens) == 1 and len(tokens.pop()) <= 64


# ============================================================================================ states (flytekit gaps)
@pytest.mark.parametrize(("step", "phase"), [("INTERNAL_ERROR:FAILED", Phase.RETRYABLE_FAILED),
                                             ("SKIPPED", Phase.FAILED)])
def test_internal_error_and_skipped_runs_end_the_task(
    propeller: PropellerClient, scripted: DatabricksFake, step: str, phase: Phase
) -> None:
    """flytekit treated only TERMINATED as terminal: these runs stayed RUNNING in Flyte forever."""
    scripted.script_next_job("RUNNING", {"state": {"life_cycle_state": step.split(":")[0],
                                                   "state_message": "Cluster unreachable"}, "status": None})
    template = function_task(existing_cluster_id="c-1")
    final, _ = propeller.poll(template, propeller.create(template))
    assert final.phase == phase
    assert "Cluster unreachable" in final.message


def test_a_run_without_any_state_keeps_polling_with_a_message(
    propeller: PropellerClient, scripted: DatabricksFake
) -> None:
    """flytekit answered phase UNDEFINED here, which Propeller reads as a retryable failure."""
    scripted.script_next_job({"state": None, "status": None}, "TERMINATED:SUCCESS")
    template = function_task(existing_cluster_id="c-1")
    meta = propeller.create(template)
    first = propeller.get(template, meta)
    assert first.phase == Phase.RUNNING
    assert "UNKNOWN" in first.message
    assert propeller.poll(template, meta)[0].phase == Phase.SUCCEEDED


def test_state_message_and_task_error_are_surfaced(propeller: PropellerClient, scripted: DatabricksFake) -> None:
    scripted.script_next_job("RUNNING", {"state": {"life_cycle_state": "TERMINATED", "result_state": "FAILED",
                                                   "state_message": "Task flyte failed with message: Workload failed"},
                                         "status": None, "error": "ZeroDivisionError: division by zero"})
    template = function_task(existing_cluster_id="c-1")
    final, _ = propeller.poll(template, propeller.create(template))
    assert final.phase == Phase.FAILED
    assert final.message == "Task flyte failed with message: Workload failed: ZeroDivisionError: division by zero"
    assert final.log_links[0].name == "Databricks run"


def test_every_sdk_state_is_in_the_state_maps() -> None:
    """Fails when a newer databricks-sdk reports a state this connector does not map yet."""
    from databricks.sdk.service import jobs, sql

    from flyteconnectors.databricks.connector import LIFE_CYCLE_STATES, STATEMENT_STATES, STATUS_STATES

    assert {s.value for s in jobs.RunLifeCycleState} - {"TERMINATED"} <= set(LIFE_CYCLE_STATES.states)
    assert {f"TERMINATED/{s.value}" for s in jobs.RunResultState} <= set(LIFE_CYCLE_STATES.states)
    assert {s.value for s in jobs.RunLifecycleStateV2State} <= set(STATUS_STATES.states)
    assert {f"TERMINATED/{s.value}" for s in jobs.TerminationCodeCode} <= set(STATUS_STATES.states)
    assert {s.value for s in sql.StatementState} == set(STATEMENT_STATES.states)


# ============================================================================================ run-job
def test_run_job_passes_inputs_as_job_parameters_and_returns_its_output(
    propeller: PropellerClient, scripted: DatabricksFake
) -> None:
    job_id = scripted.add_job("nightly-etl", output="1042 rows written")
    template = builders.task_template(
        "databricks-run-job", {"job_id": job_id, "job_parameters": {"env": "prod"}},
        inputs={"day": str, "limit": int, "dry_run": bool},
        outputs={"run_id": int, "run_page_url": str, "output": str},
    )

    final, _ = propeller.poll(template, propeller.create(template, {"day": "2024-05-01", "limit": 10,
                                                                    "dry_run": False}))

    assert final.phase == Phase.SUCCEEDED
    [run] = scripted.runs.values()
    assert builders.outputs_to_python(final) == {
        "run_id": run.run_id,
        "run_page_url": f"{scripted.url}/?o=1234567890#job/{job_id}/run/{run.run_id}",
        "output": "1042 rows written",
    }
    body = scripted.requests("POST", r"/jobs/run-now$")[0].json()
    assert body["job_parameters"] == {"env": "prod", "day": "2024-05-01", "limit": "10", "dry_run": "false"}
    assert body["idempotency_token"].startswith("fc-")


def test_run_job_for_a_missing_job_fails_with_the_service_message(
    propeller: PropellerClient, scripted: DatabricksFake
) -> None:
    template = builders.task_template("databricks-run-job", {"job_id": 999})
    final = propeller.get(template, propeller.create(template))
    assert final.phase == Phase.FAILED
    assert "Job 999 does not exist" in final.message


# ============================================================================================ SQL
def test_sql_binds_typed_parameters_and_returns_rows_across_chunks(
    propeller: PropellerClient, fake: DatabricksFake
) -> None:
    fake.chunk_rows = 2
    template = sql_task(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :count) "
        "SELECT i, i * :ratio AS scaled, :label AS label FROM n",
        inputs={"count": int, "ratio": float, "label": str},
        outputs={"rows": list[dict], "row_count": int, "statement_id": str},
        catalog="main", schema_name="sales",
    )

    final, _ = propeller.poll(template, propeller.create(template, {"count": 5, "ratio": 0.5, "label": "x"}))

    assert final.phase == Phase.SUCCEEDED, final.message
    out = builders.outputs_to_python(final)
    assert out["rows"] == [{"i": i, "scaled": i * 0.5, "label": "x"} for i in range(1, 6)]
    assert out["row_count"] == 5
    [stmt] = fake.statements.values()
    assert out["statement_id"] == stmt.statement_id
    assert len(fake.requests("GET", r"/result/chunks/\d+$")) == 2
    body = fake.requests("POST", r"/sql/statements$")[0].json()
    assert body["wait_timeout"] == "0s" and body["on_wait_timeout"] == "CONTINUE"
    assert sorted(body["parameters"], key=lambda p: p["name"]) == [
        {"name": "count", "value": "5", "type": "BIGINT"},
        {"name": "label", "value": "x", "type": "STRING"},
        {"name": "ratio", "value": "0.5", "type": "DOUBLE"},
    ]
    assert (body["catalog"], body["schema"]) == ("main", "sales")


def test_sql_result_reference_points_at_the_statement(propeller: PropellerClient, fake: DatabricksFake) -> None:
    template = sql_task("SELECT 1 AS one", outputs={"results": builders.STRUCTURED_DATASET})
    final, _ = propeller.poll(template, propeller.create(template))
    [stmt] = fake.statements.values()
    uri = final.outputs.literals["results"].scalar.structured_dataset.uri
    assert uri == f"databricks://adb-1234567890.1.azuredatabricks.net/sql/statements/{stmt.statement_id}"
    assert not fake.requests("GET", r"/result/chunks/")


def test_invalid_sql_fails_with_the_warehouse_error(propeller: PropellerClient, fake: DatabricksFake) -> None:
    template = sql_task("SELEC 1")
    final, _ = propeller.poll(template, propeller.create(template))
    assert final.phase == Phase.FAILED
    assert "PARSE_SYNTAX_ERROR" in final.message and "SELEC" in final.message


def test_an_input_that_cannot_be_a_sql_parameter_is_refused_by_name(
    propeller: PropellerClient, fake: DatabricksFake
) -> None:
    template = sql_task("SELECT :ids", inputs={"ids": list[int]})
    final = propeller.get(template, propeller.create(template, {"ids": [1, 2]}))
    assert final.phase == Phase.FAILED and "inputs.ids" in final.message
    assert not fake.statements


def test_dropped_statement_submit_is_adopted_from_the_query_history(
    propeller: PropellerClient, fake: DatabricksFake
) -> None:
    """The Statement Execution API has no idempotency token: the tag on the statement finds it again."""
    template = sql_task("SELECT 1 AS one", outputs={"row_count": int})
    fake.inject_fault(None, path=r"/sql/statements$", method="POST", drop=True)

    meta = propeller.create(template)

    assert len(fake.statements) == 1
    assert len(fake.requests("POST", r"/sql/statements$")) == 1
    assert propeller.poll(template, meta)[0].phase == Phase.SUCCEEDED


def test_statements_still_run_when_the_query_history_is_forbidden(
    propeller: PropellerClient, fake: DatabricksFake
) -> None:
    fake.inject_fault(403, path=r"/sql/history/queries$", count=None,
                      body={"error_code": "PERMISSION_DENIED", "message": "CAN_MONITOR is required"})
    template = sql_task("SELECT 1 AS one", outputs={"row_count": int})
    final, _ = propeller.poll(template, propeller.create(template))
    assert final.phase == Phase.SUCCEEDED
    assert len(fake.statements) == 1


def test_delete_cancels_the_statement(propeller: PropellerClient, fake: DatabricksFake) -> None:
    fake.script_next_job("RUNNING")
    template = sql_task("SELECT 1")
    meta = propeller.create(template)
    propeller.delete(template, meta)
    [stmt] = fake.statements.values()
    assert stmt.cancelled
    assert propeller.get(template, meta).phase == Phase.ABORTED


# ============================================================================================ auth and clients
def test_one_client_per_workspace_and_credentials_across_polls(
    propeller: PropellerClient, scripted: DatabricksFake
) -> None:
    scripted.script_next_job(*["RUNNING"] * 8, "TERMINATED:SUCCESS")
    template = function_task(existing_cluster_id="c-1")
    _, seen = propeller.poll(template, propeller.create(template))
    assert len(seen) == 9
    # The SDK probes the workspace once when a client is built.
    assert len(scripted.requests("GET", r"/\.well-known/databricks-config")) == 1


def test_oauth_service_principal_signs_in_once_and_nothing_secret_is_kept(fake: DatabricksFake) -> None:
    fake.execute_python = False
    secrets = {"databricks_prod_client_id": "sp-client", "databricks_prod_client_secret": "sp-secret-value"}
    template = function_task(existing_cluster_id="c-1", connection="prod")
    with make_host(fake, secrets=secrets) as host:
        propeller = PropellerClient(host.channel)
        meta = propeller.create(template)
        final, seen = propeller.poll(template, meta)
    assert final.phase == Phase.SUCCEEDED
    assert len(fake.requests("POST", r"/oidc/v1/token$")) == 1
    said = meta.decode() + "".join(r.message + str(r.custom_info) + str(r.log_links) for r in seen)
    assert "sp-secret-value" not in said
    assert json.loads(meta)["m"] == {"host": WORKSPACE, "connection": "prod", "login": "oauth-m2m",
                                        "run_id": 1001, "fetch_output": False, "output_task_key": None}


def test_personal_access_token_is_never_persisted(propeller: PropellerClient, scripted: DatabricksFake) -> None:
    """flytekit stored the bearer token itself in resource_meta, and so in Propeller's etcd."""
    meta = propeller.create(function_task(existing_cluster_id="c-1"))
    assert TOKEN not in meta.decode()
    assert scripted.requests("POST", r"/jobs/runs/submit$")[0].headers["authorization"] == f"Bearer {TOKEN}"


def test_refused_token_fails_the_create_with_the_service_message(fake: DatabricksFake) -> None:
    with make_host(fake, secrets={"databricks_token": "dapi-revoked"}) as host:
        propeller = PropellerClient(host.channel)
        template = function_task(existing_cluster_id="c-1")
        final = propeller.get(template, propeller.create(template))
    assert final.phase == Phase.FAILED
    assert "Invalid access token" in final.message
    assert "dapi-revoked" not in final.message


def test_missing_secret_names_the_secret(fake: DatabricksFake) -> None:
    with make_host(fake, secrets={}) as host:
        propeller = PropellerClient(host.channel)
        template = function_task(existing_cluster_id="c-1", login="pat")
        final = propeller.get(template, propeller.create(template))
    assert final.phase == Phase.FAILED and "databricks_token" in final.message


def test_a_task_needs_a_workspace(fake: DatabricksFake) -> None:
    with make_host(fake, host="") as host:
        propeller = PropellerClient(host.channel)
        template = function_task(existing_cluster_id="c-1")
        final = propeller.get(template, propeller.create(template))
    assert final.phase == Phase.FAILED and "host" in final.message


def test_host_override_and_default_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLYTECONNECTORS_DATABRICKS_HOST", "adb-42.azuredatabricks.net")
    monkeypatch.setenv("FLYTECONNECTORS_DATABRICKS_HOST_OVERRIDE", "http://127.0.0.1:9999")
    settings = DatabricksSettings.load("databricks")
    assert (settings.host, settings.host_override) == ("adb-42.azuredatabricks.net", "http://127.0.0.1:9999")


# ============================================================================================ shape
def test_task_types_leave_flytekits_names_free_and_never_block_the_loop() -> None:
    reserved = {"spark", "databricks"}
    for connector in CONNECTORS:
        # flytekit's names are served only by the drop-in adapters (flytekit_compat), never by our own types.
        if not connector.__module__.endswith(".flytekit_compat"):
            assert connector.task_type not in reserved
        for method in ("create", "get", "delete"):
            assert not inspect.iscoroutinefunction(getattr(connector, method)), "the SDK is blocking: use def"
