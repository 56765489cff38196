"""Snowflake-specific behaviour, through the real gRPC host, against the fake speaking the 5.x REST protocol."""

from __future__ import annotations

import datetime as dt
import inspect
import json
import re
import threading
import time

import pytest
from conftest import ACCOUNT, USER, query_task, settings_for, start_host
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from snowflake.connector.constants import QueryStatus

from flyteconnectors.core import Phase
from flyteconnectors.core.dispatcher import DispatcherOptions, RetryPolicy
from flyteconnectors.core.testing import builders
from flyteconnectors.core.testing.host import HostThread, PropellerClient
from flyteconnectors.core.testing.lag import LoopLagProbe, assert_no_stall
from flyteconnectors.snowflake.connector import STATES, SnowflakeQuery
from flyteconnectors.snowflake.fake import SnowflakeFake

SD = builders.STRUCTURED_DATASET
BOTH_OUTPUTS = {"results": SD, "query_id": str}


def count_events(fake: SnowflakeFake) -> int:
    return int(fake.sql("SELECT COUNT(*) FROM events")[0][0])


# ============================================================================================ the query task
def test_inputs_travel_as_bind_parameters_never_in_the_sql_text(fake, propeller):
    hostile = "x'); DROP TABLE events; --"
    template = query_task("INSERT INTO events (id, kind) VALUES (:id, :kind)", inputs={"id": int, "kind": str})

    final = propeller.run(template, {"id": 7, "kind": hostile})

    assert final.phase == Phase.SUCCEEDED, final.message
    [query] = fake.submissions("INSERT")
    assert query.sql == "INSERT INTO events (id, kind) VALUES (?, ?)"
    assert query.bindings == {"1": {"type": "FIXED", "value": "7"}, "2": {"type": "TEXT", "value": hostile}}
    assert fake.sql("SELECT id, kind FROM events") == [(7, hostile)]


def test_each_input_type_is_bound_with_its_snowflake_type(fake, propeller):
    fake.sql("CREATE TABLE readings (at TEXT, ratio REAL, ok BOOLEAN, tags TEXT, note TEXT)")
    template = query_task("INSERT INTO readings VALUES (:at, :ratio, :ok, :tags, :note)",
                          inputs={"at": dt.datetime, "ratio": float, "ok": bool, "tags": list[str], "note": str})

    final = propeller.run(template, {"at": dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.timezone.utc), "ratio": 0.25,
                                     "ok": True, "tags": ["a", "b"], "note": ""})

    assert final.phase == Phase.SUCCEEDED, final.message
    [query] = fake.submissions()
    assert [b["type"] for b in query.bindings.values()] == ["TIMESTAMP_NTZ", "REAL", "BOOLEAN", "TEXT", "TEXT"]
    assert fake.sql("SELECT * FROM readings") == [("2024-05-01T12:30:00", 0.25, 1, '["a", "b"]', "")]


def test_flytekit_style_placeholders_are_bound_too(fake, propeller):
    template = query_task("INSERT INTO events (id, kind) VALUES (%(id)s, %(kind)s)", inputs={"id": int, "kind": str})

    assert propeller.run(template, {"id": 1, "kind": "click"}).phase == Phase.SUCCEEDED

    [query] = fake.submissions("INSERT")
    assert "%(" not in query.sql and query.sql.count("?") == 2
    assert fake.sql("SELECT id, kind FROM events") == [(1, "click")]


def test_success_outputs_a_structured_dataset_reference_and_the_query_id(fake, propeller):
    template = query_task("SELECT id, kind FROM events WHERE id > :min_id", inputs={"min_id": int},
                          outputs=BOTH_OUTPUTS)

    final = propeller.run(template, {"min_id": 0})

    assert final.phase == Phase.SUCCEEDED, final.message
    [query] = fake.submissions()
    outputs = builders.outputs_to_python(final)
    assert outputs["query_id"] == query.id
    assert outputs["results"] == f"snowflake://{USER}:{ACCOUNT}/COMPUTE_WH/ANALYTICS/PUBLIC/{query.id}"
    # flytekit's Snowflake structured-dataset decoder splits the URI exactly like this.
    _, user, account, warehouse, database, schema, query_id = re.split("\\/|://|:", outputs["results"])
    assert (user, account, warehouse, database, schema, query_id) == (
        USER, ACCOUNT, "COMPUTE_WH", "ANALYTICS", "PUBLIC", query.id)
    assert final.outputs.literals["results"].scalar.HasField("structured_dataset")


