"""OpenAI: chat completions answered inside the call (``openai-chat``) and Batch API jobs (``openai-batch-job``).

Both use the official SDK's ``AsyncOpenAI`` on the host's event loop, against api.openai.com or any
OpenAI-compatible endpoint (a vLLM server, Azure OpenAI with an API version). The SDK is imported on first
use, not here, so the host starts fast.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
from types import ModuleType
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from flyteconnectors.core import (
    AsyncConnector,
    CallContext,
    ConnectorSettings,
    InvalidTaskConfig,
    JobMeta,
    JobNotFound,
    LogLink,
    Phase,
    Resource,
    StateMap,
    SyncConnector,
    TaskConfig,
    TaskContext,
)

SECRETS = ("openai_api_key", "openai_organization", "openai_project")
_SERVICE = "flyteconnectors.openai._service"
OPENAI_API = "https://api.openai.com/v1"
#: Metadata key that tags a batch with the attempt that created it, so a retried create adopts it.
IDEMPOTENCY_TAG = "flyte_idempotency_key"


class OpenAISettings(ConnectorSettings):
    """Host-level settings: ``FLYTECONNECTORS_OPENAI_<FIELD>``."""

    #: Where requests go unless a task names another allowed endpoint (a vLLM server, the local fake).
    base_url: str = OPENAI_API
    #: Set for Azure OpenAI: ``base_url`` is then the resource endpoint (https://<name>.openai.azure.com).
    api_version: str = ""
    #: Comma-separated endpoints a task's ``base_url`` may name ("*": any). Others are refused, because the
    #: host would send its API key there.
    allowed_base_urls: str = ""
    #: Upper bound on one SDK request when the call itself has no deadline (local runs).
    request_timeout: float = 600.0
    #: Connections one client opens to the endpoint at most; further requests wait for a free one (within their
    #: deadline). At ~50 ms per request, 64 connections serve over 1,000 requests/s.
    max_connections: int = 64
    #: Upper bound on one page of the listings create shares to find an earlier try's batch or file. Concurrent
    #: creates wait for one listing, so a hung page must fail fast enough for all of them to retry a fresh one
    #: inside Propeller's deadline (a page of 100 normally comes back well under a second).
    list_page_timeout: float = 3.0
    #: How many of the newest batches (and batch input files) one listing reads, at most, when create looks for
    #: what an earlier try of its attempt made.
    adopt_scan_limit: int = 1000
    #: How long after an earlier try of the same attempt a retried create still finds what that try made, in
    #: seconds. Propeller repeats a create within seconds or minutes (when it could not record the answer of
    #: the first); older items are not listed.
    adopt_window: float = 86400.0
    #: Where batch result files go instead of under the task's output prefix (a bucket URI or a local folder).
    results_prefix: str = ""


# ============================================================================================== config
class Message(BaseModel):
    """One chat message. ``content`` may use ``{{ .inputs.<name> }}`` (and ``{{ .prompt }}`` in batches)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Literal["system", "developer", "user", "assistant"]
    content: str


class _Endpoint(TaskConfig):
    #: Another OpenAI-compatible endpoint for this task; the host must allow it (``allowed_base_urls``).
    base_url: str | None = None
    #: Azure OpenAI API version (e.g. "2024-10-21"); ``base_url`` is then the Azure resource endpoint.
    api_version: str | None = None


_RESERVED_PARAMS = {"model", "messages", "response_format", "stream", "n"}


def _check_params(params: dict[str, Any]) -> dict[str, Any]:
    taken = sorted(_RESERVED_PARAMS & set(params))
    if taken:
        raise ValueError(f"{', '.join(taken)} cannot be set here (use the config's own fields; streaming and "
                         "n > 1 are not supported)")
    return params


