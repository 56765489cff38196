"""Job metadata, identity, state maps, secrets and literals."""

from __future__ import annotations

import datetime as dt
import json
import logging

import pytest

from flyteconnectors.core import ExecutionIdentity, Phase, StateMap
from flyteconnectors.core import metrics as core_metrics
from flyteconnectors.core.errors import InvalidResourceMeta
from flyteconnectors.core.literals import LiteralConversionError, to_literal, to_python
from flyteconnectors.core.meta import Envelope, MetaCodec
from flyteconnectors.core.secrets import RedactingFilter, Secrets
from flyteconnectors.core.testing import builders

# ------------------------------------------------------------------ resource_meta


def test_meta_round_trips_as_small_versioned_json():
    codec = MetaCodec()
    raw = codec.encode(Envelope("t", 2, {"run_id": 5}))
    assert json.loads(raw)["v"] == 1
    back = codec.decode(raw)
    assert (back.task_type, back.task_version, back.meta) == ("t", 2, {"run_id": 5})


@pytest.mark.parametrize("field", ["auth_token", "password", "api_key", "client_secret", "privateKey"])
def test_meta_refuses_credential_fields(field):
    with pytest.raises(ValueError, match=field):
        MetaCodec().encode(Envelope("t", 0, {"nested": {field: "x"}}))


def test_meta_refuses_oversized_blobs():
    with pytest.raises(ValueError, match="limit"):
        MetaCodec().encode(Envelope("t", 0, {"blob": "x" * 5000}))


@pytest.mark.parametrize("junk", [b"", b"\x80\x05pickle", b"{", b"[1]", b'{"v":2,"t":"t","tv":0,"m":{}}',
                                  b'{"v":1,"t":3,"tv":0,"m":{}}', b'{"v":1,"t":"t","tv":"0","m":{}}', b"\xff\xfe"])
def test_meta_decoding_untrusted_bytes_is_safe_and_clear(junk):
    with pytest.raises(InvalidResourceMeta):
        MetaCodec().decode(junk)


def test_pickles_are_named_as_such():
    with pytest.raises(InvalidResourceMeta, match="pickle"):
        MetaCodec().decode(b"\x80\x04\x95\x00")


def test_signed_meta_refuses_unsigned_and_forged_blobs():
    signed = MetaCodec([b"k1"])
    raw = signed.encode(Envelope("t", 0, {"id": 1}))
    assert signed.decode(raw).meta == {"id": 1}
    with pytest.raises(InvalidResourceMeta, match="unsigned"):
        signed.decode(MetaCodec().encode(Envelope("t", 0, {"id": 1})))
    forged = raw.replace(b'\\"id\\":1', b'\\"id\\":2')
    assert forged != raw
    with pytest.raises(InvalidResourceMeta, match="signature"):
        signed.decode(forged)
    with pytest.raises(InvalidResourceMeta, match="no signing key"):
        MetaCodec().decode(raw)


# ------------------------------------------------------------------ identity


def test_idempotency_key_is_stable_per_attempt_and_differs_across_attempts():
    a0 = ExecutionIdentity("p", "d", "exec-1", "n0", 0)
    assert a0.idempotency_key == ExecutionIdentity("p", "d", "exec-1", "n0", 0).idempotency_key
    assert a0.idempotency_key != ExecutionIdentity("p", "d", "exec-1", "n0", 1).idempotency_key
    assert a0.idempotency_key != ExecutionIdentity("p", "d", "exec-2", "n0", 0).idempotency_key


def test_idempotency_key_fits_service_limits():
    long = ExecutionIdentity("project" * 10, "development", "a" * 200, "node-" * 30, 12)
    key = long.idempotency_key
    assert len(key) <= 64 and key.replace("-", "").isalnum() and key == key.lower()
    assert len(long.job_name(63)) <= 63


# ------------------------------------------------------------------ state maps


def test_unknown_state_is_non_terminal_named_and_counted():
    states = StateMap({"DONE": Phase.SUCCEEDED}, service="svc")
    before = core_metrics.UNKNOWN_STATES.labels(service="svc", state="WEIRD")._value.get()
    resource = states.resource("weird")
    assert resource.phase is Phase.RUNNING and "WEIRD" in resource.message
    assert core_metrics.UNKNOWN_STATES.labels(service="svc", state="WEIRD")._value.get() == before + 1


def test_state_map_refuses_a_terminal_default():
    with pytest.raises(ValueError):
        StateMap({}, service="svc", unknown=Phase.FAILED)


