"""flytekit task types for OpenAI: :class:`OpenAIChatTask` (answered in the call) and :class:`OpenAIBatchTask`.

Both are config-only connector tasks: ``pyflyte register`` stores their config in ``TaskTemplate.custom`` and
the connector host runs them; ``pyflyte run`` runs them in-process through the same connector code.
This module imports flytekit; the host never imports it.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from flytekit.types.file import FlyteFile

from flyteconnectors.core.local import ConnectorTask
from flyteconnectors.openai.connector import BatchConfig, ChatConfig, Message, OpenAIBatch, OpenAIChat

MessageSpec = Message | Mapping[str, str]

#: What an OpenAIBatchTask returns unless told otherwise.
BATCH_OUTPUTS: dict[str, Any] = {"output_file": FlyteFile, "error_file": FlyteFile,
                                 "request_counts": dict[str, int], "batch_id": str}


class OpenAIChatTask(ConnectorTask):
    """One chat completion. Messages may use ``{{ .inputs.<name> }}``; every message is sent as written.

    Without a schema the reply text fills the task's output(s). With ``response_schema`` (a JSON schema dict,
    or ``"outputs"`` to derive one from the output types) the reply is structured JSON whose top-level fields
    fill the outputs of the same names.
    """

    def __init__(
        self,
        name: str,
        *,
        model: str,
        messages: Sequence[MessageSpec] | None = None,
        system: str | None = None,
        user: str | None = None,
        inputs: dict[str, type] | None = None,
        outputs: dict[str, type] | None = None,
        params: Mapping[str, Any] | None = None,
        response_schema: Mapping[str, Any] | str | None = None,
        request_timeout: float | None = None,
        base_url: str | None = None,
        api_version: str | None = None,
        **task_kwargs: Any,
    ) -> None:
        outputs = {"answer": str} if outputs is None else outputs
        schema = schema_for_outputs(outputs) if response_schema == "outputs" else response_schema
        if schema is None and len(outputs) > 1:
            raise TypeError(f"{name}: a reply without a response_schema fills one output, not {len(outputs)}; "
                            'pass response_schema="outputs" for structured output')
        config = ChatConfig.parse({
            "model": model,
            "messages": _messages(messages, system, user),
            "params": dict(params or {}),
            "response_schema": dict(schema) if isinstance(schema, Mapping) else None,
            "timeout": request_timeout,
            "base_url": base_url,
            "api_version": api_version,
        })
        super().__init__(name=name, connector=OpenAIChat, config=config, inputs=inputs or {}, outputs=outputs,
                         **task_kwargs)


class OpenAIBatchTask(ConnectorTask):
    """A Batch API job over the ``input_file`` input (a JSONL FlyteFile of requests) or the ``prompts`` input.

    For prompts, each request is ``messages`` (default: the prompt as the user message) with ``{{ .prompt }}``
    replaced by the prompt. The outputs are the output and error files (FlyteFiles), the request counts and
    the batch id; declare fewer to keep fewer.
    """

    def __init__(
        self,
        name: str,
        *,
        model: str | None = None,
        messages: Sequence[MessageSpec] | None = None,
        system: str | None = None,
        params: Mapping[str, Any] | None = None,
        endpoint: str = "/v1/chat/completions",
        metadata: Mapping[str, str] | None = None,
        inputs: dict[str, type] | None = None,
        outputs: dict[str, type] | None = None,
        base_url: str | None = None,
        api_version: str | None = None,
        **task_kwargs: Any,
    ) -> None:
        inputs = {"prompts": list[str]} if inputs is None else inputs
        if "input_file" not in inputs and "prompts" not in inputs:
            raise TypeError(f"{name}: an OpenAI batch needs an input named input_file (FlyteFile) or prompts "
                            "(list[str])")
        data: dict[str, Any] = {"endpoint": endpoint, "model": model, "params": dict(params or {}),
                                "metadata": dict(metadata or {}), "base_url": base_url, "api_version": api_version}
        if messages is not None or system is not None:
            data["messages"] = _messages(messages, system, "{{ .prompt }}" if messages is None else None)
        super().__init__(name=name, connector=OpenAIBatch, config=BatchConfig.parse(data), inputs=inputs,
                         outputs=dict(BATCH_OUTPUTS) if outputs is None else outputs, **task_kwargs)


def _messages(messages: Sequence[MessageSpec] | None, system: str | None, user: str | None) -> list[dict[str, str]]:
    out = [dict(m.model_dump() if isinstance(m, Message) else m) for m in messages or ()]
    if system is not None:
        out.insert(0, {"role": "system", "content": system})
    if user is not None:
        out.append({"role": "user", "content": user})
    return out


_JSON_TYPES: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}


def schema_for_outputs(outputs: Mapping[str, Any]) -> dict[str, Any]:
    """A strict JSON schema whose properties are the outputs (str, int, float, bool, lists, dataclasses)."""
    return _object_schema({name: _schema(tp, name) for name, tp in outputs.items()})


def _object_schema(properties: dict[str, Any]) -> dict[str, Any]:
    # Structured outputs in strict mode require every property and no others.
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


def _schema(tp: Any, where: str) -> dict[str, Any]:
    if tp in _JSON_TYPES:
        return {"type": _JSON_TYPES[tp]}
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is list:
        return {"type": "array", "items": _schema(args[0], f"{where}[]")}
    if dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        return _object_schema({f.name: _schema(hints[f.name], f"{where}.{f.name}") for f in dataclasses.fields(tp)})
    raise TypeError(f"output {where}: no JSON schema for {tp!r}; pass response_schema explicitly")