def test_the_reference_resolves_to_the_result_the_way_flytekits_decoder_reads_it(fake, propeller, private_key):
    fake.sql("INSERT INTO events VALUES (1, 'signup'), (2, 'login'), (3, 'signup')")
    template = query_task("SELECT kind, COUNT(*) AS n FROM events WHERE kind = :kind GROUP BY kind",
                          inputs={"kind": str}, outputs={"results": SD})
    uri = builders.outputs_to_python(propeller.run(template, {"kind": "signup"}))["results"]

    # What flytekit's SnowflakeToPandasDecodingHandler does with the URI (plus the fake's endpoint).
    import snowflake.connector

    _, user, account, warehouse, database, schema, query_id = re.split("\\/|://|:", uri)
    with snowflake.connector.connect(user=user, account=account, warehouse=warehouse, database=database,
                                     schema=schema, private_key=private_key, host="127.0.0.1", port=fake.port,
                                     protocol="http", enable_server_session_keep_alive_auto_detection=False) as conn:
        cursor = conn.cursor()
        cursor.get_results_from_sfqid(query_id)
        assert cursor.fetchall() == [("signup", 2)]


def test_an_interface_without_outputs_gets_no_outputs(fake, propeller):
    final = propeller.run(query_task("DELETE FROM events WHERE id < 0"))

    assert final.phase == Phase.SUCCEEDED
    assert len(final.outputs.literals) == 0


def test_two_dataset_outputs_are_a_config_error(fake, propeller):
    template = query_task("SELECT 1", outputs={"a": SD, "b": SD})

    final = propeller.run(template)

    assert final.phase == Phase.FAILED
    assert "outputs" in final.message
    assert fake.submissions() == []


def test_query_tag_and_statement_timeout_are_sent_with_the_query(fake, propeller):
    template = query_task("SELECT 1", query_tag="team=growth", statement_timeout=600)

    propeller.run(template, ident=builders.identity("exec42"))

    [query] = fake.submissions()
    assert query.query_tag.startswith("team=growth flyte:fc-exec42-n0-a0-")
    assert query.parameters["STATEMENT_TIMEOUT_IN_SECONDS"] == 600
    assert query.parameters["MULTI_STATEMENT_COUNT"] == 1


def test_log_link_opens_the_query_detail_page_from_the_first_answer(fake, propeller):
    fake.script_next_job("QUEUED", "RUNNING", "SUCCESS")
    template = query_task("SELECT 1")
    meta = propeller.create(template)

    _, seen = propeller.poll(template, meta, interval=0.01)

    [query] = fake.submissions()
    expected = f"https://app.snowflake.com/acme/analytics/#/compute/history/queries/{query.id}/detail"
    assert [r.phase for r in seen] == [Phase.QUEUED, Phase.RUNNING, Phase.SUCCEEDED]
    assert all([link.uri for link in r.log_links] == [expected] for r in seen)


# ============================================================================================ multi-statement
def test_a_script_is_refused_unless_multi_statement_is_enabled(fake, propeller):
    template = query_task("INSERT INTO events VALUES (1, 'a'); DELETE FROM events")

    final = propeller.run(template)

    assert final.phase == Phase.FAILED
    assert "query" in final.message and "multi_statement" in final.message and "2 statements" in final.message
    assert fake.submissions() == []
    assert count_events(fake) == 0


