"""The flytekit task type: what it serializes to, and a local run (pyflyte run's path) against the fake."""

import pytest
from flytekit import workflow
from google.protobuf import json_format

from flyteconnectors.core.local import serialize
from flyteconnectors.{{name}}.connector import {{Name}}Config
from flyteconnectors.{{name}}.fake import {{Name}}Fake
from flyteconnectors.{{name}}.task import {{Name}}Task


def test_task_serializes_to_a_template_the_connector_accepts():
    template = serialize({{Name}}Task("t.job", payload="daily", priority=3))

    assert template.type == "{{name}}-job"
    config = {{Name}}Config.from_template_parts(json_format.MessageToDict(template.custom))
    assert (config.payload, config.priority) == ("daily", 3)
    assert set(template.interface.outputs.variables) == {"result"}


@pytest.fixture
def local_fake(monkeypatch):
    with {{Name}}Fake().serve() as fake:
        monkeypatch.setenv("FLYTECONNECTORS_{{NAME}}_ENDPOINT", fake.url)
        monkeypatch.setenv("{{NAME}}_TOKEN", "local-run-token")
        yield fake


def test_workflow_runs_locally_against_the_fake(local_fake):
    job = {{Name}}Task("t.local", payload="nightly")

    @workflow
    def wf() -> str:
        return job()

    assert wf() == "processed nightly"
    assert len(local_fake.jobs) == 1