class ChatConfig(_Endpoint):
    model: str = Field(min_length=1)
    messages: tuple[Message, ...] = Field(min_length=1)
    #: Any other chat.completions parameter: temperature, max_completion_tokens, seed, reasoning_effort, ...
    params: dict[str, Any] = Field(default_factory=dict)
    #: A JSON schema for structured output; its top-level properties fill the outputs of the same names.
    response_schema: dict[str, Any] | None = None
    schema_name: str = Field(default="result", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    strict: bool = True
    #: Upper bound in seconds on the request (the sync call's deadline always applies as well).
    timeout: float | None = Field(default=None, gt=0)

    @field_validator("params")
    @classmethod
    def _no_reserved(cls, params: dict[str, Any]) -> dict[str, Any]:
        return _check_params(params)

    @field_validator("response_schema")
    @classmethod
    def _object_schema(cls, schema: dict[str, Any] | None) -> dict[str, Any] | None:
        if schema is not None and schema.get("type") != "object":
            raise ValueError('structured output needs a JSON schema with "type": "object"')
        return schema


class BatchConfig(_Endpoint):
    """A Batch API job. Requests come from the ``input_file`` input (JSONL) or the ``prompts`` input."""

    endpoint: str = "/v1/chat/completions"
    completion_window: str = "24h"
    #: Model and messages of the requests built from ``prompts`` (``{{ .prompt }}`` is each prompt).
    model: str | None = None
    messages: tuple[Message, ...] = (Message(role="user", content="{{ .prompt }}"),)
    params: dict[str, Any] = Field(default_factory=dict)
    #: Extra metadata on the batch (OpenAI allows 16 keys; three are used for the Flyte execution).
    metadata: dict[str, str] = Field(default_factory=dict, max_length=13)

    @field_validator("params")
    @classmethod
    def _no_reserved(cls, params: dict[str, Any]) -> dict[str, Any]:
        return _check_params(params)

    @model_validator(mode="after")
    def _prompts_need_chat(self) -> BatchConfig:
        if self.model is not None and self.endpoint != "/v1/chat/completions":
            raise ValueError("requests are built from prompts only for endpoint /v1/chat/completions")
        return self


# ============================================================================================== job metadata
class BatchMeta(JobMeta):
    #: OpenAI batch ids (``batch_...``); anything else is refused as a malformed handle before the SDK sees it.
    batch_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,128}$")
    base_url: str = Field(pattern=r"^https?://[^\s/]+")
    api_version: str = ""


# ============================================================================================== state map
#: Every Batch status of openai 3.57 (types/batch.py). "cancelling" is not terminal: the batch may still
#: write partial results for up to 10 minutes before it is "cancelled".
BATCH_STATES = StateMap({
    "validating": Phase.INITIALIZING,
    "in_progress": Phase.RUNNING,
    "finalizing": Phase.RUNNING,
    "completed": Phase.SUCCEEDED,
    "failed": Phase.FAILED,
    "expired": Phase.FAILED,
    "cancelling": Phase.RUNNING,
    "cancelled": Phase.ABORTED,
}, service="openai batch")


# ============================================================================================== chat
class OpenAIChat(SyncConnector[ChatConfig]):
    """One chat completion, answered inside the ExecuteTaskSync call."""

    name = "OpenAI chat completion"
    task_type = "openai-chat"
    settings_model = OpenAISettings

    def warm_up(self) -> None:
        importlib.import_module(_SERVICE)  # openai takes 1-3 s to import
    secret_names = SECRETS

    async def do(self, task: TaskContext[ChatConfig]) -> Resource:
        svc = await _sdk()
        config = task.config
        base_url, api_version = svc.endpoint(self.settings, config.base_url, config.api_version)
        messages = [
            {"role": m.role, "content": svc.render(m.content, task.inputs, f"messages[{i}].content")}
            for i, m in enumerate(config.messages)
        ]
        extra: dict[str, Any] = dict(config.params)
        if config.response_schema is not None:
            extra["response_format"] = {"type": "json_schema", "json_schema": {
                "name": config.schema_name, "schema": config.response_schema, "strict": config.strict}}
        client = svc.client(self, task, base_url, api_version)
        timeout = task.timeout(config.timeout or self.settings.request_timeout)
        completion = await svc.call("complete the chat", lambda: client.chat.completions.create(
            model=config.model, messages=messages, timeout=timeout, **extra))  # type: ignore[arg-type]

        choice = completion.choices[0] if completion.choices else None
        finish = choice.finish_reason if choice else "none"
        info = {"model": completion.model, "finish_reason": finish,
                "usage": completion.usage.model_dump() if completion.usage else {}}
        content = choice.message.content if choice else None
        if not content:
            return Resource.failed(_empty_reply(choice), custom_info=info)
        if config.response_schema is None:
            return Resource.succeeded({name: content for name in task.output_names}, custom_info=info)
        return _structured(content, finish, task.output_names, info)