def test_a_script_runs_when_allowed_and_its_result_is_the_last_statement(fake, propeller):
    template = query_task(
        "INSERT INTO events VALUES (:id, 'signup'); INSERT INTO events VALUES (:id + 1, 'login');\n"
        "SELECT kind FROM events ORDER BY id;",
        inputs={"id": int}, outputs=BOTH_OUTPUTS, multi_statement=True,
    )

    final = propeller.run(template, {"id": 10})

    assert final.phase == Phase.SUCCEEDED, final.message
    [script] = fake.submissions()
    assert script.parameters["MULTI_STATEMENT_COUNT"] == 0
    assert len(script.children) == 3
    outputs = builders.outputs_to_python(final)
    assert outputs["query_id"] == script.id
    assert outputs["results"].endswith("/" + script.children[-1])
    assert fake.sql("SELECT id, kind FROM events ORDER BY id") == [(10, "signup"), (11, "login")]


# ============================================================================================ states
def test_the_state_map_covers_every_query_status_of_the_pinned_driver():
    assert set(STATES.states) == set(QueryStatus.__members__)


@pytest.mark.parametrize("status", list(QueryStatus.__members__))
def test_every_query_status_reaches_its_phase(fake, propeller, status):
    fake.script_next_job(status)
    template = query_task("SELECT 1", outputs=BOTH_OUTPUTS)
    meta = propeller.create(template)

    first = propeller.get(template, meta)

    assert Phase(first.phase) is STATES.phase(status)
    assert set(builders.outputs_to_python(first)) == ({"results", "query_id"} if status == "SUCCESS" else set())


def test_a_status_the_driver_does_not_know_keeps_the_task_waiting(fake, propeller):
    # 5.2 maps an unknown status name to NO_DATA; within not_found_grace that is "not reported yet".
    fake.script_next_job("PAUSED_FOR_MAINTENANCE", "PAUSED_FOR_MAINTENANCE", "SUCCESS")
    template = query_task("SELECT 1")
    meta = propeller.create(template)

    first = propeller.get(template, meta)
    final, _ = propeller.poll(template, meta, interval=0.01)

    assert first.phase not in PropellerClient.TERMINAL
    assert "no status" in first.message
    assert final.phase == Phase.SUCCEEDED


def test_an_unknown_state_name_is_running_with_a_message():
    resource = STATES.resource("WARP_SPEED")

    assert resource.phase is Phase.RUNNING
    assert "WARP_SPEED" in resource.message


def test_a_query_snowflake_never_reports_fails_after_the_grace_instead_of_polling_forever(fake, private_key_pem):
    fake.script_next_job("NO_DATA")
    with start_host(fake, {"snowflake_private_key": private_key_pem}, not_found_grace=0.2) as host:
        client = PropellerClient(host.channel)
        template = query_task("SELECT 1")
        meta = client.create(template)
        first = client.get(template, meta)
        time.sleep(0.3)
        final = client.get(template, meta)

    assert first.phase == Phase.RUNNING
    assert final.phase == Phase.FAILED
    assert "no record of query" in final.message


def test_a_failed_query_reports_snowflakes_error_code_and_message(fake, propeller):
    fake.script_next_job("RUNNING", {"status": "FAILED_WITH_ERROR", "errorCode": "100038",
                                     "errorMessage": "Numeric value 'abc' is not recognized"})

    final = propeller.run(query_task("SELECT kind FROM events"))

    assert final.phase == Phase.FAILED
    assert "100038" in final.message and "Numeric value 'abc' is not recognized" in final.message


def test_invalid_sql_fails_with_the_compilation_error(fake, propeller):
    final = propeller.run(query_task("SELEC id FROM events"))

    assert final.phase == Phase.FAILED
    assert "001003" in final.message and "syntax error" in final.message


def test_a_snowflake_incident_is_retryable(fake, propeller):
    fake.script_next_job("RUNNING", "FAILED_WITH_INCIDENT")

    final = propeller.run(query_task("SELECT 1"))

    assert final.phase == Phase.RETRYABLE_FAILED
    assert "000603" in final.message


