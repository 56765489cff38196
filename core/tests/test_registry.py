"""Discovery: entry points, duplicate task types, broken packages and the minimum core version."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest

from flyteconnectors.core import registry as registry_mod
from flyteconnectors.core.errors import ConnectorNotFound
from flyteconnectors.core.registry import Registry
from flyteconnectors.core.testing.example import ExampleEcho, ExampleJob


class FakeEntryPoint:
    def __init__(self, name, value, loader, requires=()):
        self.name, self.value, self._loader = name, value, loader
        self.dist = SimpleNamespace(metadata={"Name": f"flyteconnectors-{name}"}, version="0.1.0",
                                    requires=list(requires))

    def load(self):
        return self._loader()


def discover_with(monkeypatch, *eps, core="0.1.0"):
    monkeypatch.setattr(registry_mod.metadata, "entry_points", lambda group: list(eps))
    monkeypatch.setattr(registry_mod, "core_version", lambda: core)
    return Registry.discover()


def test_entry_points_register_their_connectors(monkeypatch):
    reg = discover_with(monkeypatch, FakeEntryPoint("example", "m:CONNECTORS", lambda: (ExampleJob, ExampleEcho),
                                                    ["flyteconnectors-core>=0.1.0"]))
    assert reg.packages["example"].loaded
    assert {c.name for c, _ in reg.categories()} == {"example-job", "example-echo"}
    assert reg.get("example-job").package == "example"


def test_a_package_that_fails_to_import_is_skipped_with_its_reason(monkeypatch):
    def boom():
        raise ImportError("No module named 'snowflake'")

    reg = discover_with(monkeypatch, FakeEntryPoint("broken", "x:CONNECTORS", boom),
                        FakeEntryPoint("example", "m:CONNECTORS", lambda: (ExampleJob,)))
    assert not reg.packages["broken"].loaded and "snowflake" in reg.packages["broken"].error
    assert reg.packages["example"].loaded


def test_a_package_needing_a_newer_core_is_refused_and_says_so(monkeypatch):
    reg = discover_with(monkeypatch, FakeEntryPoint("future", "m:CONNECTORS", lambda: (ExampleJob,),
                                                    ["flyteconnectors-core>=9.0"]), core="0.1.0")
    entry = reg.packages["future"]
    assert not entry.loaded and ">=9.0" in entry.error and "0.1.0" in entry.error
    with pytest.raises(ConnectorNotFound):
        reg.get("example-job")


def test_duplicate_task_types_are_detected(monkeypatch):
    class Twin(ExampleJob):
        name = "Twin"

    reg = discover_with(monkeypatch, FakeEntryPoint("a", "m:C", lambda: (ExampleJob,)),
                        FakeEntryPoint("b", "m:C", lambda: (Twin,)))
    assert reg.packages["a"].loaded
    assert "already served" in reg.packages["b"].error


def test_discovery_does_not_import_service_sdks(monkeypatch):
    before = set(sys.modules)
    discover_with(monkeypatch, FakeEntryPoint("example", "m:C", lambda: (ExampleJob,)))
    heavy = {"boto3", "snowflake.connector", "databricks.sdk", "google.cloud.bigquery", "openai", "flytekit"}
    assert not (heavy & (set(sys.modules) - before))


def test_unknown_task_type_lists_what_is_served():
    reg = Registry()
    reg.register(ExampleJob)
    with pytest.raises(ConnectorNotFound, match="example-job v0"):
        reg.get("nope")


def test_connector_instances_are_built_once_with_their_settings():
    reg = Registry(lambda package: {"endpoint": "http://fake:1"})
    reg.register(ExampleJob, ExampleEcho, package="example")
    job, echo = reg.get("example-job"), reg.get("example-echo")
    assert job is reg.get("example-job")
    assert job.settings.endpoint == "http://fake:1"
    assert job.clients is echo.clients, "connectors of one package share their clients"