def _empty_reply(choice: Any) -> str:
    if choice is None:
        return "the model returned no choices"
    if choice.message.refusal:
        return f"the model refused to answer: {choice.message.refusal}"
    if choice.finish_reason == "length":
        return ("the model returned no content before reaching its token limit (finish_reason=length); "
                "raise params.max_completion_tokens")
    if choice.message.tool_calls:
        return "the model answered with tool calls, not content; this task type does not run tools"
    return f"the model returned empty content (finish_reason={choice.finish_reason})"


def _structured(content: str, finish: str, output_names: tuple[str, ...], info: dict[str, Any]) -> Resource:
    try:
        value = json.loads(content)
    except ValueError as err:
        cut = " (the reply was cut off: finish_reason=length; raise params.max_completion_tokens)" \
            if finish == "length" else ""
        return Resource.failed(f"the model's reply is not the JSON the schema asks for{cut}: {err}",
                               custom_info=info)
    if not isinstance(value, dict):
        return Resource.failed(f"the model's reply is JSON but not an object: {content[:200]}", custom_info=info)
    if len(output_names) == 1 and output_names[0] not in value:
        return Resource.succeeded({output_names[0]: value}, custom_info=info)
    missing = [name for name in output_names if name not in value]
    if missing:
        return Resource.failed(f"the model's reply has no field for output(s) {', '.join(missing)} "
                               f"(fields: {', '.join(value) or 'none'})", custom_info=info)
    return Resource.succeeded({name: value[name] for name in output_names}, custom_info=info)


