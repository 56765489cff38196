"""SQL query templates, shared by every SQL connector: input placeholders and line comments.

flytekit writes a query input as ``{{ .inputs.name }}``, often quoted (``'{{ .inputs.day }}'`` meant "this
value as a string literal"). A connector never pastes values into SQL: it turns each placeholder into its
service's parameter marker (``@name`` for BigQuery, ``:name`` for Databricks, ``?`` for Snowflake) and sends the
values as parameters. A quoted placeholder becomes a bare marker, since a bound value says the same.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

#: ``{{ .inputs.name }}``, optionally wrapped in matching single or double quotes.
INPUT_PLACEHOLDER = re.compile(r"""(['"]?)\{\{\s*\.inputs\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}\1""")
_LITERALS = re.compile(r"'(?:[^'\\]|\\.|'')*'|\$\$.*?\$\$", re.DOTALL)


def replace_input_placeholders(query: str, marker: Callable[[str], str]) -> str:
    """Each ``{{ .inputs.name }}`` (quoted or not) as ``marker(name)``."""
    return INPUT_PLACEHOLDER.sub(lambda m: marker(m.group(2)), query)


def placeholder_names(query: str) -> list[str]:
    """The input names a template refers to, in order of first use."""
    return list(dict.fromkeys(m.group(2) for m in INPUT_PLACEHOLDER.finditer(query)))


def find_line_comment(query: str, tokens: Iterable[str] = ("--",)) -> str | None:
    """The first line-comment token used outside string literals, or None.

    flytekit joins a SQL task's template into one line before registering it, so a line comment would comment
    out everything after it; SQL task types refuse such templates and ask for ``/* ... */``.
    """
    text = _LITERALS.sub("''", query)
    pattern = re.compile(r"(?:^|\s)(" + "|".join(re.escape(t) for t in tokens) + ")", re.MULTILINE)
    match = pattern.search(text)
    return match.group(1) if match else None
