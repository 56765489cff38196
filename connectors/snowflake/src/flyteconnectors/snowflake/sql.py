"""Query templates: named placeholders become Snowflake server-side bind parameters, never formatted text.

A template names its inputs as ``:name``, or in flytekit's spellings ``{{ .inputs.name }}`` and ``%(name)s``.
Each becomes ``?`` and the values travel separately as qmark bindings, so an input can never change the
statement. A quoted ``'{{ .inputs.name }}'`` meant "this value as a string literal": a bound value says the same.
Placeholders are only recognised outside string literals, quoted identifiers, ``$$`` blocks and comments, and
not in Snowflake's ``::`` casts or ``col:path`` semi-structured access.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flyteconnectors.core import InvalidTaskConfig

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PYFORMAT = re.compile(r"%\(([A-Za-z_][A-Za-z0-9_]*)\)s")
_FLYTEKIT = re.compile(r"(')?\{\{\s*\.inputs\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}(?(1)')")
#: A ``:`` preceded by one of these is a path or cast (``v:field``, ``x::int``), not a placeholder.
_NOT_BEFORE_PLACEHOLDER = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_$\"]):.")


@dataclass(frozen=True)
class Statement:
    """A template rendered for the driver: qmark SQL, the bound values in order, and its statement count."""

    sql: str
    params: tuple[Any, ...]
    statements: int


def render(template: str, inputs: Mapping[str, Any]) -> Statement:
    """Replace named placeholders with ``?`` and collect their values as bind parameters.

    Raises InvalidTaskConfig naming ``query`` for a placeholder without an input, a positional ``?`` (whose
    meaning would depend on input order), or an input value that cannot be bound.
    """
    out: list[str] = []
    params: list[Any] = []
    statements = 0
    pending = False  # text seen since the last top-level ';'
    i, n = 0, len(template)
    while i < n:
        ch = template[i]
        match = _FLYTEKIT.match(template, i) if ch in "{'" else None
        if match:
            params.append(_bind_value(match.group(2), inputs))
            out.append("?")
            pending = True
            i = match.end()
            continue
        skip = _skip_quoted(template, i)
        if skip > i:
            out.append(template[i:skip])
            pending = True
            i = skip
            continue
        if template.startswith("--", i) or template.startswith("//", i):
            end = template.find("\n", i)
            end = n if end < 0 else end
            out.append(template[i:end])
            i = end
            continue
        if template.startswith("/*", i):
            end = template.find("*/", i + 2)
            end = n if end < 0 else end + 2
            out.append(template[i:end])
            i = end
            continue
        if ch == ";":
            statements += pending
            pending = False
            out.append(ch)
            i += 1
            continue
        if ch == "?":
            raise InvalidTaskConfig(
                "query", "positional '?' placeholders are not supported; name the input instead (:name)"
            )
        if ch == "%":
            match = _PYFORMAT.match(template, i)
            if match:
                params.append(_bind_value(match.group(1), inputs))
                out.append("?")
                pending = True
                i = match.end()
                continue
        if ch == ":" and (i == 0 or template[i - 1] not in _NOT_BEFORE_PLACEHOLDER):
            match = _NAME.match(template, i + 1)
            if match:
                params.append(_bind_value(match.group(0), inputs))
                out.append("?")
                pending = True
                i = match.end()
                continue
        if not ch.isspace():
            pending = True
        out.append(ch)
        i += 1
    statements += pending
    return Statement("".join(out).strip(), tuple(params), statements)


def _skip_quoted(text: str, i: int) -> int:
    """End index of the string literal, quoted identifier or $$ block starting at ``i`` (``i`` if none)."""
    ch = text[i]
    if text.startswith("$$", i):
        end = text.find("$$", i + 2)
        return len(text) if end < 0 else end + 2
    if ch not in "'\"":
        return i
    j = i + 1
    while j < len(text):
        if text[j] == "\\" and ch == "'":
            j += 2
            continue
        if text[j] == ch:
            if j + 1 < len(text) and text[j + 1] == ch:  # doubled quote
                j += 2
                continue
            return j + 1
        j += 1
    return len(text)


def _bind_value(name: str, inputs: Mapping[str, Any]) -> Any:
    if name not in inputs:
        known = ", ".join(sorted(inputs)) or "none"
        raise InvalidTaskConfig("query", f"placeholder :{name} has no input of that name (inputs: {known})")
    value = inputs[name]
    if value is None or isinstance(value, (bool, int, float, str, bytes, decimal.Decimal, dt.date, dt.time,
                                           dt.timedelta)):
        return value
    if isinstance(value, (list, dict)):
        # A list would be read by the driver as an array binding (one row per element): send JSON text instead,
        # for PARSE_JSON(:name) in the query.
        return json.dumps(value, default=str)
    raise InvalidTaskConfig(f"inputs.{name}", f"a {type(value).__name__} cannot be a bind parameter")