# ============================================================================================ idempotency
def test_lost_create_response_creates_one_job(fake, propeller):
    # The submission (2nd query-request: the 1st is the history lookup) runs, then its answer is lost: the driver
    # retries with the same requestId, and Snowflake (the fake) answers from the first run.
    fake.inject_fault(503, method="POST", path=r"^/queries/v1/query-request$", nth=2, after=True)
    template = query_task("INSERT INTO events VALUES (:id, 'signup')", inputs={"id": int})

    meta = propeller.create(template, {"id": 1})
    propeller.create(template, {"id": 1})
    final, _ = propeller.poll(template, meta, interval=0.01)

    assert final.phase == Phase.SUCCEEDED
    assert [e.fault for e in fake.requests("POST", "query-request")].count("lost-503") == 1
    assert len(fake.submissions()) == 1
    assert count_events(fake) == 1


def test_create_retried_after_a_lost_answer_adopts_the_query_instead_of_inserting_twice(fake, propeller):
    # Every answer to the submission is lost, the driver's retries included: the create call fails after the
    # INSERT ran. The dispatcher's retry must find the query by its tag, not run the INSERT again.
    fake.lose_answers("INSERT INTO events")
    template = query_task("INSERT INTO events VALUES (:id, 'signup')", inputs={"id": int},
                          outputs={"query_id": str})

    meta = propeller.create(template, {"id": 1})
    final, _ = propeller.poll(template, meta, interval=0.01)

    assert final.phase == Phase.SUCCEEDED
    [query] = fake.submissions("INSERT")
    assert builders.outputs_to_python(final) == {"query_id": query.id}
    assert len({e.query["requestId"] for e in fake.requests("POST", "query-request")
                if "INSERT" in e.body.decode()}) == 1
    assert count_events(fake) == 1


def test_propeller_calling_create_again_after_a_failed_create_adopts_the_query(fake, private_key_pem):
    fake.lose_answers("INSERT INTO events")
    template = query_task("INSERT INTO events VALUES (1, 'signup')")
    no_retries = DispatcherOptions(retry=RetryPolicy(attempts=1))
    with HostThread([SnowflakeQuery], package=SnowflakeQuery.package or "snowflake",
                    settings={SnowflakeQuery.package or "snowflake": settings_for(fake)},
                    secrets={"snowflake_private_key": private_key_pem}, options=no_retries) as host:
        client = PropellerClient(host.channel)
        with pytest.raises(Exception, match="did not answer"):
            client.create(template)
        meta = client.create(template)  # Propeller: CreateTask again for the same attempt
        final, _ = client.poll(template, meta, interval=0.01)

    assert final.phase == Phase.SUCCEEDED
    assert len(fake.submissions("INSERT")) == 1
    assert count_events(fake) == 1


def test_each_retry_attempt_runs_its_own_query(fake, propeller):
    template = query_task("INSERT INTO events VALUES (1, 'signup')")

    propeller.create(template, ident=builders.identity(retry_attempt=0))
    propeller.create(template, ident=builders.identity(retry_attempt=0))
    propeller.create(template, ident=builders.identity(retry_attempt=1))

    assert len(fake.submissions("INSERT")) == 2
    assert count_events(fake) == 2


# ============================================================================================ delete
def test_delete_cancels_the_query_with_a_bound_parameter(fake, propeller):
    fake.script_next_job("RUNNING")
    template = query_task("SELECT 1")
    meta = propeller.create(template)
    assert propeller.get(template, meta).phase == Phase.RUNNING

    propeller.delete(template, meta)

    [query] = fake.submissions()
    [cancel] = fake.submissions("CANCEL_QUERY", is_async=False)
    assert cancel.sql == "SELECT SYSTEM$CANCEL_QUERY(?)"
    assert cancel.bindings == {"1": {"type": "TEXT", "value": query.id}}
    assert query.status == "ABORTED"


def test_delete_is_idempotent(fake, propeller):
    fake.script_next_job("RUNNING")
    template = query_task("SELECT 1")
    meta = propeller.create(template)

    propeller.delete(template, meta)
    propeller.delete(template, meta)

    done = propeller.create(template, ident=builders.identity("finished"))
    propeller.poll(template, done, interval=0.01)
    propeller.delete(template, done)
    assert len(fake.cancelled()) == 2


