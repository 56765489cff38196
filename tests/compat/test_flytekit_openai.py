"""flytekitplugins-openai's ``ChatGPTTask`` and ``BatchEndpointTask`` templates, served by flyteconnectors-openai."""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("flytekitplugins.openai", reason="needs flytekitplugins-openai: nox -s compat-flytekit")

from flytekit_compat_helpers import FAILED, RUNNING, SUCCEEDED, our_host, serialize
from flytekitplugins.openai import BatchEndpointTask, ChatGPTTask

from flyteconnectors.core.testing import builders
from flyteconnectors.core.testing.host import PropellerClient
from flyteconnectors.openai.fake import OpenAIFake

API_KEY = "sk-flytekit-0123456789abcdef"
REQUESTS = [{"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
             "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"hi {i}"}]}} for i in range(3)]


@pytest.fixture(autouse=True)
def _no_ambient_openai_config(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("OPENAI_", "FLYTE_OPENAI_", "FLYTECONNECTORS_OPENAI_")):
            monkeypatch.delenv(name)


@pytest.fixture
def fake() -> Iterator[OpenAIFake]:
    with OpenAIFake(api_key=API_KEY) as service:
        yield service  # type: ignore[misc]


@pytest.fixture
def propeller(fake: OpenAIFake) -> Iterator[PropellerClient]:
    # Only the secret flytekit's connectors read: FLYTE_OPENAI_API_KEY.
    with our_host("openai", {"base_url": f"{fake.url}/v1"}, {"FLYTE_OPENAI_API_KEY": API_KEY}) as host:
        yield PropellerClient(host.channel)


def chat_task(**config: object) -> ChatGPTTask:
    return ChatGPTTask(name="compat.chatgpt", openai_organization="org-flyte",
                       chatgpt_config={"model": "gpt-4o-mini", "temperature": 0.2, **config})


def batch_task(**config: object) -> BatchEndpointTask:
    return BatchEndpointTask(name="compat.openai_batch", openai_organization="org-flyte", config=dict(config))


def input_file(fake: OpenAIFake) -> str:
    """The batch input file, as flytekit's UploadJSONLFileTask (a container task) uploads it before the batch."""
    lines = "\n".join(json.dumps(r) for r in REQUESTS).encode()
    return str(fake._add_file("requests.jsonl", lines, "batch")["id"])


# ------------------------------------------------------------------------------------------------ chatgpt
def test_chatgpt_task_answers_in_o0_with_flytekits_secret_and_organization(propeller, fake):
    task = serialize(chat_task())
    assert (task.type, task.task_type_version) == ("chatgpt", 0)

    resource = propeller.execute_sync(task, {"message": "What is Flyte?"})

    assert resource.phase == SUCCEEDED, resource.message
    assert builders.outputs_to_python(resource) == {"o0": "echo: What is Flyte?"}
    [call] = fake.requests("POST", r"/chat/completions$")
    assert call.headers["openai-organization"] == "org-flyte"
    assert call.json()["temperature"] == 0.2
    assert call.json()["messages"] == [{"role": "user", "content": "What is Flyte?"}]


def test_system_prompt_in_chatgpt_config_is_kept(propeller, fake):
    # flytekit's connector overwrote chatgpt_config["messages"] with the input message.
    task = serialize(chat_task(messages=[{"role": "system", "content": "Answer in French."}]))

    assert propeller.execute_sync(task, {"message": "Hello"}).phase == SUCCEEDED
    [call] = fake.requests("POST", r"/chat/completions$")
    assert call.json()["messages"] == [{"role": "system", "content": "Answer in French."},
                                       {"role": "user", "content": "Hello"}]


def test_empty_reply_fails_with_the_reason_instead_of_a_none_output(propeller, fake):
    fake.script_next_reply(None, finish_reason="length")

    resource = propeller.execute_sync(serialize(chat_task()), {"message": "Write a novel"})

    assert resource.phase == FAILED
    assert "finish_reason=length" in resource.message


# ------------------------------------------------------------------------------------------------ openai-batch
def test_batch_task_runs_on_the_uploaded_file_and_returns_the_batch_as_result(propeller, fake):
    task = serialize(batch_task(metadata={"team": "search"}))
    assert (task.type, task.task_type_version) == ("openai-batch", 0)
    file_id = input_file(fake)

    final = propeller.run(task, {"input_file_id": file_id})

    assert final.phase == SUCCEEDED, final.message
    result = builders.outputs_to_python(final)["result"]
    [batch] = fake.batches.values()
    # What flytekit's DownloadJSONFilesTask reads from it: the output and error file ids.
    assert (result["id"], result["status"], result["input_file_id"]) == (batch["id"], "completed", file_id)
    assert result["output_file_id"] == batch["output_file_id"] and result["output_file_id"]
    assert batch["metadata"]["team"] == "search" and batch["endpoint"] == "/v1/chat/completions"
    assert fake.requests("POST", r"/files$") == []  # the file is used as it is, not uploaded again


def test_batch_that_is_cancelling_keeps_running_until_cancelled(propeller, fake):
    # flytekit's connector reported "cancelling" as a terminal FAILED.
    fake.script_next_job("validating", "cancelling", "cancelled")
    task = serialize(batch_task())

    final, seen = propeller.poll(task, propeller.create(task, {"input_file_id": input_file(fake)}), interval=0.01)

    assert RUNNING in [r.phase for r in seen][:-1]
    assert final.phase != SUCCEEDED and "cancelled" in final.message


def test_a_retried_create_adopts_the_batch_of_the_first_try(propeller, fake):
    task = serialize(batch_task())
    file_id = input_file(fake)

    first = propeller.create(task, {"input_file_id": file_id})
    second = propeller.create(task, {"input_file_id": file_id})

    assert fake.batch_count() == 1
    assert json.loads(first)["m"]["batch_id"] == json.loads(second)["m"]["batch_id"]


def test_batch_started_by_flytekits_host_is_refused_without_unpickling(propeller, fake, tmp_path: Path):
    from flytekitplugins.openai.batch.connector import BatchEndpointMetadata

    task = serialize(batch_task())
    flytekit_meta = BatchEndpointMetadata(openai_org="org-flyte", batch_id="batch_1").encode()  # cloudpickle
    resource = propeller.get(task, flytekit_meta)
    assert resource.phase == FAILED
    assert "pickle" in resource.message and "cannot be adopted" in resource.message

    # A pickle that would run code when loaded: the host must never load it.
    marker = tmp_path / "unpickled"
    hostile = pickle.dumps(_Explode(str(marker)))
    assert propeller.get(task, hostile).phase == FAILED
    assert not marker.exists()
    assert fake.requests("GET", r"/batches") == []


class _Explode:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (Path.write_text, (Path(self.path), "loaded"))  # type: ignore[return-value]
