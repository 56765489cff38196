"""openai-chat through the real host (ExecuteTaskSync, as Propeller calls it) against the fake over HTTP."""

from __future__ import annotations

import json
import time

from conftest import API_KEY, make_host

from flyteconnectors.core.testing import builders
from flyteconnectors.core.testing.host import PropellerClient

SUCCEEDED, FAILED, RETRYABLE_FAILED = 3, 5, 8


def chat_template(custom: dict | None = None, *, inputs: dict | None = None, outputs: dict | None = None):
    custom = {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are a terse assistant."},
            {"role": "user", "content": "Summarise: {{ .inputs.text }}"},
        ],
        **(custom or {}),
    }
    return builders.task_template("openai-chat", custom, inputs=inputs or {"text": str},
                                  outputs=outputs or {"answer": str})


def sent_bodies(fake) -> list[dict]:
    return [entry.json() for entry in fake.requests("POST", r"/chat/completions$")]


def test_chat_keeps_system_and_user_messages_and_fills_inputs(fake, propeller):
    result = propeller.execute_sync(chat_template({"params": {"temperature": 0.2}}), {"text": "the {braces} stay"})

    assert result.phase == SUCCEEDED
    assert builders.outputs_to_python(result) == {"answer": "echo: Summarise: the {braces} stay"}
    [body] = sent_bodies(fake)
    assert body["messages"] == [
        {"role": "system", "content": "You are a terse assistant."},
        {"role": "user", "content": "Summarise: the {braces} stay"},
    ]
    assert body["model"] == "gpt-4o-mini" and body["temperature"] == 0.2


def test_non_string_inputs_are_rendered_as_json(fake, propeller):
    template = chat_template({"messages": [{"role": "user", "content": "Items: {{ .inputs.items }} n={{.inputs.n}}"}]},
                             inputs={"items": list[str], "n": int})
    propeller.execute_sync(template, {"items": ["a", "b"], "n": 3})

    assert sent_bodies(fake)[0]["messages"][0]["content"] == 'Items: ["a", "b"] n=3'


def test_structured_output_fills_typed_outputs(fake, propeller):
    schema = {"type": "object", "properties": {"label": {"type": "string"}, "score": {"type": "integer"}},
              "required": ["label", "score"], "additionalProperties": False}
    fake.script_next_reply(json.dumps({"label": "positive", "score": 9}))
    template = chat_template({"response_schema": schema, "schema_name": "review"},
                             outputs={"label": str, "score": int})

    result = propeller.execute_sync(template, {"text": "great"})

    assert result.phase == SUCCEEDED
    assert builders.outputs_to_python(result) == {"label": "positive", "score": 9}
    sent = sent_bodies(fake)[0]["response_format"]
    assert sent == {"type": "json_schema", "json_schema": {"name": "review", "schema": schema, "strict": True}}


def test_structured_output_into_one_output_gets_the_whole_object(fake, propeller):
    schema = {"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string"}}}}
    template = chat_template({"response_schema": schema}, outputs={"review": dict})

    result = propeller.execute_sync(template, {"text": "x"})

    assert result.phase == SUCCEEDED
    assert builders.outputs_to_python(result) == {"review": {"tags": ["example"]}}


def test_structured_reply_missing_an_output_field_fails_naming_it(fake, propeller):
    schema = {"type": "object", "properties": {"label": {"type": "string"}}}
    fake.script_next_reply(json.dumps({"label": "x"}))
    result = propeller.execute_sync(chat_template({"response_schema": schema}, outputs={"label": str, "score": int}),
                                    {"text": "x"})

    assert result.phase == FAILED
    assert "no field for output(s) score" in result.message


def test_truncated_structured_reply_says_why(fake, propeller):
    fake.script_next_reply('{"label": "posi', finish_reason="length")
    template = chat_template({"response_schema": {"type": "object", "properties": {"label": {"type": "string"}}}},
                             outputs={"label": str})
    result = propeller.execute_sync(template, {"text": "x"})

    assert result.phase == FAILED
    assert "finish_reason=length" in result.message and "max_completion_tokens" in result.message


def test_empty_content_is_a_clear_failure_not_none(fake, propeller):
    fake.script_next_reply(None)
    result = propeller.execute_sync(chat_template(), {"text": "x"})

    assert result.phase == FAILED
    assert result.message == "the model returned empty content (finish_reason=stop)"
    assert not result.outputs.literals


def test_empty_content_at_the_token_limit_names_the_parameter(fake, propeller):
    fake.script_next_reply("", finish_reason="length")
    result = propeller.execute_sync(chat_template(), {"text": "x"})

    assert result.phase == FAILED
    assert "max_completion_tokens" in result.message


def test_refusal_is_reported(fake, propeller):
    fake.script_next_reply(None, refusal="I can't help with that.")
    result = propeller.execute_sync(chat_template(), {"text": "x"})

    assert result.phase == FAILED
    assert result.message == "the model refused to answer: I can't help with that."