# ============================================================================================== batch
class OpenAIBatch(AsyncConnector[BatchConfig, BatchMeta]):
    """A Batch API job: upload the requests, create the batch, poll it, download its result files."""

    name = "OpenAI batch"
    task_type = "openai-batch-job"
    settings_model = OpenAISettings

    def warm_up(self) -> None:
        importlib.import_module(_SERVICE)  # openai takes 1-3 s to import
    secret_names = SECRETS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._downloads: Any = None
        self._recent: dict[Any, Any] = {}  # (kind, account) -> _service.Recent

    async def create(self, task: TaskContext[BatchConfig]) -> BatchMeta:
        svc = await _sdk()
        config = task.config
        base_url, api_version = svc.endpoint(self.settings, config.base_url, config.api_version)
        client = svc.client(self, task, base_url, api_version)
        account = svc.account(task, base_url, api_version)
        key = task.idempotency_key
        known = self._batches(account).known(key)
        if known is not None:  # made by this host: a retry whose answer was lost on its way to Propeller
            return BatchMeta(batch_id=str(known["id"]), base_url=base_url, api_version=api_version)
        requests = await _requests_jsonl(task)
        filename = f"{key}.jsonl"
        # Both lookups at once: a first create (the usual case) needs both answers, and each is one short listing.
        found, existing = await asyncio.gather(self._find_batch(client, key, task, account),
                                               self._find_file(client, filename, requests, task, account))
        if found is not None:
            return BatchMeta(batch_id=found, base_url=base_url, api_version=api_version)
        file_id = existing or await self._upload(client, filename, requests, task, account)
        metadata = {**config.metadata, IDEMPOTENCY_TAG: key,
                    "flyte_execution": task.identity.execution[:512], "flyte_node": task.identity.node_id[:512]}
        batch = await svc.call("create the batch", lambda: client.batches.create(
            input_file_id=file_id, endpoint=config.endpoint,  # type: ignore[arg-type]
            completion_window=config.completion_window,  # type: ignore[arg-type]
            metadata=metadata, timeout=task.timeout(self.settings.request_timeout)))
        self._batches(account).remember(key, {"id": batch.id, "created_at": batch.created_at})
        return BatchMeta(batch_id=batch.id, base_url=base_url, api_version=api_version)

    async def get(self, job: BatchMeta, ctx: CallContext) -> Resource:
        svc = await _sdk()
        client = self._client(job, ctx)
        batch = await svc.call(f"look up batch {job.batch_id}", lambda: client.batches.retrieve(
            job.batch_id, timeout=ctx.timeout(self.settings.request_timeout)), not_found=JobNotFound)
        counts = batch.request_counts
        tally = {"total": counts.total, "completed": counts.completed, "failed": counts.failed} if counts else {}
        info = {"batch_id": batch.id, "request_counts": tally}
        links = [LogLink("OpenAI batch", f"https://platform.openai.com/batches/{batch.id}")] \
            if job.base_url == OPENAI_API else []
        message = _progress(batch.status, tally)
        if batch.status == "failed":
            message = f"the batch failed: {_batch_errors(batch)}"
        elif batch.status == "expired":
            message = f"the batch expired before it finished ({message})"
        outputs = None
        if batch.status == "completed":
            budget = ctx.remaining()
            if budget is not None:
                budget -= min(0.5, budget / 5)
            if self._downloads is None:
                self._downloads = svc.Downloads()
            prefix = self.settings.results_prefix or ctx.output_prefix
            done, result = await self._downloads.fetch(
                (batch.id, prefix), lambda: self._collect(client, batch, prefix), budget)
            if not done:
                return Resource.running(f"the batch completed; downloading its result files ({message})",
                                        log_links=links, custom_info=info)
            outputs, summary = result  # type: ignore[misc]
            outputs = {**outputs, "request_counts": tally, "batch_id": batch.id}
            if summary:
                message = f"{message}; failed requests: {summary}"
        return BATCH_STATES.resource(batch.status, message, outputs=outputs, log_links=links, custom_info=info)

    async def delete(self, job: BatchMeta, ctx: CallContext) -> None:
        svc = await _sdk()
        client = self._client(job, ctx)
        try:
            await client.batches.cancel(job.batch_id, timeout=ctx.timeout(self.settings.request_timeout))
        except svc.openai.ConflictError:
            return  # the batch already finished: nothing left to cancel
        except svc.openai.OpenAIError as err:
            raise svc.service_error(err, f"cancel batch {job.batch_id}", not_found=JobNotFound) from None

    # ------------------------------------------------------------------------------------------ helpers
    def _client(self, job: BatchMeta, ctx: CallContext) -> Any:
        svc = sys.modules[_SERVICE]  # loaded by the caller
        # resource_meta comes back from Propeller: the endpoint in it must still be one this host allows.
        base_url, api_version = svc.endpoint(self.settings, job.base_url, job.api_version)
        return svc.client(self, ctx, base_url, api_version)

    def _batches(self, account: Any) -> Any:
        return self._index("batches", account, lambda b: (b.get("metadata") or {}).get(IDEMPOTENCY_TAG))

    def _files(self, account: Any) -> Any:
        return self._index("batch input files", account, lambda f: f.get("filename"),
                           keep=("id", "created_at", "bytes", "status"))

    def _index(self, what: str, account: Any, name_of: Any, keep: tuple[str, ...] = ("id", "created_at")) -> Any:
        index = self._recent.get((what, account))
        if index is None:
            svc = sys.modules[_SERVICE]  # loaded by the caller
            index = self._recent.setdefault((what, account), svc.Recent(
                what, name_of, keep, window=self.settings.adopt_window, limit=self.settings.adopt_scan_limit))
        return index

    async def _find_batch(self, client: Any, key: str, ctx: CallContext, account: Any) -> str | None:
        """The batch an earlier try of this create made, if its response was lost."""
        svc = await _sdk()

        def page(after: str | None) -> Any:
            return svc.raw_page("list batches", lambda: client.batches.with_raw_response.list(
                limit=svc.PAGE_SIZE, timeout=ctx.timeout(self.settings.list_page_timeout), **_after(after)))

        found = await self._batches(account).find(key, page)
        return None if found is None else str(found["id"])

    async def _find_file(self, client: Any, filename: str, content: bytes, ctx: CallContext,
                         account: Any) -> str | None:
        """The input file an earlier try of this create uploaded, if it still exists."""
        svc = await _sdk()
        files = self._files(account)

        def page(after: str | None) -> Any:
            return svc.raw_page("list files", lambda: client.files.with_raw_response.list(
                purpose="batch", order="desc", limit=svc.PAGE_SIZE,
                timeout=ctx.timeout(self.settings.list_page_timeout), **_after(after)))

        found = await files.find(filename, page)
        if found is None or found.get("bytes") != len(content) or found.get("status") == "error":
            return None
        try:  # it may have been deleted since a listing showed it
            await client.files.retrieve(str(found["id"]), timeout=ctx.timeout(self.settings.request_timeout))
        except svc.openai.NotFoundError:
            files.forget(filename)
            return None
        except svc.openai.OpenAIError as err:
            raise svc.service_error(err, "look up the batch input file") from None
        return str(found["id"])

    async def _upload(self, client: Any, filename: str, content: bytes, ctx: CallContext, account: Any) -> str:
        svc = await _sdk()
        uploaded = await svc.call("upload the batch input file", lambda: client.files.create(
            file=(filename, content), purpose="batch", timeout=ctx.timeout(self.settings.request_timeout)))
        self._files(account).remember(filename, {"id": uploaded.id, "created_at": uploaded.created_at,
                                                 "bytes": uploaded.bytes, "status": uploaded.status})
        return str(uploaded.id)

    async def _collect(self, client: Any, batch: Any, prefix: str) -> tuple[dict[str, str], str]:
        """Download the output and error files under the task's output prefix; summarise failed requests."""
        svc = await _sdk()
        folder = svc.join(prefix, f"openai-{batch.id}")
        files = {"output_file": (batch.output_file_id, f"{folder}/output.jsonl"),
                 "error_file": (batch.error_file_id, f"{folder}/errors.jsonl")}
        for file_id, uri in files.values():
            if file_id:
                await svc.call(f"download file {file_id}", lambda f=file_id, u=uri: svc.download(
                    client, f, u, self.settings.request_timeout))
            else:  # a FlyteFile output always exists; no errors is an empty file
                await svc.write_empty(uri)
        summary = await asyncio.to_thread(svc.summarize_errors, files["error_file"][1]) \
            if batch.error_file_id else ""
        return {name: uri for name, (_id, uri) in files.items()}, summary


