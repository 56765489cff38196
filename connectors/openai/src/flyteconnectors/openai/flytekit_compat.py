"""flytekit's OpenAI task types (flytekitplugins-openai), served by our connectors.

Workflows registered with flytekit's ``ChatGPTTask`` (``chatgpt`` v0, sync) and ``BatchEndpointTask``
(``openai-batch`` v0) keep working when this package replaces flytekitplugins-openai on the connector host.

flytekit's layouts::

    chatgpt:       custom = {"openai_organization": ..., "chatgpt_config": {"model": ..., <chat.completions params>}}
                   input ``message: str``, output ``o0: str``
    openai-batch:  custom = {"openai_organization": ..., "config": {<batches.create params>}}
                   input ``input_file_id: str``, output ``result: dict`` (the Batch object)

Both read the API key from the secret flytekit used (``FLYTE_OPENAI_API_KEY``) when ours (``openai_api_key``) is
not set, and the organization from the task as flytekit did.

What changes on purpose: a system prompt in ``chatgpt_config["messages"]`` is kept (flytekit replaced the
messages with the input message); the completion is bounded by the call's deadline instead of a fixed 10 s
race against it; an empty reply fails with the reason instead of an ``o0`` of None; a batch that is
``cancelling`` keeps running until it is ``cancelled`` (flytekit failed it at once); unknown batch statuses are
non-terminal with a message instead of a gRPC error; a retried create adopts the batch the first try made.

No SDK is imported here.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from pydantic import field_validator

from flyteconnectors.core import CallContext, InvalidTaskConfig, JobNotFound, LogLink, Resource, TaskContext
from flyteconnectors.core.config import TaskConfig
from flyteconnectors.openai.connector import (
    BATCH_STATES,
    IDEMPOTENCY_TAG,
    OPENAI_API,
    BatchConfig,
    BatchMeta,
    ChatConfig,
    OpenAIBatch,
    OpenAIChat,
    _batch_errors,
    _progress,
    _sdk,
)

#: The secret flytekit's OpenAI connectors read, used when ``openai_api_key`` is not set.
FLYTEKIT_API_KEY = "FLYTE_OPENAI_API_KEY"
CtxT = TypeVar("CtxT", bound=CallContext)


def _with_flytekit_credentials(ctx: CtxT, organization: str | None) -> CtxT:
    """``ctx`` whose secrets also answer flytekit's secret name and the task's organization."""
    overrides: dict[str, str] = {}
    if ctx.secrets.get("openai_api_key") is None:
        key = ctx.secrets.get(FLYTEKIT_API_KEY)
        if key is not None:
            overrides["openai_api_key"] = key
    if organization:
        overrides["openai_organization"] = organization
    if not overrides:
        return ctx
    return dataclasses.replace(ctx, secrets=ctx.secrets.with_overrides(overrides))


def _organization(custom: dict[str, Any]) -> str | None:
    value = custom.get("openai_organization")
    if value is not None and not isinstance(value, str):
        raise InvalidTaskConfig("custom.openai_organization", "must be a string")
    return value or None


# ============================================================================================== chatgpt
class FlytekitChatConfig(ChatConfig):
    """:class:`ChatConfig` built from flytekit's ``ChatGPTTask`` custom layout."""

    openai_organization: str | None = None

    @field_validator("params")
    @classmethod
    def _no_reserved(cls, params: dict[str, Any]) -> dict[str, Any]:
        # flytekit passed chatgpt_config to chat.completions.create as is and read choices[0].message.content, so
        # response_format and n keep their meaning; only a stream has no content to read.
        if params.get("stream"):
            raise ValueError("stream cannot be set: the task's output is the whole reply")
        return {k: v for k, v in params.items() if k != "stream"}

    @classmethod
    def from_template_parts(
        cls, custom: dict[str, Any] | None, config: dict[str, str] | None = None, sql: str | None = None
    ) -> TaskConfig:
        custom = dict(custom or {})
        chat = custom.pop("chatgpt_config", None)
        organization = _organization(custom)
        custom.pop("openai_organization", None)
        if custom:
            raise InvalidTaskConfig(f"custom.{sorted(custom)[0]}", "not part of flytekit's ChatGPTTask layout")
        if not isinstance(chat, dict) or not chat.get("model"):
            raise InvalidTaskConfig("custom.chatgpt_config.model", "flytekit's ChatGPTTask needs chatgpt_config "
                                    "with a model")
        params = dict(chat)
        model = params.pop("model")
        earlier = params.pop("messages", None) or []
        if not isinstance(earlier, list):
            raise InvalidTaskConfig("custom.chatgpt_config.messages", "must be a list of messages")
        # The task's input is the user message, after any system prompt the config carries.
        messages = [*earlier, {"role": "user", "content": "{{ .inputs.message }}"}]
        data = {"model": model, "messages": messages, "params": params, "openai_organization": organization}
        return super().from_template_parts(data, None, sql)


class FlytekitChatGPT(OpenAIChat):
    """Serves flytekit's ``chatgpt`` v0 (sync) through :class:`OpenAIChat`; the reply is the ``o0`` output."""

    name = "OpenAI chat completion (flytekit task type)"
    task_type = "chatgpt"
    task_version = 0
    config_model = FlytekitChatConfig
    secret_names = (*OpenAIChat.secret_names, FLYTEKIT_API_KEY)

    async def do(self, task: TaskContext[ChatConfig]) -> Resource:
        organization = getattr(task.config, "openai_organization", None)
        return await super().do(_with_flytekit_credentials(task, organization))