def test_slow_completion_answers_before_the_sync_deadline(fake, host):
    fake.set_latency(5.0)
    client = PropellerClient(host.channel, timeout=2.0)
    started = time.monotonic()

    result = client.execute_sync(chat_template(), {"text": "x"})

    assert time.monotonic() - started < 2.0
    assert result.phase == RETRYABLE_FAILED
    assert "did not answer in time" in result.message or "deadline" in result.message


def test_rate_limits_are_retried_inside_the_deadline(fake, propeller):
    fake.inject_fault(429, path=r"/chat/completions$", count=2, headers={"retry-after-ms": "10"},
                      body={"error": {"message": "Rate limit reached", "type": "requests",
                                      "code": "rate_limit_exceeded"}})
    result = propeller.execute_sync(chat_template(), {"text": "x"})

    assert result.phase == SUCCEEDED
    assert [e.status for e in fake.requests("POST", r"/chat/completions$")] == [429, 429, 200]


def test_exhausted_quota_is_permanent(fake, propeller):
    fake.inject_fault(429, path=r"/chat/completions$", count=5,
                      body={"error": {"message": "You exceeded your current quota.", "type": "insufficient_quota",
                                      "code": "insufficient_quota"}})
    result = propeller.execute_sync(chat_template(), {"text": "x"})

    assert result.phase == FAILED
    assert "You exceeded your current quota." in result.message
    assert len(fake.requests("POST", r"/chat/completions$")) == 1


def test_unknown_model_fails_permanently_with_the_service_message(fake, propeller):
    result = propeller.execute_sync(chat_template({"model": "missing-model"}), {"text": "x"})

    assert result.phase == FAILED
    assert "The model `missing-model` does not exist" in result.message
    assert "model_not_found" in result.message


def test_refused_api_key_fails_without_revealing_it(fake, propeller):
    fake.api_key = "sk-the-right-one"
    result = propeller.execute_sync(chat_template(), {"text": "x"})

    assert result.phase == FAILED
    assert "openai_api_key" in result.message
    assert API_KEY not in result.message and "***" in result.message


def test_missing_api_key_secret_is_a_config_failure(fake):
    with make_host(fake, secrets={}) as host:
        result = PropellerClient(host.channel).execute_sync(chat_template(), {"text": "x"})

    assert result.phase == FAILED
    assert "openai_api_key" in result.message
    assert not fake.requests("POST")


def test_template_naming_an_unknown_input_fails_naming_the_field(fake, propeller):
    template = chat_template({"messages": [{"role": "user", "content": "{{ .inputs.txt }}"}]})
    result = propeller.execute_sync(template, {"text": "x"})

    assert result.phase == FAILED
    assert "messages[0].content" in result.message and "'txt'" in result.message
    assert not fake.requests("POST")


def test_bad_config_fails_permanently_naming_the_field(fake, propeller):
    result = propeller.execute_sync(chat_template({"temprature": 0.5}), {"text": "x"})
    assert result.phase == FAILED and "temprature: unknown field" in result.message

    result = propeller.execute_sync(chat_template({"params": {"messages": []}}), {"text": "x"})
    assert result.phase == FAILED and "params" in result.message and "messages cannot be set" in result.message
    assert not fake.requests("POST")


def test_one_client_serves_every_call_and_is_closed_on_shutdown(fake):
    with make_host(fake) as host:
        client = PropellerClient(host.channel)
        for _ in range(3):
            assert client.execute_sync(chat_template(), {"text": "x"}).phase == SUCCEEDED
        [cache] = host.registry.client_caches()
        assert len(cache) == 1
        [holder] = cache._clients.values()
        sdk_client = holder.client
        assert not sdk_client.is_closed()
    assert sdk_client.is_closed()


def test_task_endpoint_must_be_allowed_by_the_host(fake):
    other = f"{fake.url}/v1/"  # the same fake, but named by the task, not the host operator
    template = chat_template({"base_url": "https://attacker.example/v1"})
    with make_host(fake) as host:
        result = PropellerClient(host.channel).execute_sync(template, {"text": "x"})
    assert result.phase == FAILED and "base_url" in result.message and "ALLOWED_BASE_URLS" in result.message
    assert not fake.requests("POST")

    with make_host(fake, settings={"base_url": "https://api.openai.com/v1", "allowed_base_urls": other}) as host:
        result = PropellerClient(host.channel).execute_sync(chat_template({"base_url": other}), {"text": "x"})
    assert result.phase == SUCCEEDED


def test_azure_openai_endpoint_with_api_version(fake):
    with make_host(fake, settings={"base_url": fake.url, "api_version": "2024-10-21"}) as host:
        result = PropellerClient(host.channel).execute_sync(chat_template({"model": "my-deployment"}), {"text": "x"})

    assert result.phase == SUCCEEDED
    [entry] = fake.requests("POST", r"/chat/completions$")
    assert entry.path == "/openai/deployments/my-deployment/chat/completions"
    assert entry.query == {"api-version": "2024-10-21"}
    assert entry.headers["api-key"] == API_KEY


def test_usage_is_reported_in_custom_info(fake, propeller):
    result = propeller.execute_sync(chat_template(), {"text": "x"})

    info = dict(result.custom_info)
    assert info["model"] == "gpt-4o-mini" and info["usage"]["total_tokens"] == 15