def _after(cursor: str | None) -> dict[str, str]:
    return {"after": cursor} if cursor else {}


def _progress(status: str, tally: dict[str, int]) -> str:
    if not tally.get("total"):
        return status
    return f"{status}: {tally['completed']} of {tally['total']} requests done, {tally['failed']} failed"


def _batch_errors(batch: Any) -> str:
    errors = (batch.errors.data if batch.errors else None) or []
    parts = [f"{e.code or 'error'}{f' (line {e.line})' if e.line else ''}: {e.message}" for e in errors[:5]]
    more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more if parts else "OpenAI gave no reason"


async def _requests_jsonl(task: TaskContext[BatchConfig]) -> bytes:
    """The batch's JSONL requests: the ``input_file`` input as is, or one request per ``prompts`` item."""
    svc = await _sdk()
    config = task.config
    if "input_file" in task.inputs:
        content = await asyncio.to_thread(svc.read_uri, str(task.inputs["input_file"]))
        if not content.strip():
            raise InvalidTaskConfig("inputs.input_file", "the requests file is empty")
        return content
    prompts = task.inputs.get("prompts")
    if prompts is None:
        raise InvalidTaskConfig("inputs", "an openai-batch-job task needs an input named input_file (a JSONL "
                                "FlyteFile of requests) or prompts (list[str])")
    if not isinstance(prompts, list) or not prompts:
        raise InvalidTaskConfig("inputs.prompts", "must be a non-empty list of strings")
    if config.model is None:
        raise InvalidTaskConfig("model", "required when the batch is built from the prompts input")
    others = {k: v for k, v in task.inputs.items() if k != "prompts"}

    def build() -> bytes:
        lines = []
        for index, prompt in enumerate(prompts):
            messages = [{"role": m.role,
                         "content": svc.render(m.content, others, f"messages[{i}].content", str(prompt))}
                        for i, m in enumerate(config.messages)]
            body = {"model": config.model, "messages": messages, **config.params}
            lines.append(json.dumps({"custom_id": f"prompt-{index}", "method": "POST", "url": config.endpoint,
                                     "body": body}))
        return ("\n".join(lines) + "\n").encode()

    # A few prompts take microseconds; thousands would hold the event loop (and every other call) for a while.
    return build() if len(prompts) <= _INLINE_PROMPTS else await asyncio.to_thread(build)


_INLINE_PROMPTS = 200


async def _sdk() -> ModuleType:
    """The helpers module, which imports the openai SDK. That import takes over a second, so the first one
    runs in a thread instead of stalling the event loop (and every other task on the host)."""
    global _LOADED
    if _LOADED is None:
        # Not sys.modules: a module there may still be half-initialised by another call's import in a thread.
        # import_module waits on the import lock until it is complete.
        _LOADED = await asyncio.to_thread(importlib.import_module, _SERVICE)
    return _LOADED


_LOADED: ModuleType | None = None


def __getattr__(name: str) -> Any:
    # CONNECTORS also serves flytekit's task types (flytekit_compat.py subclasses the connectors above). Built on first
    # use, so that either module may be imported first.
    if name == "CONNECTORS":
        from flyteconnectors.openai import flytekit_compat

        globals()[name] = (OpenAIChat, OpenAIBatch, *flytekit_compat.CONNECTORS)
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
