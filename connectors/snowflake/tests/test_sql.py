"""Query templates become bound statements; account names become Snowsight links; PEM secrets become keys."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from flyteconnectors.core import InvalidTaskConfig
from flyteconnectors.snowflake.connector import load_private_key, query_url
from flyteconnectors.snowflake.sql import render


@pytest.mark.parametrize("template", [
    "SELECT * FROM t WHERE id = :id AND kind = :kind",
    "SELECT * FROM t WHERE id = %(id)s AND kind = %(kind)s",
    "SELECT * FROM t WHERE id = {{ .inputs.id }} AND kind = '{{.inputs.kind}}'",
])
def test_every_placeholder_spelling_becomes_a_bound_parameter(template):
    statement = render(template, {"id": 3, "kind": "a'b"})

    assert statement.sql == "SELECT * FROM t WHERE id = ? AND kind = ?"
    assert statement.params == (3, "a'b")
    assert statement.statements == 1


def test_a_placeholder_used_twice_is_bound_twice():
    assert render("SELECT :d, :d", {"d": dt.date(2024, 1, 2)}).params == (dt.date(2024, 1, 2),) * 2


@pytest.mark.parametrize("template", [
    "SELECT v:customer.name::string FROM t",
    "SELECT ':not_a_bind', \"col:x\" FROM t",
    "SELECT $$ :inside $$ FROM t",
    "SELECT 1 -- :comment\n",
    "SELECT 1 /* :comment */",
    "SELECT arr[0]:field FROM t",
    "SELECT 'it''s :x' FROM t",
])
def test_colons_that_are_not_placeholders_are_left_alone(template):
    statement = render(template, {})

    assert statement.sql == template.strip()
    assert statement.params == ()


def test_statements_are_counted_outside_quotes_and_comments():
    assert render("SELECT ';'; SELECT 2; -- trailing\n", {}).statements == 2
    assert render("SELECT 1;", {}).statements == 1
    assert render("INSERT INTO t VALUES (1); /* ; */ DELETE FROM t", {}).statements == 2


def test_a_placeholder_without_input_names_it():
    with pytest.raises(InvalidTaskConfig, match=r":day has no input") as err:
        render("SELECT :day", {"date": 1})
    assert err.value.field == "query"


def test_positional_placeholders_are_refused():
    with pytest.raises(InvalidTaskConfig, match="positional"):
        render("SELECT ?", {})


def test_lists_and_dicts_are_bound_as_json_text_not_array_bindings():
    statement = render("SELECT PARSE_JSON(:ids), PARSE_JSON(:opts)", {"ids": [1, 2], "opts": {"a": True}})

    assert statement.params == ("[1, 2]", '{"a": true}')


def test_a_value_that_cannot_be_bound_names_the_input():
    with pytest.raises(InvalidTaskConfig) as err:
        render("SELECT :thing", {"thing": object()})
    assert err.value.field == "inputs.thing"


@pytest.mark.parametrize(("account", "path"), [
    ("myorg-analytics", "myorg/analytics"),
    ("MYORG-ANALYTICS.privatelink", "myorg/analytics"),
    ("xy12345.us-east-2.aws", "us-east-2.aws/xy12345"),
    ("xy12345.eu-central-1", "eu-central-1/xy12345"),
    ("xy12345", "us-west-2/xy12345"),
])
def test_query_links_open_snowsights_query_detail_page(account, path):
    url = query_url("https://app.snowflake.com", account, "01b2c3d4-0000-1111-0000-000123456789")

    assert url == f"https://app.snowflake.com/{path}/#/compute/history/queries/01b2c3d4-0000-1111-0000-000123456789/detail"


def test_no_console_means_no_link():
    assert query_url("", "myorg-analytics", "01b2") == ""


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem(key: rsa.RSAPrivateKey, passphrase: bytes | None = None) -> str:
    encryption = serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption).decode()


def test_a_pem_secret_becomes_a_key_object(key):
    loaded = load_private_key(_pem(key))

    assert loaded.private_numbers() == key.private_numbers()


def test_a_pem_pasted_into_one_line_still_loads(key):
    one_line = _pem(key).replace("\n", "\\n")

    assert load_private_key(one_line).private_numbers() == key.private_numbers()


def test_an_encrypted_pem_needs_its_passphrase(key):
    pem = _pem(key, b"correct horse")

    assert load_private_key(pem, "correct horse").private_numbers() == key.private_numbers()
    with pytest.raises(InvalidTaskConfig, match="passphrase") as missing:
        load_private_key(pem)
    with pytest.raises(InvalidTaskConfig, match="passphrase is wrong"):
        load_private_key(pem, "battery staple")
    assert missing.value.field == "secret:snowflake_private_key"


def test_garbage_is_not_a_key_and_is_not_echoed():
    with pytest.raises(InvalidTaskConfig) as err:
        load_private_key("-----BEGIN PRIVATE KEY-----\nc2VjcmV0LXZhbHVl\n-----END PRIVATE KEY-----")
    assert "c2VjcmV0LXZhbHVl" not in str(err.value)
