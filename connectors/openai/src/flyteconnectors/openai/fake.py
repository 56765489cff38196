"""A local fake of the OpenAI API: chat completions, files and the Batch API, on the SDK's real wire protocol.

Point the official SDK (or the connector) at it with ``base_url=<fake.url>/v1``; Azure-style paths
(``<fake.url>/openai/...`` with ``api-version``) are served too. Paths, payloads and status codes follow what
openai 3.57 sends and accepts (cloud-fakes reference §5).

Batches walk a scripted state sequence, one step per ``GET /v1/batches/{id}``. A step is a status string or a
dict: ``{"status": "failed", "errors": [{"code": ..., "message": ..., "line": 1}]}``, or
``{"status": "completed", "fail": ["custom-id", ...]}`` to make some requests fail. When a batch reaches
``completed`` or ``expired`` the fake writes its output and error files: each request gets a chat completion
that echoes its last user message (or a sample object for its JSON schema).

Chat replies are echoes by default; ``script_next_reply(...)`` queues an exact reply for the next completion.
"""

from __future__ import annotations

import json
import time
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from flyteconnectors.core.testing.fake import FakeHTTPError, FakeRequest, FakeResponse, FakeService, route

_API = r"(?:/v1|/openai)"
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})


def _error(status: int, message: str, *, type_: str = "invalid_request_error", code: str | None = None,
           param: str | None = None) -> FakeHTTPError:
    return FakeHTTPError(status, {"error": {"message": message, "type": type_, "param": param, "code": code}})