# ============================================================================================ config and auth
@pytest.mark.parametrize(("config", "field"), [
    ({"statement_timeout": -1}, "statement_timeout"),
    ({"warehose": "WH"}, "warehose"),
    ({"account": None}, "account"),
    ({"database": None}, "database"),
    ({"auth": "kerberos"}, "auth"),
])
def test_bad_config_fails_permanently_naming_the_field(fake, propeller, config, field):
    template = query_task("SELECT 1")
    template.custom.update(config)
    if None in config.values():
        for key in [k for k, v in config.items() if v is None]:
            del template.custom[key]

    meta = propeller.create(template)
    first = propeller.get(template, meta)

    assert first.phase == Phase.FAILED
    assert field in first.message
    assert fake.submissions() == []


def test_an_empty_query_is_a_config_error(fake, propeller):
    final = propeller.run(query_task("  /* nothing */ ;"))

    assert final.phase == Phase.FAILED
    assert "query" in final.message and "no SQL statement" in final.message


def test_a_placeholder_without_an_input_is_a_config_error(fake, propeller):
    final = propeller.run(query_task("SELECT * FROM events WHERE id = :event_id", inputs={"id": int}), {"id": 1})

    assert final.phase == Phase.FAILED
    assert ":event_id" in final.message
    assert fake.submissions() == []


def test_host_defaults_fill_what_the_task_leaves_out(fake, private_key_pem):
    template = builders.task_template("snowflake-query", {}, sql="SELECT 1", outputs={"results": SD})
    with start_host(fake, {"snowflake_private_key": private_key_pem}, default_account=ACCOUNT, default_user=USER,
                    default_warehouse="WH2", default_database="DB2", default_role="ANALYST") as host:
        final = PropellerClient(host.channel).run(template)

    assert final.phase == Phase.SUCCEEDED, final.message
    [query] = fake.submissions()
    assert (query.user, query.warehouse, query.database, query.role) == (USER, "WH2", "DB2", "ANALYST")
    assert builders.outputs_to_python(final)["results"].startswith(f"snowflake://{USER}:{ACCOUNT}/WH2/DB2/")


def test_missing_credentials_name_the_secret(fake):
    with start_host(fake, {}) as host:
        final = PropellerClient(host.channel).run(query_task("SELECT 1"))

    assert final.phase == Phase.FAILED
    assert "snowflake_private_key" in final.message
    assert fake.requests("POST", "login-request") == []


def test_a_wrong_key_is_refused_with_snowflakes_message(fake):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = other.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()).decode()
    with start_host(fake, {"snowflake_private_key": pem}) as host:
        final = PropellerClient(host.channel).run(query_task("SELECT 1"))

    assert final.phase == Phase.FAILED
    assert "390144" in final.message and "JWT token is invalid" in final.message
    assert "PRIVATE KEY" not in final.message


def test_an_encrypted_private_key_logs_in_with_its_passphrase(fake, private_key):
    pem = private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.BestAvailableEncryption(b"open sesame")).decode()
    secrets = {"snowflake_private_key": pem, "snowflake_private_key_passphrase": "open sesame"}
    with start_host(fake, secrets) as host:
        final = PropellerClient(host.channel).run(query_task("SELECT 1"))
    with start_host(fake, {"snowflake_private_key": pem}) as host:
        locked = PropellerClient(host.channel).run(query_task("SELECT 1"), ident=builders.identity("locked"))

    assert final.phase == Phase.SUCCEEDED, final.message
    [login] = fake.requests("POST", "login-request")
    assert json.loads(login.body)["data"]["AUTHENTICATOR"] == "SNOWFLAKE_JWT"
    assert locked.phase == Phase.FAILED and "snowflake_private_key_passphrase" in locked.message


