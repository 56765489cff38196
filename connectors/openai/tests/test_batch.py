"""openai-batch-job through the real host (CreateTask / GetTask / DeleteTask, as Propeller calls them)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import time
from pathlib import Path

import openai
import pytest
from conftest import API_KEY, make_host

from flyteconnectors.core.meta import MetaCodec
from flyteconnectors.core.testing import builders
from flyteconnectors.core.testing.host import HostThread, PropellerClient
from flyteconnectors.openai.connector import BATCH_STATES, IDEMPOTENCY_TAG

INITIALIZING, RUNNING, SUCCEEDED, ABORTED, FAILED = 6, 2, 3, 4, 5
OUTPUTS = {"output_file": builders.FILE, "error_file": builders.FILE, "request_counts": dict[str, int],
           "batch_id": str}


def batch_template(custom: dict | None = None, *, inputs: dict | None = None, outputs: dict | None = None):
    custom = {"model": "gpt-4o-mini", **(custom or {})}
    return builders.task_template("openai-batch-job", custom, inputs=inputs or {"prompts": list[str]},
                                  outputs=OUTPUTS if outputs is None else outputs)


def batch_id(meta: bytes) -> str:
    return str(MetaCodec().decode(meta).meta["batch_id"])


def get(host: HostThread, template, meta: bytes, prefix: str):
    request = builders.get_request(template, meta, output_prefix=prefix)
    return host.async_stub.GetTask(request, timeout=10).resource


def poll(host: HostThread, template, meta: bytes, prefix: str, limit: float = 10.0):
    seen = []
    end = time.monotonic() + limit
    while time.monotonic() < end:
        resource = get(host, template, meta, prefix)
        seen.append(resource)
        if resource.phase in (SUCCEEDED, ABORTED, FAILED, 8):
            return resource, seen
        time.sleep(0.01)
    raise TimeoutError(f"still {seen[-1].phase} after {limit}s")


@pytest.fixture
def prefix(tmp_path: Path) -> str:
    return str(tmp_path / "outputs")


def test_prompts_batch_runs_to_success_with_result_files_and_counts(fake, host, propeller, prefix):
    template = batch_template({"messages": [{"role": "system", "content": "Be brief."},
                                            {"role": "user", "content": "{{ .prompt }}"}],
                               "params": {"temperature": 0}})
    meta = propeller.create(template, {"prompts": ["one", "two", "three"]})

    final, seen = poll(host, template, meta, prefix)

    assert [r.phase for r in seen][:3] == [INITIALIZING, RUNNING, RUNNING]
    assert all(not r.outputs.literals for r in seen[:-1])  # outputs only once the batch succeeded
    assert final.phase == SUCCEEDED
    outputs = builders.outputs_to_python(final)
    assert outputs["request_counts"] == {"total": 3, "completed": 3, "failed": 0}
    results = [json.loads(line) for line in Path(outputs["output_file"]).read_text().splitlines()]
    assert [(r["custom_id"], r["response"]["body"]["choices"][0]["message"]["content"]) for r in results] == [
        ("prompt-0", "echo: one"), ("prompt-1", "echo: two"), ("prompt-2", "echo: three")]
    assert outputs["output_file"].startswith(prefix)
    assert Path(outputs["error_file"]).read_text() == ""
    uploaded = fake.files[fake.batches[outputs["batch_id"]]["input_file_id"]]["content"].decode().splitlines()
    assert json.loads(uploaded[0])["body"] == {
        "model": "gpt-4o-mini", "temperature": 0,
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "one"}]}
    assert "3 of 3 requests done" in final.message


def test_jsonl_input_file_is_uploaded_as_is(fake, host, propeller, prefix, tmp_path):
    lines = [{"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
              "body": {"model": "m", "messages": [{"role": "user", "content": f"q{i}"}]}} for i in range(2)]
    source = tmp_path / "requests.jsonl"
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    template = batch_template({"model": None}, inputs={"input_file": builders.FILE})

    meta = propeller.create(template, {"input_file": str(source)})
    final, _ = poll(host, template, meta, prefix)

    assert final.phase == SUCCEEDED
    [upload] = fake.requests("POST", r"/v1/files$")
    assert source.read_bytes() in upload.body
    assert builders.outputs_to_python(final)["request_counts"]["completed"] == 2


def test_batch_is_tagged_with_the_attempt(fake, propeller):
    propeller.create(batch_template({"metadata": {"team": "ml"}}), {"prompts": ["x"]},
                     ident=builders.identity(execution="exec1", node_id="n3"))

    [batch] = fake.batches.values()
    assert batch["metadata"]["team"] == "ml"
    assert batch["metadata"][IDEMPOTENCY_TAG] == builders.identity(execution="exec1", node_id="n3").idempotency_key
    assert batch["metadata"]["flyte_execution"] == "exec1"


def test_lost_create_response_creates_one_batch(fake, propeller):
    fake.inject_fault(502, method="POST", path=r"/v1/batches$", after=True)

    meta = propeller.create(batch_template(), {"prompts": ["x"]})

    assert fake.batch_count() == 1
    assert batch_id(meta) in fake.batches
    assert len(fake.requests("POST", r"/v1/batches$")) == 1
    assert len(fake.files) == 1


def test_repeated_create_of_the_same_attempt_adopts_the_batch(fake, propeller):
    first = propeller.create(batch_template(), {"prompts": ["x"]})
    second = propeller.create(batch_template(), {"prompts": ["x"]})
    retry = propeller.create(batch_template(), {"prompts": ["x"]}, ident=builders.identity(retry_attempt=1))

    assert batch_id(first) == batch_id(second)
    assert fake.batch_count() == 2  # the next attempt is a new batch
    assert batch_id(retry) != batch_id(first)


def test_lost_upload_response_uploads_one_file(fake, propeller):
    fake.inject_fault(502, method="POST", path=r"/v1/files$", after=True)

    propeller.create(batch_template(), {"prompts": ["x"]})

    assert len(fake.files) == 1
    assert fake.batch_count() == 1


def test_server_without_listings_still_runs_batches(fake, host, propeller, prefix):
    fake.inject_fault(404, method="GET", path=r"/v1/(batches|files)$", count=None)
    template = batch_template()

    final, _ = poll(host, template, propeller.create(template, {"prompts": ["x"]}), prefix)

    assert final.phase == SUCCEEDED
    assert fake.batch_count() == 1


def other_batches(fake, count: int, *, age: float = 0.0) -> None:
    """``count`` batches of other executions, made ``age`` seconds ago."""
    sdk = openai.OpenAI(api_key="sk-other", base_url=f"{fake.url}/v1", max_retries=0)
    line = b'{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {}}'
    upload = sdk.files.create(file=("other.jsonl", line), purpose="batch")
    for n in range(count):
        made = sdk.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h",
                                  metadata={IDEMPOTENCY_TAG: f"other{n}-{time.monotonic_ns()}"})
        fake.batches[made.id]["created_at"] -= int(age)


def listings(fake) -> int:
    return len(fake.requests("GET", r"/v1/batches$"))


def test_another_host_adopts_a_batch_beyond_the_first_page(fake, propeller):
    first = propeller.create(batch_template(), {"prompts": ["x"]})
    other_batches(fake, 120)  # newer batches of other executions push ours past the first page of 100

    with make_host(fake) as replica:  # knows nothing yet: it must list
        again = PropellerClient(replica.channel).create(batch_template(), {"prompts": ["x"]})

    assert batch_id(again) == batch_id(first)
    assert fake.batch_count() == 121
    assert len(fake.files) == 2  # ours and the others' one: the input file was found too


def test_retried_create_on_the_same_host_adopts_without_listing(fake, propeller):
    first = propeller.create(batch_template(), {"prompts": ["x"]})
    before = len(fake.requests())

    again = propeller.create(batch_template(), {"prompts": ["x"]})

    assert batch_id(again) == batch_id(first)
    assert len(fake.requests()) == before  # not one request: the host remembers what it made


def test_each_create_lists_only_the_batches_made_since_the_last_listing(fake, propeller):
    other_batches(fake, 250, age=120)  # an account with history
    other_batches(fake, 1)
    propeller.create(batch_template(), {"prompts": ["x"]}, ident=builders.identity(execution="e1"))
    assert listings(fake) == 3  # the first listing on this host reads the history (within adopt_window)
    other_batches(fake, 5)

    propeller.create(batch_template(), {"prompts": ["x"]}, ident=builders.identity(execution="e2"))

    assert listings(fake) == 4  # one page: the new batches, then history the host has already seen
    assert all(e.query.get("limit") == "100" for e in fake.requests("GET", r"/v1/batches$"))


def test_batches_older_than_the_adoption_window_are_not_listed(fake):
    other_batches(fake, 150, age=3600)
    with make_host(fake, settings={"adopt_window": 600}) as host:
        PropellerClient(host.channel).create(batch_template(), {"prompts": ["x"]})

    assert listings(fake) == 1  # the first batch older than the window ends the listing


def test_concurrent_creates_share_listings(fake, host):
    fake.inject_fault(None, method="GET", path=r"/v1/batches$", hang=0.5, count=None)
    creates = 8

    def create(n: int) -> bytes:
        return PropellerClient(host.channel).create(batch_template(), {"prompts": ["x"]},
                                                    ident=builders.identity(execution=f"e{n}"))

    with concurrent.futures.ThreadPoolExecutor(creates) as pool:
        metas = list(pool.map(create, range(creates)))

    assert len({batch_id(m) for m in metas}) == creates == fake.batch_count()
    # The first, then one started after the others had arrived (and a straggler or two on a busy machine).
    assert listings(fake) <= creates // 2


def test_input_file_deleted_after_a_failed_create_is_uploaded_again(fake, propeller):
    fake.inject_fault(400, method="POST", path=r"/v1/batches$", count=1)
    failed = propeller.create(batch_template(), {"prompts": ["x"]})
    assert fake.batch_count() == 0 and len(fake.files) == 1
    assert failed  # the create answered (the 400 shows on the next poll)
    fake.files.clear()  # someone cleaned up the account

    meta = propeller.create(batch_template(), {"prompts": ["x"]})

    assert fake.batch_count() == 1
    assert fake.batches[batch_id(meta)]["input_file_id"] in fake.files


def test_server_listing_oldest_first_still_adopts(fake, propeller):
    first = propeller.create(batch_template(), {"prompts": ["x"]})
    other_batches(fake, 120)
    fake.batches = dict(reversed(list(fake.batches.items())))  # the fake lists in reverse insertion order

    with make_host(fake) as replica:
        again = PropellerClient(replica.channel).create(batch_template(), {"prompts": ["x"]})

    assert batch_id(again) == batch_id(first)


@pytest.mark.parametrize("status", list(BATCH_STATES.states))
def test_every_batch_status_maps_to_its_phase(fake, host, propeller, prefix, status):
    fake.script_next_job(status.lower())
    meta = propeller.create(batch_template(), {"prompts": ["x"]})

    resource = get(host, batch_template(), meta, prefix)

    assert resource.phase == BATCH_STATES.phase(status)
    assert resource.custom_info["state"] == status


def test_each_status_has_the_documented_phase():
    assert {state.lower(): BATCH_STATES.phase(state).name for state in BATCH_STATES.states} == {
        "validating": "INITIALIZING", "in_progress": "RUNNING", "finalizing": "RUNNING", "completed": "SUCCEEDED",
        "failed": "FAILED", "expired": "FAILED", "cancelling": "RUNNING", "cancelled": "ABORTED"}


def test_batch_statuses_cover_the_sdk():
    from typing import get_args

    from openai.types.batch import Batch

    assert {s.upper() for s in get_args(Batch.model_fields["status"].annotation)} == set(BATCH_STATES.states)


def test_unknown_status_keeps_polling_with_a_message(fake, host, propeller, prefix):
    fake.script_next_job("paused", "completed")
    meta = propeller.create(batch_template(), {"prompts": ["x"]})

    first = get(host, batch_template(), meta, prefix)
    assert first.phase == RUNNING
    assert "'PAUSED'" in first.message
    assert get(host, batch_template(), meta, prefix).phase == SUCCEEDED


def test_cancelling_is_not_terminal_and_delete_is_idempotent(fake, host, propeller, prefix):
    fake.script_next_job("in_progress")
    template = batch_template()
    meta = propeller.create(template, {"prompts": ["x"]})
    assert get(host, template, meta, prefix).phase == RUNNING

    propeller.delete(template, meta)
    cancelling = get(host, template, meta, prefix)
    assert cancelling.phase == RUNNING and cancelling.custom_info["state"] == "CANCELLING"
    final, _ = poll(host, template, meta, prefix)
    assert final.phase == ABORTED

    propeller.delete(template, meta)  # a second delete of a cancelled batch is fine
    assert len(fake.requests("POST", r"/cancel$")) == 2


def test_delete_of_a_finished_batch_succeeds(fake, host, propeller, prefix):
    fake.script_next_job("completed")
    template = batch_template()
    meta = propeller.create(template, {"prompts": ["x"]})
    assert get(host, template, meta, prefix).phase == SUCCEEDED

    propeller.delete(template, meta)

    [cancel] = fake.requests("POST", r"/cancel$")
    assert cancel.status == 409


def test_delete_of_a_vanished_batch_succeeds(fake, propeller):
    template = batch_template()
    meta = propeller.create(template, {"prompts": ["x"]})
    fake.batches.clear()

    propeller.delete(template, meta)


def test_vanished_batch_fails_the_task_clearly(fake, host, propeller, prefix):
    template = batch_template()
    meta = propeller.create(template, {"prompts": ["x"]})
    fake.batches.clear()

    resource = get(host, template, meta, prefix)

    assert resource.phase == FAILED
    assert "no longer exists" in resource.message and "batch_not_found" in resource.message


def test_invalid_requests_file_surfaces_every_service_error(fake, host, propeller, prefix, tmp_path):
    source = tmp_path / "bad.jsonl"
    source.write_text('{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {}}\n'
                      "not json\n"
                      '{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {}}\n')
    template = batch_template({"model": None}, inputs={"input_file": builders.FILE})
    meta = propeller.create(template, {"input_file": str(source)})

    final, _ = poll(host, template, meta, prefix)

    assert final.phase == FAILED
    assert "invalid_json_line (line 2)" in final.message
    assert "duplicate_custom_id (line 3)" in final.message


def test_failed_requests_are_summarised_and_kept_in_the_error_file(fake, host, propeller, prefix):
    fake.script_next_job("in_progress", {"status": "completed", "fail": ["prompt-1", "prompt-2"]})
    template = batch_template()
    meta = propeller.create(template, {"prompts": ["a", "b", "c"]})

    final, _ = poll(host, template, meta, prefix)

    assert final.phase == SUCCEEDED
    outputs = builders.outputs_to_python(final)
    assert outputs["request_counts"] == {"total": 3, "completed": 1, "failed": 2}
    assert len(Path(outputs["error_file"]).read_text().splitlines()) == 2
    assert "invalid_value (2)" in final.message and "prompt-1: Invalid value for 'messages'." in final.message


def test_expired_batch_fails_with_its_counts(fake, host, propeller, prefix):
    fake.script_next_job("in_progress", "expired")
    template = batch_template()
    meta = propeller.create(template, {"prompts": ["a", "b"]})

    final, _ = poll(host, template, meta, prefix)

    assert final.phase == FAILED
    assert "expired" in final.message and "1 of 2 requests done, 1 failed" in final.message


def test_transient_status_errors_keep_the_task_running(fake, host, propeller, prefix):
    fake.script_next_job("in_progress")
    template = batch_template()
    meta = propeller.create(template, {"prompts": ["x"]})
    fake.inject_fault(503, method="GET", path=r"/v1/batches/", count=10)

    resource = get(host, template, meta, prefix)

    assert resource.phase == RUNNING
    assert "transient" in resource.message and "503" in resource.message


def test_download_longer_than_a_poll_reports_running_then_succeeds(fake, host, propeller, prefix):
    fake.script_next_job("completed")
    template = batch_template()
    meta = propeller.create(template, {"prompts": ["x"]})
    fake.inject_fault(None, method="GET", path=r"/content$", hang=1.5)

    short = host.async_stub.GetTask(builders.get_request(template, meta, output_prefix=prefix), timeout=0.8).resource
    assert short.phase == RUNNING and "downloading" in short.message

    final, _ = poll(host, template, meta, prefix)
    assert final.phase == SUCCEEDED
    assert len(fake.requests("GET", r"/content$")) == 1  # the second poll waited for the same download


@pytest.mark.parametrize(
    ("custom", "inputs", "values", "field"),
    [
        ({"completion_window": "24h", "temprature": 1}, None, {"prompts": ["x"]}, "temprature: unknown field"),
        ({"model": None}, None, {"prompts": ["x"]}, "model: required when the batch is built from the prompts"),
        ({}, {"text": str}, {"text": "x"}, "needs an input named input_file"),
        ({"messages": [{"role": "user", "content": "{{ .inputs.nope }}"}]}, None, {"prompts": ["x"]},
         "messages[0].content"),
    ],
)
def test_bad_config_fails_permanently_naming_the_field(fake, host, propeller, prefix, custom, inputs, values, field):
    template = batch_template(custom, inputs=inputs)
    meta = propeller.create(template, values)

    resource = get(host, template, meta, prefix)

    assert resource.phase == FAILED
    assert field in resource.message
    assert fake.batch_count() == 0


def test_nothing_secret_in_meta_messages_or_info(fake, prefix):
    fake.script_next_job("failed")
    with make_host(fake, secrets={"openai_api_key": API_KEY, "openai_organization": "org-secretive"}) as host:
        propeller = PropellerClient(host.channel)
        template = batch_template()
        meta = propeller.create(template, {"prompts": ["x"]})
        resource = get(host, template, meta, prefix)
        fake.api_key = "sk-another"
        refused = get(host, template, meta, prefix)

    assert API_KEY.encode() not in meta and b"org-secretive" not in meta
    for text in (resource.message, refused.message, str(resource.custom_info), str(refused.custom_info)):
        assert API_KEY not in text
    assert refused.phase == FAILED and "***" in refused.message
    [auth] = {e.headers["authorization"] for e in fake.requests("POST", r"/v1/batches$")}
    assert auth == f"Bearer {API_KEY}"
    assert {e.headers["openai-organization"] for e in fake.requests("GET")} == {"org-secretive"}


def test_meta_pointing_at_an_endpoint_the_host_does_not_allow_is_refused(fake, host, propeller, prefix):
    template = batch_template()
    meta = propeller.create(template, {"prompts": ["x"]})
    with make_host(fake, settings={"base_url": "https://api.openai.com/v1"}) as other:
        resource = get(other, template, meta, prefix)

    assert resource.phase == FAILED and "ALLOWED_BASE_URLS" in resource.message


def test_azure_batch_uses_azure_paths(fake, prefix):
    with make_host(fake, settings={"base_url": fake.url, "api_version": "2024-10-21"}) as host:
        propeller = PropellerClient(host.channel)
        template = batch_template({"endpoint": "/v1/chat/completions"})
        meta = propeller.create(template, {"prompts": ["x"]})
        final, _ = poll(host, template, meta, prefix)

    assert final.phase == SUCCEEDED
    paths = {e.path for e in fake.requests()}
    assert {"/openai/files", "/openai/batches"} <= paths
    assert all(e.query.get("api-version") == "2024-10-21" for e in fake.requests())


def test_one_client_for_create_polls_and_delete(fake, host, propeller, prefix):
    template = batch_template()
    meta = propeller.create(template, {"prompts": ["x"]})
    poll(host, template, meta, prefix)
    propeller.delete(template, meta)

    [cache] = host.registry.client_caches()
    assert len(cache) == 1


def test_client_closes_when_idle_after_a_download_no_poll_collected(fake, host, propeller, prefix):
    fake.script_next_job("completed")
    template = batch_template()
    meta = propeller.create(template, {"prompts": ["x"]})
    fake.inject_fault(None, method="GET", path=r"/content$", hang=0.5)
    short = host.async_stub.GetTask(builders.get_request(template, meta, output_prefix=prefix), timeout=0.3).resource
    assert "downloading" in short.message
    time.sleep(1.0)  # the download finishes; no poll comes to collect it (the execution was aborted, say)

    [cache] = host.registry.client_caches()
    closed = asyncio.run_coroutine_threadsafe(cache.close_idle(0.0), host.loop).result(10)

    assert closed == 1  # the finished download does not keep its call, and so its client, in use