class OpenAIFake(FakeService):
    name = "openai"
    default_script = ("validating", "in_progress", "finalizing", "completed")

    def __init__(self, *, seed: int = 0, api_key: str | None = None) -> None:
        super().__init__(seed=seed)
        #: When set, requests must carry this key (``Authorization: Bearer`` or Azure's ``api-key``).
        self.api_key = api_key
        self.files: dict[str, dict[str, Any]] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self._replies: list[dict[str, Any]] = []

    def reset_state(self) -> None:
        self.files.clear()
        self.batches.clear()
        self._replies.clear()

    # ------------------------------------------------------------------ scripting helpers
    def script_next_reply(self, content: str | None = "", *, finish_reason: str = "stop",
                          refusal: str | None = None, model: str | None = None) -> None:
        """Queue the next chat completion's answer (content ``None`` or ``""`` for an empty reply)."""
        with self.lock:
            self._replies.append(
                {"content": content, "finish_reason": finish_reason, "refusal": refusal, "model": model}
            )

    def batch_count(self) -> int:
        with self.lock:
            return len(self.batches)

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> OpenAIFake:
        super().serve(host, port)
        # Headers and body go out in two writes; without TCP_NODELAY each response waits ~40 ms for a
        # delayed ACK. (Belongs in the core toolkit's handler; harmless once it is there.)
        assert self._server is not None
        self._server.RequestHandlerClass.disable_nagle_algorithm = True  # type: ignore[attr-defined]
        return self

    # ------------------------------------------------------------------ plumbing
    def _authorize(self, request: FakeRequest) -> None:
        bearer = request.header("authorization", "") or ""
        key = bearer[7:] if bearer.lower().startswith("bearer ") else request.header("api-key")
        if not key:
            raise _error(401, "You didn't provide an API key.", code=None)
        if self.api_key is not None and key != self.api_key:
            # The real service echoes (part of) the key it refused; the connector must never pass it on.
            raise _error(401, f"Incorrect API key provided: {key}.", code="invalid_api_key")

    # ------------------------------------------------------------------ chat completions
    @route("POST", r"/v1/chat/completions")
    @route("POST", r"/openai/deployments/(?P<deployment>[^/]+)/chat/completions")
    def chat(self, request: FakeRequest, deployment: str | None = None) -> Any:
        self._authorize(request)
        body = request.json()
        model = body.get("model") or deployment
        if not model:
            raise _error(400, "you must provide a model parameter", param="model")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _error(400, "'messages' must be a non-empty array", param="messages")
        if model.startswith("missing"):
            raise _error(404, f"The model `{model}` does not exist or you do not have access to it.",
                         code="model_not_found")
        with self.lock:
            scripted = self._replies.pop(0) if self._replies else None
        if scripted is None:
            content: str | None = _default_reply(body)
            finish_reason, refusal = "stop", None
        else:
            content, finish_reason, refusal = scripted["content"], scripted["finish_reason"], scripted["refusal"]
            model = scripted["model"] or model
        return _completion(f"chatcmpl-{self.next_id()}", model, content, finish_reason, refusal)

    # ------------------------------------------------------------------ files
    @route("POST", _API + r"/files")
    def upload(self, request: FakeRequest) -> Any:
        self._authorize(request)
        fields = _multipart(request)
        upload = fields.get("file")
        purpose = fields.get("purpose", (None, b""))[1].decode()
        if upload is None:
            raise _error(400, "'file' is a required property", param="file")
        if purpose not in {"batch", "assistants", "fine-tune", "vision", "user_data"}:
            raise _error(400, f"'{purpose}' is not a valid purpose", param="purpose")
        return self._add_file(upload[0] or "upload", upload[1], purpose)

    def _add_file(self, filename: str, content: bytes, purpose: str) -> dict[str, Any]:
        file_id = f"file-{self.next_id()}"
        with self.lock:  # created_at and insertion together: the dict's order is the creation order
            record = {"id": file_id, "object": "file", "bytes": len(content), "created_at": int(time.time()),
                      "filename": filename, "purpose": purpose, "status": "processed"}
            self.files[file_id] = {"meta": record, "content": content}
        return record

    @route("GET", _API + r"/files")
    def list_files(self, request: FakeRequest) -> Any:
        """Like OpenAI: ``order`` by created_at (default desc), ``limit`` 1 to 10,000 (default 10,000), ``after``."""
        self._authorize(request)
        order = request.query.get("order", "desc")
        if order not in {"asc", "desc"}:
            raise _error(400, f"Invalid 'order': expected one of 'asc' or 'desc', but got '{order}' instead.",
                         param="order")
        purpose = request.query.get("purpose")
        with self.lock:
            items = [f["meta"] for f in self.files.values() if not purpose or f["meta"]["purpose"] == purpose]
            if order == "desc":
                items.reverse()
            return _page(items, request, default=10_000, maximum=10_000)

    @route("GET", _API + r"/files/(?P<file_id>[^/]+)")
    def get_file(self, request: FakeRequest, file_id: str) -> Any:
        self._authorize(request)
        return self._file(file_id)["meta"]

    @route("GET", _API + r"/files/(?P<file_id>[^/]+)/content")
    def file_content(self, request: FakeRequest, file_id: str) -> FakeResponse:
        self._authorize(request)
        return FakeResponse(200, self._file(file_id)["content"], {"Content-Type": "application/octet-stream"})

    @route("DELETE", _API + r"/files/(?P<file_id>[^/]+)")
    def delete_file(self, request: FakeRequest, file_id: str) -> Any:
        self._authorize(request)
        self._file(file_id)
        with self.lock:
            self.files.pop(file_id, None)
        return {"id": file_id, "object": "file", "deleted": True}

    def _file(self, file_id: str) -> dict[str, Any]:
        with self.lock:
            record = self.files.get(file_id)
        if record is None:
            raise _error(404, f"No such File object: {file_id}", param="id")
        return record

    # ------------------------------------------------------------------ batches
    @route("POST", _API + r"/batches")
    def create_batch(self, request: FakeRequest) -> Any:
        self._authorize(request)
        body = request.json()
        for required in ("input_file_id", "endpoint", "completion_window"):
            if not body.get(required):
                raise _error(400, f"Missing required parameter: '{required}'.", param=required)
        if body["completion_window"] != "24h":
            raise _error(400, "Invalid 'completion_window': expected '24h'.", param="completion_window")
        metadata = body.get("metadata") or {}
        if len(metadata) > 16:
            raise _error(400, "Invalid 'metadata': too many keys (max 16).", param="metadata")
        source = self._file(body["input_file_id"])
        if source["meta"]["purpose"] != "batch":
            raise _error(400, "The input file must be uploaded with purpose 'batch'.", param="input_file_id")
        batch_id = f"batch_{self.next_id()}"
        script = self.new_job_script(batch_id)
        batch = {
            "id": batch_id, "object": "batch", "endpoint": body["endpoint"], "errors": None,
            "input_file_id": body["input_file_id"], "completion_window": "24h", "status": "validating",
            "output_file_id": None, "error_file_id": None, "created_at": 0,
            "in_progress_at": None, "expires_at": None, "finalizing_at": None, "completed_at": None,
            "failed_at": None, "expired_at": None, "cancelling_at": None, "cancelled_at": None,
            "request_counts": {"total": 0, "completed": 0, "failed": 0}, "metadata": metadata or None,
        }
        with self.lock:  # created_at and insertion together: the dict's order is the creation order
            batch["created_at"] = int(time.time())
            self.batches[batch_id] = batch
            self._apply(batch, script.current)
            return dict(batch)

    @route("GET", _API + r"/batches")
    def list_batches(self, request: FakeRequest) -> Any:
        """Like OpenAI: newest first, ``limit`` 1 to 100 (default 20), ``after`` = the last id of a page."""
        self._authorize(request)
        with self.lock:
            items = list(self.batches.values())
            items.reverse()
            return _page(items, request, default=20, maximum=100)

    @route("GET", _API + r"/batches/(?P<batch_id>[^/]+)")
    def retrieve_batch(self, request: FakeRequest, batch_id: str) -> Any:
        self._authorize(request)
        with self.lock:
            batch = self._batch(batch_id)
            self._apply(batch, self.scripts[batch_id].advance())
            return dict(batch)

    @route("POST", _API + r"/batches/(?P<batch_id>[^/]+)/cancel")
    def cancel_batch(self, request: FakeRequest, batch_id: str) -> Any:
        self._authorize(request)
        with self.lock:
            batch = self._batch(batch_id)
            if batch["status"] in {"completed", "failed", "expired"}:
                raise _error(409, f"Cannot cancel a batch with status '{batch['status']}'.")
            if batch["status"] not in {"cancelling", "cancelled"}:
                self.script_job(batch_id, "cancelling", "cancelled")
                self._apply(batch, "cancelling")
            return dict(batch)

    def _batch(self, batch_id: str) -> dict[str, Any]:
        batch = self.batches.get(batch_id)
        if batch is None:
            raise _error(404, f"No batch found with id '{batch_id}'.", code="batch_not_found")
        return batch

    def _apply(self, batch: dict[str, Any], step: Any) -> None:
        """Move ``batch`` to the scripted ``step`` (called with the lock held)."""
        spec = {"status": step} if isinstance(step, str) else dict(step)
        status = spec["status"]
        if batch["status"] in TERMINAL and batch["status"] != status:
            return  # a finished batch never changes again
        now = int(time.time())
        lines, problems = self._requests_of(batch)
        if status in {"in_progress", "finalizing", "completed", "expired"} and problems:
            status, spec = "failed", {"status": "failed", "errors": problems}
        total = len(lines)
        failing = set(spec.get("fail", ()))
        counts = batch["request_counts"]
        if status == "in_progress":
            counts.update(total=total, completed=total // 2, failed=0)
        elif status in {"finalizing", "completed"}:
            failed = sum(1 for line in lines if line["custom_id"] in failing)
            counts.update(total=total, completed=total - failed, failed=failed)
        elif status == "expired":
            done = total // 2
            counts.update(total=total, completed=done, failed=total - done)
        if status == "failed":
            batch["errors"] = {"object": "list", "data": spec.get("errors") or [
                {"code": "failed", "message": "The batch failed.", "line": None, "param": None}]}
        if status in {"completed", "expired"} and batch["output_file_id"] is None:
            self._write_results(batch, lines, failing, expired=status == "expired")
        batch["status"] = status
        stamp = {"in_progress": "in_progress_at", "finalizing": "finalizing_at", "completed": "completed_at",
                 "failed": "failed_at", "expired": "expired_at", "cancelling": "cancelling_at",
                 "cancelled": "cancelled_at"}.get(status)
        if stamp and batch[stamp] is None:
            batch[stamp] = now

    def _requests_of(self, batch: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        source = self.files.get(batch["input_file_id"])
        if source is None:
            return [], [{"code": "invalid_file", "message": "The input file was deleted.", "line": None}]
        lines, problems, seen = [], [], set()
        for number, raw in enumerate(source["content"].decode("utf-8", "replace").splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                line = json.loads(raw)
            except ValueError:
                problems.append({"code": "invalid_json_line", "line": number,
                                 "message": f"This line is not parseable as valid JSON (line {number})."})
                continue
            missing = [k for k in ("custom_id", "method", "url", "body") if k not in line]
            if missing:
                problems.append({"code": "missing_required_parameter", "line": number,
                                 "message": f"Missing required parameter: '{missing[0]}'."})
            elif line["custom_id"] in seen:
                problems.append({"code": "duplicate_custom_id", "line": number,
                                 "message": f"The custom_id '{line['custom_id']}' is not unique."})
            elif line["url"] != batch["endpoint"]:
                problems.append({"code": "mismatched_endpoint", "line": number,
                                 "message": f"The url '{line['url']}' does not match the batch endpoint."})
            else:
                seen.add(line["custom_id"])
                lines.append(line)
        if not lines and not problems:
            problems.append({"code": "empty_file", "message": "The input file is empty.", "line": None})
        return lines, problems

    def _write_results(self, batch: dict[str, Any], lines: list[dict[str, Any]], failing: set[str], *,
                       expired: bool) -> None:
        outputs, errors = [], []
        cutoff = len(lines) // 2 if expired else len(lines)
        for index, line in enumerate(lines):
            custom_id = line["custom_id"]
            request_id = f"req_{self.next_id()}"
            if index >= cutoff:
                errors.append({"id": f"batch_req_{request_id}", "custom_id": custom_id, "response": None,
                               "error": {"code": "batch_expired",
                                         "message": "This request could not be executed before the completion "
                                                    "window expired."}})
            elif custom_id in failing:
                errors.append({"id": f"batch_req_{request_id}", "custom_id": custom_id, "error": None,
                               "response": {"status_code": 400, "request_id": request_id, "body": {"error": {
                                   "message": "Invalid value for 'messages'.", "type": "invalid_request_error",
                                   "param": "messages", "code": "invalid_value"}}}})
            else:
                body = line["body"]
                completion = _completion(f"chatcmpl-{self.next_id()}", body.get("model", "fake"),
                                         _default_reply(body), "stop", None)
                outputs.append({"id": f"batch_req_{request_id}", "custom_id": custom_id, "error": None,
                                "response": {"status_code": 200, "request_id": request_id, "body": completion}})
        if outputs:
            batch["output_file_id"] = self._add_file("batch_output.jsonl", _jsonl(outputs), "batch_output")["id"]
        if errors:
            batch["error_file_id"] = self._add_file("batch_errors.jsonl", _jsonl(errors), "batch_output")["id"]


# ---------------------------------------------------------------------------------------------- helpers
def _completion(completion_id: str, model: str, content: str | None, finish_reason: str,
                refusal: str | None) -> dict[str, Any]:
    return {
        "id": completion_id, "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "finish_reason": finish_reason, "logprobs": None,
                     "message": {"role": "assistant", "content": content, "refusal": refusal}}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }


def _default_reply(body: dict[str, Any]) -> str:
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        return json.dumps(_sample((fmt.get("json_schema") or {}).get("schema") or {}))
    if fmt.get("type") == "json_object":
        return "{}"
    users = [m for m in body.get("messages") or [] if m.get("role") == "user"]
    text = users[-1].get("content", "") if users else ""
    if isinstance(text, list):
        text = " ".join(str(part.get("text", "")) for part in text if isinstance(part, dict))
    return f"echo: {text}"


def _sample(schema: dict[str, Any]) -> Any:
    """A small value that fits ``schema``: what a model under structured outputs would return."""
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        return {name: _sample(sub) for name, sub in (schema.get("properties") or {}).items()}
    if kind == "array":
        return [_sample(schema.get("items") or {})]
    samples: dict[Any, Any] = {"string": "example", "integer": 1, "number": 1.5, "boolean": True, "null": None}
    return samples.get(kind, "example")


def _page(items: list[dict[str, Any]], request: FakeRequest, *, default: int, maximum: int) -> dict[str, Any]:
    """One page of a cursor listing (``items`` in listing order), with OpenAI's checks of ``limit``."""
    raw = request.query.get("limit")
    try:
        limit = default if raw is None else int(raw)
    except ValueError:
        raise _error(400, f"Invalid 'limit': expected an integer, but got '{raw}' instead.", param="limit",
                     code="invalid_type") from None
    if limit < 1:
        raise _error(400, f"Invalid 'limit': integer below minimum value. Expected a value >= 1, but got {limit} "
                     "instead.", param="limit", code="integer_below_min_value")
    if limit > maximum:
        raise _error(400, f"Invalid 'limit': integer above maximum value. Expected a value <= {maximum}, but got "
                     f"{limit} instead.", param="limit", code="integer_above_max_value")
    start = 0
    after = request.query.get("after")
    if after:
        start = next((i + 1 for i, item in enumerate(items) if item["id"] == after), len(items))
    page = [dict(item) for item in items[start : start + limit]]
    return {"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None, "has_more": len(items) > start + limit}


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def _multipart(request: FakeRequest) -> dict[str, tuple[str | None, bytes]]:
    """Form fields of a multipart body: name -> (filename, bytes)."""
    content_type = request.header("content-type", "") or ""
    if not content_type.startswith("multipart/form-data"):
        raise _error(400, "expected a multipart/form-data body")
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + request.body
    )
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        fields[str(name)] = (part.get_filename(), payload if isinstance(payload, bytes) else b"")
    return fields