def test_password_and_oauth_logins_use_their_own_secrets(fake):
    fake.add_user("REPORTER", password="hunter2-long")
    fake.add_user("APP", oauth_token="oauth-token-value")
    secrets = {"reporting_password": "hunter2-long", "app_oauth_token": "oauth-token-value"}
    with start_host(fake, secrets) as host:
        client = PropellerClient(host.channel)
        by_password = client.run(query_task("SELECT 1", user="REPORTER", secret_prefix="reporting"))
        by_oauth = client.run(query_task("SELECT 2", user="APP", secret_prefix="app", auth="oauth"),
                              ident=builders.identity("oauth"))

    assert by_password.phase == Phase.SUCCEEDED, by_password.message
    assert by_oauth.phase == Phase.SUCCEEDED, by_oauth.message
    authenticators = sorted(json.loads(e.body)["data"].get("AUTHENTICATOR", "SNOWFLAKE")
                            for e in fake.requests("POST", "login-request"))
    assert authenticators == ["OAUTH", "SNOWFLAKE"]


def test_no_secret_reaches_resource_meta_messages_or_links(fake, private_key_pem, propeller):
    template = query_task("SELECT 1", outputs=BOTH_OUTPUTS)
    meta = propeller.create(template)
    _, seen = propeller.poll(template, meta, interval=0.01)

    said = meta.decode() + "".join(r.message + str(r.custom_info) + str(list(r.log_links)) for r in seen)
    for line in private_key_pem.splitlines()[1:-1]:
        assert line not in said
    assert json.loads(meta)["m"]["secrets_prefix"] == "snowflake"


# ============================================================================================ connections
def test_one_connection_serves_every_call_and_is_closed_when_the_host_drains(fake, private_key_pem):
    # flytekit's Snowflake connector opened a connection per poll and never closed it.
    with start_host(fake, {"snowflake_private_key": private_key_pem}) as host:
        client = PropellerClient(host.channel)
        for i in range(3):
            fake.script_next_job("QUEUED", "RUNNING", "RUNNING", "SUCCESS")
            client.run(query_task("SELECT 1"), ident=builders.identity(f"run{i}"))
        assert len(fake.requests("POST", "login-request")) == 1
        assert len(fake.requests("GET", "^/monitoring/")) >= 12
        assert fake.requests("POST", "^/session$") == []

    logouts = fake.requests("POST", "^/session$")
    assert len(logouts) == 1 and logouts[0].query.get("delete") == "true"


def test_an_expired_session_is_replaced_by_a_new_login(fake, propeller):
    fake.script_next_job("RUNNING", "RUNNING", "SUCCESS")
    template = query_task("SELECT 1")
    meta = propeller.create(template)
    assert propeller.get(template, meta).phase == Phase.RUNNING

    fake.expire_sessions()
    final, _ = propeller.poll(template, meta, interval=0.01)

    assert final.phase == Phase.SUCCEEDED
    assert len(fake.requests("POST", "login-request")) == 2


def test_status_checks_that_keep_failing_are_not_errors(fake, propeller):
    fake.script_next_job("RUNNING", "SUCCESS")
    template = query_task("SELECT 1")
    meta = propeller.create(template)
    fake.inject_fault(503, method="GET", path="^/monitoring/", count=None)

    answers = [propeller.get(template, meta) for _ in range(2)]
    fake.clear_faults()
    final, _ = propeller.poll(template, meta, interval=0.01)

    assert all(a.phase == Phase.RUNNING and "transiently" in a.message for a in answers)
    assert final.phase == Phase.SUCCEEDED


def test_calls_never_block_the_event_loop(fake, host, propeller):
    # flytekit's connector ran the blocking driver inside async def methods, stalling every other task.
    assert not any(inspect.iscoroutinefunction(getattr(SnowflakeQuery, m)) for m in ("create", "get", "delete"))
    fake.set_latency(0.4)
    template = query_task("SELECT 1")
    host.host.watchdog.max_lag = 0.0
    with LoopLagProbe() as probe:
        slow = threading.Thread(target=lambda: propeller.create(template))
        slow.start()
        time.sleep(0.1)
        started = time.monotonic()
        propeller.list_agents()
        answered_in = time.monotonic() - started
        slow.join()

    # Each allowance is over what an idle loop lagged meanwhile: a busy CI machine delays every thread.
    assert answered_in < 0.2 + probe.max_lag
    assert_no_stall(host.host.watchdog.max_lag, probe, 0.25)