def test_outputs_only_travel_with_success():
    states = StateMap({"DONE": Phase.SUCCEEDED, "ERR": Phase.FAILED}, service="svc")
    assert states.resource("ERR", outputs={"x": 1}).outputs is None
    assert states.resource("DONE", outputs={"x": 1}).outputs == {"x": 1}


# ------------------------------------------------------------------ secrets


def test_secrets_read_env_then_files(tmp_path):
    (tmp_path / "db_password").write_text("from-file\n")
    assert Secrets(dirs=[tmp_path], env={}).get("db_password") == "from-file"
    assert Secrets(dirs=[tmp_path], env={"DB_PASSWORD": "from-env"}).get("db_password") == "from-env"
    assert Secrets({"db_password": "per-call"}, dirs=[tmp_path], env={}).get("db_password") == "per-call"
    with pytest.raises(Exception, match="db_user"):
        Secrets(dirs=[tmp_path], env={}).require("db_user")


def test_secret_values_are_redacted_in_log_lines(caplog):
    value = Secrets({"k": "hunter2-hunter2"}, dirs=()).require("k")
    logger = logging.getLogger("test.redaction")
    caplog.handler.addFilter(RedactingFilter())
    logger.warning("connecting with %s", value)
    assert "hunter2-hunter2" not in caplog.text and "***" in caplog.text


# ------------------------------------------------------------------ literals


@pytest.mark.parametrize(
    ("value", "py_type"),
    [(3, int), (2.5, float), ("s", str), (True, bool), ([1, 2], list[int]), ({"a": 1.0}, dict[str, float]),
     (dt.timedelta(seconds=3), dt.timedelta), ({"k": [1, "x"]}, dict)],
)
def test_literals_round_trip(value, py_type):
    assert to_python(to_literal(value, builders.literal_type(py_type))) == value


def test_datetimes_come_back_timezone_aware():
    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    assert to_python(to_literal(when, builders.literal_type(dt.datetime))) == when


def test_files_and_datasets_are_uris():
    assert to_python(to_literal("s3://b/k", builders.FILE)) == "s3://b/k"
    assert to_python(to_literal("bq://p:d.t", builders.STRUCTURED_DATASET)) == "bq://p:d.t"


def test_a_wrong_output_type_names_the_output():
    with pytest.raises(LiteralConversionError, match=r"outputs\.count"):
        to_literal("many", builders.literal_type(int), "count")


@pytest.mark.parametrize("blob", [b'{"job_id": "j1", "project": "p", "location": "US"}',
                                  b"\x80\x04\x95\x1a\x00\x00\x00\x00\x00\x00\x00}\x94."])
def test_metadata_from_flytekits_host_is_refused_with_the_cut_over_advice(blob):
    with pytest.raises(InvalidResourceMeta, match="cannot be adopted") as err:
        MetaCodec().decode(blob)
    assert "drain" in str(err.value)


# ------------------------------------------------------------------ SQL templates


def test_input_placeholders_become_service_markers_quoted_or_not():
    from flyteconnectors.core.sql import placeholder_names, replace_input_placeholders

    query = "SELECT * FROM t WHERE day = '{{ .inputs.day }}' AND n > {{.inputs.n}} AND s = \"{{ .inputs.s }}\""
    expected = "SELECT * FROM t WHERE day = @day AND n > @n AND s = @s"
    assert replace_input_placeholders(query, lambda n: f"@{n}") == expected
    assert placeholder_names(query + " OR n < {{ .inputs.n }}") == ["day", "n", "s"]


@pytest.mark.parametrize(("query", "found"), [
    ("SELECT 1 -- the answer", "--"),
    ("SELECT '--not a comment' AS x", None),
    ("SELECT 1 /* fine */", None),
    ("SELECT 1 # mysql style", "#"),
])
def test_line_comments_are_found_outside_literals(query, found):
    from flyteconnectors.core.sql import find_line_comment

    assert find_line_comment(query, ("--", "#")) == found


def test_an_output_interface_naming_an_unknown_type_is_refused():
    import base64

    from flyteidl.core import interface_pb2, types_pb2

    from flyteconnectors.core.literals import unpack_types

    packed = base64.b64encode(interface_pb2.VariableMap(variables={"r": interface_pb2.Variable(
        type=types_pb2.LiteralType(collection_type=types_pb2.LiteralType(simple=75)))}).SerializeToString()).decode()
    with pytest.raises(ValueError, match="unknown simple type 75"):
        unpack_types(packed)
