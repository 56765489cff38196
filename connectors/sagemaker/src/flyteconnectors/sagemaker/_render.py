"""Placeholders: task inputs substituted into the string fields of a config, by name only.

Syntax: ``{{ inputs.NAME }}`` for a task input, and ``{{ job_name }}``, ``{{ project }}``, ``{{ domain }}``,
``{{ execution }}``, ``{{ node_id }}``, ``{{ attempt }}`` for the execution. Nothing is evaluated: a placeholder is
a name looked up in a table, and anything else between ``{{`` and ``}}`` is an error naming the field.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from typing import Any, TypeVar

from flyteconnectors.core import InvalidTaskConfig, TaskConfig, TaskContext

PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}")
_INPUT = re.compile(r"inputs\.([A-Za-z_][A-Za-z0-9_]*)")
BUILTINS = ("job_name", "project", "domain", "execution", "node_id", "attempt")

C = TypeVar("C", bound=TaskConfig)


def as_text(value: Any) -> str:
    """How an input value reads inside a string: files and directories as their URI, lists and dicts as JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return str(value.total_seconds())
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, default=str)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def render_text(text: str, inputs: Mapping[str, Any], builtins: Mapping[str, str], field: str) -> str:
    def substitute(match: re.Match[str]) -> str:
        expr = match.group(1).strip()
        found = _INPUT.fullmatch(expr)
        if found:
            name = found.group(1)
            if name not in inputs:
                known = ", ".join(sorted(inputs)) or "none"
                raise InvalidTaskConfig(field, f"placeholder {{{{{expr}}}}} names no task input (inputs: {known})")
            value = inputs[name]
            if value is None:
                raise InvalidTaskConfig(field, f"placeholder {{{{{expr}}}}}: input {name!r} is None")
            return as_text(value)
        if expr in builtins:
            return builtins[expr]
        raise InvalidTaskConfig(
            field, f"unknown placeholder {{{{{expr}}}}}; use {{{{inputs.NAME}}}} or one of "
                   + ", ".join(f"{{{{{b}}}}}" for b in BUILTINS)
        )

    return PLACEHOLDER.sub(substitute, text)


def render_value(value: Any, inputs: Mapping[str, Any], builtins: Mapping[str, str], field: str) -> Any:
    if isinstance(value, str):
        return render_text(value, inputs, builtins, field) if "{{" in value else value
    if isinstance(value, dict):
        return {k: render_value(v, inputs, builtins, f"{field}.{k}" if field else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [render_value(v, inputs, builtins, f"{field}[{i}]") for i, v in enumerate(value)]
    return value


def render_config(task: TaskContext[C], job_name: str) -> C:
    """The task's config with every placeholder in its string fields replaced, validated again."""
    ident = task.identity
    builtins = {
        "job_name": job_name, "project": ident.project, "domain": ident.domain, "execution": ident.execution,
        "node_id": ident.node_id, "attempt": str(ident.retry_attempt),
    }
    config = task.config
    data = config.model_dump(mode="python")
    rendered = render_value(data, task.inputs, builtins, "")
    if rendered == data:
        return config
    return type(config).parse(rendered)  # type: ignore[return-value]
