"""The flytekit task types: what they serialize to, and a local run (pyflyte run's path) against the fake."""

# No `from __future__ import annotations` here: flytekit cannot read a dataclass with string annotations.

import dataclasses
import json
from pathlib import Path

import pytest
from flytekit import workflow
from flytekit.types.file import FlyteFile
from google.protobuf import json_format

from flyteconnectors.core.local import serialize
from flyteconnectors.openai.connector import BatchConfig, ChatConfig
from flyteconnectors.openai.task import OpenAIBatchTask, OpenAIChatTask, schema_for_outputs


def custom_of(template) -> dict:
    return json_format.MessageToDict(template.custom)


def test_chat_task_serializes_to_a_template_the_connector_accepts():
    task = OpenAIChatTask("t.chat", model="gpt-4o-mini", system="Be terse.", user="Q: {{ .inputs.q }}",
                          inputs={"q": str}, params={"temperature": 0.1}, request_timeout=5)

    template = serialize(task)

    assert template.type == "openai-chat"
    config = ChatConfig.from_template_parts(custom_of(template))
    assert [m.role for m in config.messages] == ["system", "user"]
    assert config.params == {"temperature": 0.1} and config.timeout == 5
    assert set(template.interface.outputs.variables) == {"answer"}


def test_batch_task_serializes_to_a_template_the_connector_accepts():
    task = OpenAIBatchTask("t.batch", model="gpt-4o-mini", system="One word.", metadata={"team": "ml"})

    template = serialize(task)

    assert template.type == "openai-batch-job"
    config = BatchConfig.from_template_parts(custom_of(template))
    assert [(m.role, m.content) for m in config.messages] == [("system", "One word."), ("user", "{{ .prompt }}")]
    assert set(template.interface.outputs.variables) == {"output_file", "error_file", "request_counts", "batch_id"}


def test_batch_task_without_a_request_input_is_refused_at_definition():
    with pytest.raises(TypeError, match="input_file"):
        OpenAIBatchTask("t.nothing", model="m", inputs={"text": str})


def test_several_outputs_need_structured_output():
    with pytest.raises(TypeError, match="response_schema"):
        OpenAIChatTask("t.two", model="m", user="x", outputs={"a": str, "b": str})


def test_bad_chat_config_is_refused_at_definition_naming_the_field():
    with pytest.raises(Exception, match="params"):
        OpenAIChatTask("t.bad", model="m", user="x", params={"stream": True})


@dataclasses.dataclass
class Verdict:
    label: str
    reasons: list[str]


def test_schema_derived_from_outputs():
    assert schema_for_outputs({"score": float, "verdict": Verdict}) == {
        "type": "object", "additionalProperties": False, "required": ["score", "verdict"],
        "properties": {
            "score": {"type": "number"},
            "verdict": {"type": "object", "additionalProperties": False, "required": ["label", "reasons"],
                        "properties": {"label": {"type": "string"},
                                       "reasons": {"type": "array", "items": {"type": "string"}}}},
        },
    }


@pytest.fixture
def local_fake(fake, monkeypatch):
    monkeypatch.setenv("FLYTECONNECTORS_OPENAI_BASE_URL", f"{fake.url}/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-local-run")
    return fake


def test_workflow_runs_locally_against_the_fake(local_fake):
    classify = OpenAIChatTask("t.classify", model="gpt-4o-mini", user="{{ .inputs.text }}", inputs={"text": str},
                              outputs={"label": str, "score": float}, response_schema="outputs")
    answer = OpenAIBatchTask("t.answer", model="gpt-4o-mini")
    local_fake.script_next_reply(json.dumps({"label": "positive", "score": 0.9}))

    @workflow
    def wf(text: str, prompts: list[str]) -> tuple[str, float, dict[str, int], str]:
        label, score = classify(text=text)
        out = answer(prompts=prompts)
        return label, score, out.request_counts, out.batch_id

    label, score, counts, batch_id = wf(text="nice", prompts=["a", "b"])

    assert (label, score) == ("positive", 0.9)
    assert counts == {"total": 2, "completed": 2, "failed": 0}
    assert batch_id in local_fake.batches
    [chat] = local_fake.requests("POST", r"/chat/completions$")
    assert chat.json()["response_format"]["json_schema"]["schema"] == schema_for_outputs({"label": str, "score": float})
    assert chat.headers["authorization"] == "Bearer sk-local-run"


def test_batch_result_file_is_a_flytefile_locally(local_fake):
    answer = OpenAIBatchTask("t.files", model="gpt-4o-mini", outputs={"output_file": FlyteFile})

    result = answer(prompts=["hello"])

    lines = Path(result.download()).read_text().splitlines()
    assert json.loads(lines[0])["response"]["body"]["choices"][0]["message"]["content"] == "echo: hello"


def test_structured_output_into_a_dataclass(local_fake):
    judge = OpenAIChatTask("t.judge", model="gpt-4o-mini", user="{{ .inputs.text }}", inputs={"text": str},
                           outputs={"verdict": Verdict}, response_schema="outputs")
    local_fake.script_next_reply(json.dumps({"verdict": {"label": "ok", "reasons": ["short", "clear"]}}))

    assert judge(text="x") == Verdict(label="ok", reasons=["short", "clear"])
