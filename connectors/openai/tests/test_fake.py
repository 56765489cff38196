"""The fake on its own: standalone process, the SDK's wire protocol, the control API."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import openai
import pytest


def test_fake_runs_standalone_and_speaks_the_sdk_protocol(tmp_path: Path):
    port_file = tmp_path / "port"
    proc = subprocess.Popen([sys.executable, "-m", "flyteconnectors.core", "fake", "openai", "--port", "0",
                             "--port-file", str(port_file)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "the fake did not start"
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port_file.read_text()}"
        script = json.dumps({"steps": ["in_progress", {"status": "completed", "fail": ["b"]}]}).encode()
        urllib.request.urlopen(urllib.request.Request(f"{url}/_fake/script", script, method="POST"))

        client = openai.OpenAI(api_key="sk-x", base_url=f"{url}/v1", max_retries=0)
        lines = b"".join(json.dumps({"custom_id": cid, "method": "POST", "url": "/v1/chat/completions",
                                     "body": {"model": "m", "messages": [{"role": "user", "content": cid}]}}
                                    ).encode() + b"\n" for cid in ("a", "b"))
        upload = client.files.create(file=("in.jsonl", lines), purpose="batch")
        batch = client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions",
                                      completion_window="24h")
        statuses = [client.batches.retrieve(batch.id).status for _ in range(3)]
        done = client.batches.retrieve(batch.id)

        assert statuses == ["in_progress", "completed", "completed"]
        assert (done.request_counts.completed, done.request_counts.failed) == (1, 1)
        [output] = client.files.content(done.output_file_id).text.splitlines()
        assert json.loads(output)["response"]["body"]["choices"][0]["message"]["content"] == "echo: a"
        [error] = client.files.content(done.error_file_id).text.splitlines()
        assert json.loads(error)["custom_id"] == "b"
        journal = json.loads(urllib.request.urlopen(f"{url}/_fake/requests").read())
        assert [e["path"] for e in journal][:2] == ["/v1/files", "/v1/batches"]
    finally:
        proc.terminate()
        proc.wait(10)


def test_missing_key_and_missing_batch_answer_like_openai(fake):
    client = openai.OpenAI(api_key="sk-x", base_url=f"{fake.url}/v1", max_retries=0)
    with pytest.raises(openai.NotFoundError) as missing:
        client.batches.retrieve("batch_nope")
    assert missing.value.code == "batch_not_found"

    fake.api_key = "sk-right"
    with pytest.raises(openai.AuthenticationError) as refused:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert refused.value.code == "invalid_api_key"


def test_listings_page_like_openai(fake):
    client = openai.OpenAI(api_key="sk-x", base_url=f"{fake.url}/v1", max_retries=0)
    line = b'{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {}}'
    uploads = [client.files.create(file=(f"in{n}.jsonl", line), purpose="batch") for n in range(3)]
    made = [client.batches.create(input_file_id=uploads[0].id, endpoint="/v1/chat/completions",
                                  completion_window="24h").id for _ in range(25)]

    first = client.batches.list()
    assert [b.id for b in first.data] == made[::-1][:20]  # newest first, 20 by default
    assert first.has_more
    assert [b.id for b in client.batches.list(limit=100)] == made[::-1]  # the SDK follows the `after` cursor
    assert [b.id for b in client.batches.list(limit=10, after=made[5]).data] == made[4::-1]
    with pytest.raises(openai.BadRequestError) as too_many:
        client.batches.list(limit=101)
    assert too_many.value.code == "integer_above_max_value"

    newest_first = [f.id for f in client.files.list(purpose="batch").data]  # 10,000 by default; desc by default
    assert newest_first == [u.id for u in uploads[::-1]]
    assert [f.id for f in client.files.list(purpose="batch", order="asc", limit=2).data] == [u.id for u in uploads[:2]]
