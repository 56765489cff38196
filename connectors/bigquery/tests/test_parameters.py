"""Flyte input values -> typed BigQuery query parameters, without the service."""

from __future__ import annotations

import datetime as dt
import decimal

import pytest

from flyteconnectors.bigquery.connector import BigQueryQueryConfig, query_parameters
from flyteconnectors.core import InvalidTaskConfig

UTC = dt.timezone.utc


def test_values_get_the_type_of_their_python_value():
    inputs = {
        "n": 7, "ratio": 0.5, "ok": True, "name": "ada", "blob": b"\x00\x01",
        "at": dt.datetime(2024, 5, 1, 12, 30, tzinfo=UTC), "day": dt.date(2024, 5, 1),
        "price": decimal.Decimal("1.25"), "ids": [1, 2, 3], "words": ["a", "b"],
    }
    assert {name: kind for name, kind, _ in query_parameters(inputs, {})} == {
        "n": "INT64", "ratio": "FLOAT64", "ok": "BOOL", "name": "STRING", "blob": "BYTES", "at": "TIMESTAMP",
        "day": "DATE", "price": "NUMERIC", "ids": "ARRAY<INT64>", "words": "ARRAY<STRING>",
    }


def test_declared_types_convert_what_flyte_can_carry():
    at = dt.datetime(2024, 5, 1, 23, 30, tzinfo=UTC)  # Flyte datetimes arrive as UTC instants
    declared = BigQueryQueryConfig(query="SELECT 1", parameter_types={
        "day": "date", "local": "DATETIME", "price": "NUMERIC", "text": "BYTES", "days": "ARRAY<DATE>",
        "maybe": "INT64", "legacy": "INTEGER", "mixed": "array<float64>",
    }).parameter_types
    params = {name: (kind, value) for name, kind, value in query_parameters(
        {"day": at, "local": at, "price": "12.50", "text": "héllo", "days": [at], "maybe": None, "legacy": 4,
         "mixed": [1, 2.5]}, declared)}
    assert params == {
        "day": ("DATE", dt.date(2024, 5, 1)),
        "local": ("DATETIME", dt.datetime(2024, 5, 1, 23, 30)),
        "price": ("NUMERIC", decimal.Decimal("12.50")),
        "text": ("BYTES", "héllo".encode()),
        "days": ("ARRAY<DATE>", [dt.date(2024, 5, 1)]),
        "maybe": ("INT64", None),
        "legacy": ("INT64", 4),
        "mixed": ("ARRAY<FLOAT64>", [1.0, 2.5]),
    }


@pytest.mark.parametrize(("inputs", "declared", "field", "words"), [
    ({"cfg": {"a": 1}}, {}, "inputs.cfg", "dict cannot be a BigQuery query parameter"),
    ({"wait": dt.timedelta(seconds=3)}, {}, "inputs.wait", "timedelta cannot be"),
    ({"ids": []}, {}, "inputs.ids", "empty list"),
    ({"x": None}, {}, "inputs.x", "NULL"),
    ({"ids": [1, "a"]}, {}, "inputs.ids", "one type"),
    ({"ids": [1, None]}, {"ids": "ARRAY<INT64>"}, "inputs.ids", "NULL elements"),
    ({"n": "seven"}, {"n": "INT64"}, "inputs.n", "not a valid INT64"),
    ({"n": 2**70}, {}, "inputs.n", "INT64 range"),
    ({"ok": 1}, {"ok": "BOOL"}, "inputs.ok", "cannot be a BOOL"),
    ({"n": [1]}, {"n": "INT64"}, "inputs.n", "ARRAY<INT64>"),
    ({"n": 1}, {"n": "ARRAY<INT64>"}, "inputs.n", "got a int"),
    ({"n": 1}, {"ghost": "INT64"}, "parameter_types.ghost", "names no input"),
])
def test_unusable_inputs_are_config_errors_naming_the_input(inputs, declared, field, words):
    with pytest.raises(InvalidTaskConfig) as err:
        query_parameters(inputs, declared)
    assert err.value.field == field
    assert words in str(err.value)


def test_unsupported_declared_type_names_the_field():
    with pytest.raises(InvalidTaskConfig) as err:
        BigQueryQueryConfig.parse({"query": "SELECT 1", "parameter_types": {"s": "STRUCT<a INT64>"}})
    assert "parameter_types" in str(err.value) and "not supported" in str(err.value)


@pytest.mark.parametrize(("spec", "qualified"), [
    ("ds.t", "proj.ds.t"),
    ("other.ds.t", "other.ds.t"),
    ("other:ds.t", "other.ds.t"),
    ("example.com:other.ds.t", "example.com:other.ds.t"),
])
def test_destination_tables_are_qualified_with_the_jobs_project(spec, qualified):
    from flyteconnectors.bigquery.connector import qualify_table

    assert BigQueryQueryConfig(query="SELECT 1", destination_table=spec).destination_table == spec
    assert qualify_table(spec, "proj") == qualified


@pytest.mark.parametrize(("query", "bound"), [
    ("SELECT {{ .inputs.n }}", "SELECT @n"),
    ("SELECT * FROM t WHERE day = '{{.inputs.day}}'", "SELECT * FROM t WHERE day = @day"),
    ('SELECT "{{ .inputs.s }}", @x', "SELECT @s, @x"),
])
def test_flytekit_placeholders_become_parameters_not_pasted_text(query, bound):
    from flyteconnectors.bigquery.connector import bind_placeholders

    assert bind_placeholders(query) == bound