# ============================================================================================== openai-batch
class FlytekitBatchConfig(BatchConfig):
    """:class:`BatchConfig` built from flytekit's ``BatchEndpointTask`` custom layout."""

    openai_organization: str | None = None

    @classmethod
    def from_template_parts(
        cls, custom: dict[str, Any] | None, config: dict[str, str] | None = None, sql: str | None = None
    ) -> TaskConfig:
        custom = dict(custom or {})
        batch = custom.pop("config", None) or {}
        organization = _organization(custom)
        custom.pop("openai_organization", None)
        if custom:
            raise InvalidTaskConfig(f"custom.{sorted(custom)[0]}", "not part of flytekit's BatchEndpointTask layout")
        if not isinstance(batch, dict):
            raise InvalidTaskConfig("custom.config", "must be a map of batches.create parameters")
        data: dict[str, Any] = {"openai_organization": organization}
        for key in ("endpoint", "completion_window", "metadata"):
            if batch.get(key) is not None:
                data[key] = batch[key]
        unknown = sorted(set(batch) - {"endpoint", "completion_window", "metadata"})
        if unknown:
            why = ("the file comes from the task's input_file_id" if unknown[0] == "input_file_id"
                   else "this connector does not send it")
            raise InvalidTaskConfig(f"custom.config.{unknown[0]}", f"batches.create parameter not supported: {why}")
        return super().from_template_parts(data, None, sql)


class FlytekitBatchMeta(BatchMeta):
    organization: str | None = None


class FlytekitOpenAIBatch(OpenAIBatch):
    """Serves flytekit's ``openai-batch`` v0: a batch over an uploaded file; the Batch object is ``result``."""

    name = "OpenAI batch (flytekit task type)"
    task_type = "openai-batch"
    task_version = 0
    config_model = FlytekitBatchConfig
    meta_model = FlytekitBatchMeta
    secret_names = (*OpenAIBatch.secret_names, FLYTEKIT_API_KEY)

    async def create(self, task: TaskContext[BatchConfig]) -> FlytekitBatchMeta:  # type: ignore[override]
        svc = await _sdk()
        config = task.config
        organization = getattr(config, "openai_organization", None)
        task = _with_flytekit_credentials(task, organization)
        file_id = task.inputs.get("input_file_id")
        if not isinstance(file_id, str) or not file_id.strip():
            raise InvalidTaskConfig("inputs.input_file_id", "the id of a file uploaded with purpose 'batch' is "
                                    "required (flytekit's UploadJSONLFileTask returns it)")
        base_url, api_version = svc.endpoint(self.settings, config.base_url, config.api_version)
        client = svc.client(self, task, base_url, api_version)
        key = task.idempotency_key
        account = svc.account(task, base_url, api_version)
        found = await self._find_batch(client, key, task, account)
        if found is None:
            metadata = {**config.metadata, IDEMPOTENCY_TAG: key,
                        "flyte_execution": task.identity.execution[:512], "flyte_node": task.identity.node_id[:512]}
            batch = await svc.call("create the batch", lambda: client.batches.create(
                input_file_id=file_id.strip(), endpoint=config.endpoint,  # type: ignore[arg-type]
                completion_window=config.completion_window,  # type: ignore[arg-type]
                metadata=metadata, timeout=task.timeout(self.settings.request_timeout)))
            self._batches(account).remember(key, {"id": batch.id, "created_at": batch.created_at})
            found = str(batch.id)
        return FlytekitBatchMeta(batch_id=found, base_url=base_url, api_version=api_version, organization=organization)

    async def get(self, job: BatchMeta, ctx: CallContext) -> Resource:
        svc = await _sdk()
        ctx = _with_flytekit_credentials(ctx, getattr(job, "organization", None))
        client = self._client(job, ctx)
        batch = await svc.call(f"look up batch {job.batch_id}", lambda: client.batches.retrieve(
            job.batch_id, timeout=ctx.timeout(self.settings.request_timeout)), not_found=JobNotFound)
        counts = batch.request_counts
        tally = {"total": counts.total, "completed": counts.completed, "failed": counts.failed} if counts else {}
        links = [LogLink("OpenAI batch", f"https://platform.openai.com/batches/{batch.id}")] \
            if job.base_url == OPENAI_API else []
        message = _progress(batch.status, tally)
        if batch.status == "failed":
            message = f"the batch failed: {_batch_errors(batch)}"
        elif batch.status == "expired":
            message = f"the batch expired before it finished ({message})"
        # flytekit's output: the Batch object (output_file_id / error_file_id for its download task).
        outputs = {"result": batch.to_dict()} if batch.status == "completed" else None
        return BATCH_STATES.resource(batch.status, message, outputs=outputs, log_links=links,
                                     custom_info={"batch_id": batch.id, "request_counts": tally})

    async def delete(self, job: BatchMeta, ctx: CallContext) -> None:
        await super().delete(job, _with_flytekit_credentials(ctx, getattr(job, "organization", None)))


CONNECTORS = (FlytekitChatGPT, FlytekitOpenAIBatch)
